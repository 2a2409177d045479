//! `proofcheck`: the auditors' offline verifier. Thin: arguments, files,
//! output and exit codes (0 verified, 1 verification failed, 2 usage or I/O).

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use note::{Policy, VerifierKey};
use proofcheck::{AuditState, Error, Log};
use serde::Serialize;

// The global allocator is mimalloc (regorus's `allocator-memory-limits` declares
// it for every binary that links `policy`): an audit parses and frees a JSON
// document per entry on several threads, and glibc malloc/free was ~12% of its
// profile.

#[derive(Parser)]
#[command(
    name = "proofcheck",
    version,
    about = "Verify Tollgate receipts, proofs and checkpoints offline; replay decisions; audit a whole log",
    long_about = "Verify Tollgate receipts, proofs and checkpoints offline; replay decisions; audit a \
                  whole log through its C2SP tlog-tiles.\n\nExit status: 0 verified, 1 verification \
                  failed (the output says what and where), 2 usage or I/O error.\n\nKeys (VKEY) are \
                  C2SP note verifier keys (name+id+base64), given inline or as a file holding one."
)]
struct Cli {
    /// Machine-readable output (one JSON object).
    #[arg(long, global = true)]
    json: bool,
    /// A file holding the bearer token of a caller with the read role, for
    /// what the gate does not serve publicly (entry bundles for audit, policy
    /// bundles for replay). Checkpoints and hash tiles need none.
    #[arg(long, global = true, env = "PROOFCHECK_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    /// With an https log URL: the CA certificate(s) (PEM) to verify the gate
    /// against. Default: the system's roots.
    #[arg(long, global = true, env = "PROOFCHECK_CA_FILE")]
    ca_file: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Verify a saved decision: FILE is the JSON the gate answered to
    /// POST /v1/decisions (or GET /v1/receipts/{id}), saved as is. Checks the
    /// receipt's gate signature, its inclusion proof, the checkpoint's log
    /// signature, and with --witness-policy the witness quorum.
    Receipt {
        /// The saved decision response.
        file: PathBuf,
        /// The log's checkpoint key.
        #[arg(long)]
        log_key: String,
        /// The gate's receipt key.
        #[arg(long)]
        gate_key: String,
        /// A C2SP tlog-policy file: the log and the witnesses that must cosign.
        #[arg(long)]
        witness_policy: Option<PathBuf>,
        /// Instead of the saved proof, fetch one from this gate to the
        /// checkpoint it serves (with witnesses: the latest cosigned one).
        #[arg(long)]
        log: Option<String>,
    },
    /// Verify that signed checkpoint NEW extends signed checkpoint OLD.
    Consistency {
        /// Older signed checkpoint file.
        old: PathBuf,
        /// Newer signed checkpoint file.
        new: PathBuf,
        /// The log's checkpoint key.
        #[arg(long)]
        log_key: String,
        /// A proof file: one base64 hash per line (as GET /v1/proofs/consistency serves).
        #[arg(long, conflicts_with = "log")]
        proof: Option<PathBuf>,
        /// Compute the proof from the log's tlog-tiles at this URL.
        #[arg(long)]
        log: Option<String>,
    },
    /// Re-evaluate a receipt's recorded request under its recorded policy
    /// version and report whether the decision is the same (exit 1 if not).
    Replay {
        /// A saved decision response, or a receipt (signed note).
        file: PathBuf,
        /// The bundle: a directory, a .tar.gz, or the gate's URL (fetches
        /// /v1/policies/{version}). Its digest must equal the recorded version.
        #[arg(long)]
        policy: String,
        /// The gate's receipt key; without it the signature is not checked.
        #[arg(long)]
        gate_key: Option<String>,
        /// The surface contract the receipt names (`derived.contract`), a
        /// JSON file: the recorded request is checked against it again. Its
        /// digest must equal the recorded version. With --policy URL it is
        /// fetched from the gate (/v1/contracts/{version}) unless given.
        #[arg(long)]
        contract: Option<PathBuf>,
    },
    /// Walk the whole log through tlog-tiles: recompute the root, verify every
    /// receipt and governance entry, and check the log extends what was
    /// audited before.
    Audit {
        #[command(flatten)]
        whole: WholeLog,
        /// Where the last audit's state is kept (default
        /// ~/.local/state/proofcheck/<origin>-<log key id>.json).
        #[arg(long)]
        state: Option<PathBuf>,
    },
    /// The governance history: walk and verify the whole log (as audit does,
    /// without saved state) and print every admin change in order — policies
    /// published and activated, callers added, revoked and rotated — with its
    /// index, so the policy and grants in force at any index can be read off.
    History {
        #[command(flatten)]
        whole: WholeLog,
    },
    /// What if a candidate policy had been active: re-evaluate every logged
    /// decision (from --from) with the request and derived context its
    /// receipt recorded, and print how many would change, by transition
    /// (PERMIT → DENY, …), with example receipt ids. Receipts are verified
    /// with the gate key; `audit` verifies the log itself.
    WhatIf {
        #[command(flatten)]
        whole: WholeLog,
        /// The candidate bundle: a directory or a .tar.gz.
        #[arg(long)]
        policy: PathBuf,
        /// The first log index to re-evaluate.
        #[arg(long, default_value_t = 0)]
        from: u64,
    },
}

/// A whole log to walk: where, and the keys that must have signed it.
#[derive(clap::Args)]
struct WholeLog {
    /// The gate's URL.
    #[arg(long)]
    log: String,
    /// The log's checkpoint key.
    #[arg(long)]
    log_key: String,
    /// The gate's receipt key.
    #[arg(long)]
    gate_key: String,
}

/// One line of `proofcheck history`.
#[derive(Serialize)]
struct HistoryLine<'a> {
    index: u64,
    #[serde(flatten)]
    entry: &'a protocol::GovernanceEntry,
}

fn io<E: std::fmt::Display>(what: &Path) -> impl FnOnce(E) -> Error + '_ {
    move |e| Error::Io(format!("{}: {e}", what.display()))
}

fn key(arg: &str) -> Result<VerifierKey, Error> {
    let text = if Path::new(arg).is_file() {
        std::fs::read_to_string(arg).map_err(io(Path::new(arg)))?
    } else {
        arg.to_string()
    };
    VerifierKey::parse(text.trim()).map_err(|e| Error::Io(format!("key {arg:?}: {e}")))
}

fn read(path: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(io(path))
}

fn output<T: Serialize>(json: bool, report: &T, human: String) {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(report).expect("serializable")
        );
    } else {
        println!("{human}");
    }
}

fn main() -> ExitCode {
    policy::use_utc_as_local_time();
    let cli = Cli::parse();
    let json = cli.json;
    match run(cli) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            if json {
                let kind = if matches!(e, Error::Failed(_)) {
                    "failed"
                } else {
                    "error"
                };
                println!(
                    "{}",
                    serde_json::json!({ "result": kind, "message": e.to_string() })
                );
            } else {
                eprintln!("proofcheck: {e}");
            }
            ExitCode::from(if matches!(e, Error::Failed(_)) { 1 } else { 2 })
        }
    }
}

/// The audit state of one log: by origin and log key id, so two logs that
/// share an origin never share a state.
fn state_path(explicit: Option<PathBuf>, log_key: &VerifierKey) -> PathBuf {
    let origin = log_key.name();
    explicit.unwrap_or_else(|| {
        let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
        let safe: String = origin
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        home.join(".local/state/proofcheck")
            .join(format!("{safe}-{:08x}.json", log_key.id()))
    })
}

/// Ok(true) verified, Ok(false) a replay that differs.
fn run(cli: Cli) -> Result<bool, Error> {
    let token = match &cli.token_file {
        Some(f) => Some(
            std::fs::read_to_string(f)
                .map_err(|e| Error::Io(format!("--token-file {}: {e}", f.display())))?,
        ),
        None => None,
    };
    let token = token.as_deref();
    let agent = tls::agent(cli.ca_file.as_deref(), std::time::Duration::from_secs(60))
        .map_err(|e| Error::Io(format!("--ca-file {e}")))?;
    let open = |url: &str| Log::new(url).with_token(token).with_agent(agent.clone());
    match cli.command {
        Command::Receipt {
            file,
            log_key,
            gate_key,
            witness_policy,
            log,
        } => {
            let witnesses = match &witness_policy {
                Some(p) => Some(
                    Policy::parse(&String::from_utf8_lossy(&read(p)?))
                        .map_err(|e| Error::Io(format!("{}: {e}", p.display())))?,
                ),
                None => None,
            };
            let mut saved = read(&file)?;
            if let Some(url) = &log {
                // Swap in a proof to the served (cosigned) checkpoint; every
                // other check is unchanged.
                let mut v: serde_json::Value = serde_json::from_slice(&saved).map_err(|e| {
                    Error::Failed(format!("the file is not a saved decision response: {e}"))
                })?;
                let index = v["log_index"]
                    .as_u64()
                    .ok_or_else(|| Error::Failed("the file has no log_index".into()))?;
                v["proof"] = proofcheck::proof_to_served_checkpoint(
                    &Log::new(url).with_token(token),
                    index,
                )?
                .into();
                saved = serde_json::to_vec(&v).expect("serializable");
            }
            let r = proofcheck::check_receipt(
                &saved,
                &key(&log_key)?,
                &key(&gate_key)?,
                witnesses.as_ref(),
            )?;
            let human = format!(
                "verified: receipt {} ({}) is entry {} of {}, included in the checkpoint of size {} (root {}){}",
                r.receipt_id,
                r.decision.as_str(),
                r.log_index,
                r.origin,
                r.checkpoint_size,
                r.checkpoint_root,
                if witness_policy.is_some() {
                    format!("; witness quorum met ({})", r.witnesses.join(", "))
                } else {
                    String::new()
                }
            ) + &r
                .committed
                .iter()
                .map(|(field, status)| match status {
                    protocol::FieldStatus::Opened => format!("\n{field}: committed, opening verified"),
                    protocol::FieldStatus::Erased => format!("\n{field}: committed, opening erased"),
                })
                .collect::<String>();
            output(cli.json, &r, human);
            Ok(true)
        }
        Command::Consistency {
            old,
            new,
            log_key,
            proof,
            log,
        } => {
            let proof = match &proof {
                Some(p) => Some(proofcheck::parse_hashes(&String::from_utf8_lossy(&read(
                    p,
                )?))?),
                None => None,
            };
            let log = log.as_deref().map(open);
            let r = proofcheck::check_consistency(
                &read(&old)?,
                &read(&new)?,
                &key(&log_key)?,
                proof,
                log.as_ref(),
            )?;
            let human = format!(
                "verified: the checkpoint of size {} extends the checkpoint of size {} ({} proof hashes)",
                r.new_size, r.old_size, r.proof_len
            );
            output(cli.json, &r, human);
            Ok(true)
        }
        Command::Replay {
            file,
            policy,
            gate_key,
            contract,
        } => {
            let gate_key = gate_key.as_deref().map(key).transpose()?;
            let log;
            let source = if policy.starts_with("http://") || policy.starts_with("https://") {
                log = open(&policy);
                proofcheck::PolicySource::Url(&log)
            } else if Path::new(&policy).is_dir() {
                proofcheck::PolicySource::Dir(Path::new(&policy))
            } else {
                proofcheck::PolicySource::File(Path::new(&policy))
            };
            let r = proofcheck::replay(
                &read(&file)?,
                gate_key.as_ref(),
                source,
                contract.as_deref(),
            )?;
            let contract_line = match (&r.replay.contract, &r.contract_unchecked) {
                (Some(c), _) if c.met => format!("\nthe request meets surface contract {}", c.version),
                (Some(c), _) => format!(
                    "\nthe request BREAKS surface contract {}: {}",
                    c.version,
                    c.problem.as_deref().unwrap_or_default()
                ),
                (None, Some(v)) => format!(
                    "\nwarning: the receipt names surface contract {v}; it was not checked (--contract FILE)"
                ),
                (None, None) => String::new(),
            } + &r
                .replay
                .unopened
                .iter()
                .map(|f| format!("\n{f}: committed, opening erased: the policy saw it, this replay cannot"))
                .collect::<String>();
            let human = format!(
                "{}: receipt {} recorded {}, replay under {} gives {} ({}){}{contract_line}",
                if r.replay.same { "same" } else { "DIFFERENT" },
                r.replay.receipt_id,
                r.replay.recorded.as_str(),
                r.replay.policy_version.as_deref().unwrap_or("no policy"),
                r.replay.replayed.as_str(),
                r.replay.reason,
                if r.signature_checked {
                    ""
                } else {
                    "\nwarning: no --gate-key, the receipt's signature was not checked"
                }
            );
            output(cli.json, &r, human);
            Ok(r.replay.same)
        }
        Command::Audit {
            whole:
                WholeLog {
                    log,
                    log_key,
                    gate_key,
                },
            state,
        } => {
            let log_key = key(&log_key)?;
            let gate_key = key(&gate_key)?;
            let path = state_path(state, &log_key);
            let previous: Option<AuditState> = match std::fs::read(&path) {
                Ok(b) => Some(
                    serde_json::from_slice(&b)
                        .map_err(|e| Error::Io(format!("{}: {e}", path.display())))?,
                ),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => return Err(Error::Io(format!("{}: {e}", path.display()))),
            };
            let tty = std::io::stderr().is_terminal() && !cli.json;
            let started = std::time::Instant::now();
            let mut last = std::time::Instant::now();
            let mut progress = |done: u64, total: u64| {
                if tty && (last.elapsed().as_millis() >= 200 || done == total) {
                    last = std::time::Instant::now();
                    let rate = done as f64 / started.elapsed().as_secs_f64().max(1e-9);
                    let eta = (total - done) as f64 / rate.max(1e-9);
                    let width = 30u64;
                    let filled = (done * width).checked_div(total).unwrap_or(width);
                    eprint!(
                        "\r[{}{}] {done}/{total} entries  {rate:.0}/s  ETA {eta:.0} s ",
                        "#".repeat(filled as usize),
                        ".".repeat((width - filled) as usize)
                    );
                }
            };
            let (report, new_state) = proofcheck::audit(
                &open(&log),
                &log_key,
                &gate_key,
                previous.as_ref(),
                &mut progress,
            )?;
            if tty {
                eprintln!();
            }
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(io(dir))?;
            }
            let tmp = path.with_extension("json.tmp");
            std::fs::write(
                &tmp,
                serde_json::to_vec_pretty(&new_state).expect("serializable"),
            )
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(io(&path))?;
            let human = format!(
                "verified: {} has {} entries (root {}); {} new since the last audit ({}), every entry signed by {}\n\
                 decisions: {}\ngovernance: {}\n{:.1} s, {:.0} entries/s; state saved to {}",
                report.origin,
                report.size,
                report.root,
                report.entries_verified,
                report.previous_size,
                gate_key.name(),
                report.decisions.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", "),
                report.governance.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", "),
                report.seconds,
                report.entries_per_second,
                path.display()
            );
            output(cli.json, &report, human);
            Ok(true)
        }
        Command::History {
            whole:
                WholeLog {
                    log,
                    log_key,
                    gate_key,
                },
        } => {
            let log_key = key(&log_key)?;
            let gate_key = key(&gate_key)?;
            let (report, _) =
                proofcheck::audit(&open(&log), &log_key, &gate_key, None, &mut |_, _| {})?;
            let lines: Vec<HistoryLine<'_>> = report
                .history
                .iter()
                .map(|(index, entry)| HistoryLine {
                    index: *index,
                    entry,
                })
                .collect();
            let mut human = format!(
                "verified: {} has {} entries (root {}); {} admin changes:",
                report.origin,
                report.size,
                report.root,
                lines.len()
            );
            for l in &lines {
                human.push_str(&format!(
                    "\n{:>8}  {}  {:<16} by {:<20} {}",
                    l.index, l.entry.at, l.entry.action, l.entry.by, l.entry.subject
                ));
            }
            output(cli.json, &lines, human);
            Ok(true)
        }
        Command::WhatIf {
            whole:
                WholeLog {
                    log,
                    log_key,
                    gate_key,
                },
            policy,
            from,
        } => {
            let bundle = if policy.is_dir() {
                policy::Bundle::from_dir(&policy)
            } else {
                policy::Bundle::from_tar_gz(&read(&policy)?, None)
            }
            .map_err(|e| Error::Io(format!("{}: {e}", policy.display())))?;
            let r = proofcheck::what_if(
                &open(&log),
                &key(&log_key)?,
                &key(&gate_key)?,
                &bundle,
                from,
            )?;
            let mut human = format!(
                "{} receipts from index {from} to size {} re-evaluated under {}:",
                r.evaluated, r.size, r.candidate
            );
            for (transition, (count, examples)) in &r.transitions {
                human.push_str(&format!(
                    "\n  {transition}: {count} (e.g. {})",
                    examples.join(", ")
                ));
            }
            output(cli.json, &r, human);
            Ok(true)
        }
    }
}
