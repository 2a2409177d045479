//! `tollgate-bench`: the load generators, kept out of the server binary and
//! the ledger library.
//!
//! - `tollgate-bench gate`: decisions/s and latency of a running or freshly
//!   started gate (`tollgate serve`) over HTTP/1.1 keep-alive, and the
//!   in-process floor per decision.
//! - `tollgate-bench ledger`: appends/s and append latency for a matrix of
//!   batch sizes and concurrent appenders, with fsync, and disk bytes per leaf.
//! - `tollgate-bench proofs`: grows one log to 10M leaves and measures
//!   inclusion and consistency proof latency at 1k, 1M and 10M leaves.
//! - `tollgate-bench cerbos`: the same load against Cerbos, the peer.
//! - `tollgate-bench wrk`: the gate (three ways) and Cerbos side by side in
//!   one run, driven by `wrk`.

mod cerbos;
mod gate;
mod ledger;
mod wrk;

use clap::{Parser, Subcommand};

// The global allocator is mimalloc, counting (regorus's `allocator-memory-limits`
// declares it for every binary that links `policy`): the same as the gate's, so
// the in-process floor is comparable.

#[derive(Parser)]
#[command(
    name = "tollgate-bench",
    version,
    about = "Load generators for the Tollgate gate and its ledger"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Decisions/s and latency over HTTP/1.1 keep-alive, and the in-process
    /// floor per decision. Starts `tollgate serve` (beside this binary) on a
    /// fresh data directory unless --url names a running gate.
    Gate(gate::BenchArgs),
    /// Ledger appends/s and latency over batch sizes and appender counts (fsync on).
    Ledger(ledger::LedgerArgs),
    /// Ledger proof latency at 1k, 1M and 10M leaves.
    Proofs(ledger::ProofsArgs),
    /// The same closed loop against Cerbos 0.51 (started here, its decision
    /// log on) deciding the same transfer: the peer the gate is measured
    /// against.
    Cerbos(cerbos::CerbosArgs),
    /// The gate (Rego in the gate, Rego in worker processes, Cedar) and
    /// Cerbos 0.51 side by side in one run, driven by `wrk`
    /// (bench/wrk/*.lua): decisions/s, latency, server CPU per decision.
    Wrk(wrk::WrkArgs),
}

fn main() -> std::process::ExitCode {
    let result = match Cli::parse().command {
        Command::Gate(args) => gate::run(args),
        Command::Cerbos(args) => cerbos::run(args),
        Command::Wrk(args) => wrk::run(args),
        Command::Ledger(args) => {
            ledger::bench(args);
            Ok(())
        }
        Command::Proofs(args) => {
            ledger::proofs(args);
            Ok(())
        }
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tollgate-bench: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
