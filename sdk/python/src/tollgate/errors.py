"""The one root of every error the SDK raises on purpose."""


class TollgateError(Exception):
    """The root of every error this SDK raises on purpose: a refusal to run a
    tool (`tollgate.Refusal`), a call a surface refused
    (`tollgate.surface.Refused`) and input that does not verify
    (`tollgate.VerificationError`). `except TollgateError` catches all three
    and nothing else."""
