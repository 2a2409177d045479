/**
 * The one root of every error the SDK throws on purpose: a refusal to run a
 * tool (`Refusal`), a call a surface refused (`Refused`) and input that does
 * not verify (`VerificationError`). `catch (e) { if (e instanceof
 * TollgateError) … }` catches all three and nothing else.
 */
export class TollgateError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}
