#!/usr/bin/env python3
"""The per-stage budget of a decision from a `perf` profile of the gate.

Record the gate while `tollgate-bench gate` drives it, then attribute:

    perf record -F 499 --call-graph dwarf,16384 -p "$(pgrep -f 'tollgate serve')" \
        -o perf.data -- sleep 5
    perf script -i perf.data --no-inline -F comm,tid,ip,sym,dso > perf.txt
    scripts/perf-stages.py perf.txt --cpu-us 231

Each sample goes to the first stage in STAGES any of whose functions is on its
stack (so the signature inside a checkpoint counts as the checkpoint's); a
sample on no stage goes to its thread. With --cpu-us (the bench's `gate cpu µs`
of the same run) the shares are also printed as µs per decision. Prints a
Markdown table (ARCHITECTURE.md, "Where a decision's CPU goes").
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from typing import TextIO

STAGES: list[tuple[str, str]] = [
    (
        "evaluation (regorus; the input document; the pooled engine)",
        r"RegoPolicy::evaluate_within|CedarPolicy::evaluate",
    ),
    ("receipt signature (Ed25519)", r"ReceiptBody::sign"),
    ("checkpoint signature (one per batch)", r"sign_checkpoint"),
    ("strict JSON and validation", r"DecisionRequest::parse"),
    ("authentication", r"Authentication::(authorize|identify|authenticate)"),
    (
        "idempotency lookup and surface contract",
        r"Gate>::existing|Contracts::check|contracts::",
    ),
    (
        "receipt build and canonical JSON (request value, digests, derived context)",
        r"ReceiptBody::(canonical|text)|digest_of|to_value|receipt_derived"
        r"|policy_derived|receipt_id|actor_attributes|format_rfc3339|Note::new",
    ),
    ("proof text", r"ProofBundle::to_text"),
    (
        "response JSON",
        r"DecisionResponse>::serialize|Json<T> as axum_core::response::into_response",
    ),
    (
        "metrics and tracing",
        r"gate::metrics::|Laps::|tracing_core::|tracing::span::|Span::record|Span::new",
    ),
    ("batch commit: idempotency resolution", r"Sequencer::prepare"),
    ("batch commit: Merkle hashes and proofs", r"tlog::|BatchReader"),
    (
        "batch commit: RocksDB write (WAL, memtable)",
        r"Inserter::run|DBImpl::(Pipelined)?WriteImpl"
        r"|RocksStore as ledger::store::LogStore>::insert",
    ),
    (
        "batch commit: fsync",
        r"RocksStore as ledger::store::LogStore>::sync|SyncWAL",
    ),
    ("RocksDB background (flush, compaction)", r"FlushMemTable|Compaction|BGWork"),
    (
        "hand-off to the sequencer and back (channels, wake-ups, answers)",
        r"ledger::|oneshot",
    ),
    ("task spawn", r"tokio::task::spawn::spawn"),
    (
        "HTTP read and parse",
        r"poll_read_head|poll_read_from_io|Buffered<T,B>::parse|read_body",
    ),
    (
        "HTTP write (kernel loopback TCP) and the handler's glue",
        r"poll_write|poll_flush|axum::|gate::http::|hyper::",
    ),
    ("pipeline glue (allocation, drops, copies)", r"decide_once|Gate>::decide"),
]


def samples(text: TextIO) -> list[tuple[str, list[str]]]:
    """`perf script` output as (thread name, stack frames leaf first)."""
    out: list[tuple[str, list[str]]] = []
    thread: str | None = None
    frames: list[str] = []
    for line in text:
        if not line.strip():
            if thread is not None:
                out.append((thread, frames))
            thread, frames = None, []
        elif thread is None:
            thread = line.split()[0]
        else:
            parts = line.strip().split(None, 1)
            frames.append(parts[1] if len(parts) > 1 else "?")
    if thread is not None:
        out.append((thread, frames))
    return out


def stage_of(thread: str, frames: list[str], compiled: list[tuple[str, re.Pattern[str]]]) -> str:
    for name, pattern in compiled:
        if any(pattern.search(f) for f in frames):
            return name
    if thread.startswith("tokio"):
        return "tokio scheduling, wake-ups, parking"
    return f"other threads ({thread})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("profile", help="`perf script` output (- for stdin)")
    parser.add_argument(
        "--cpu-us",
        type=float,
        help="the run's gate cpu µs per decision, to print µs per stage",
    )
    args = parser.parse_args()
    compiled = [(name, re.compile(p)) for name, p in STAGES]
    if args.profile == "-":
        all_samples = samples(sys.stdin)
    else:
        with open(args.profile, errors="replace") as f:
            all_samples = samples(f)
    if not all_samples:
        print(f"error: no samples in {args.profile}", file=sys.stderr)
        return 1
    counts = Counter(stage_of(t, f, compiled) for t, f in all_samples)
    total = len(all_samples)
    print(f"{total} samples\n")
    print("| stage | share | µs per decision |\n|---|---|---|")
    for name, n in counts.most_common():
        us = f"{args.cpu_us * n / total:.0f}" if args.cpu_us else "-"
        print(f"| {name} | {100 * n / total:.1f} % | {us} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
