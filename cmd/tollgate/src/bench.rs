//! The load generator (filled in below).

/// Load generator arguments.
#[derive(clap::Args)]
pub(crate) struct BenchArgs {}

pub(crate) fn run(_args: BenchArgs) -> anyhow::Result<()> {
    anyhow::bail!("not built yet")
}
