//! The sequencer: group commit in three overlapping stages, a thread each.
//!
//! - The **sequencer** collects a batch, resolves its idempotency keys,
//!   extends the tree, signs the batch's checkpoint and computes every
//!   answer's inclusion proof: all in memory, nothing written.
//! - The **inserter** hands each prepared batch to the store's atomic insert
//!   (RocksDB: one `WriteBatch`, WAL appended, memtable updated), without
//!   waiting for the disk.
//! - The **syncer** makes everything inserted so far durable with one sync
//!   (RocksDB: one fsync of the WAL), publishes the newest checkpoint and
//!   answers the callers.
//!
//! At low load the hand-offs are most of a decision's wait (each wakes a
//! sleeping thread): a batch of at most [`INLINE_BATCH_MAX`] requests that
//! finds the inserter and the syncer idle is inserted, synced, published and
//! answered by the sequencer itself, in the same order of steps. Larger
//! batches (load) take the pipeline:
//! batch k+1 is prepared on top of batch k while k is inserted, and handed
//! over once k is inserted; while the syncer waits for the disk, the next
//! batches are inserted, and one fsync covers all of them. Batches are
//! inserted one at a time, in order, so whatever a crash leaves is a prefix
//! of them (RocksDB: one WAL, whose point-in-time recovery stops at the
//! first incomplete record). Nobody is answered, and nothing is published,
//! before the fsync that covers their batch returns.
//!
//! A store other writers share (PostgreSQL) is written one batch at a time
//! instead: the sequencer takes the log's head ([`Turn`]) — waiting for
//! other writers to give it up —, learns the tip again if they moved it,
//! prepares the batch on it, and the inserter writes it holding that turn.
//! A store that cannot be reached fails the batch's callers with
//! `NotCommitted` and nothing else: the tip is learnt again before the next
//! batch, so the ledger carries on once the store is back.
//!
//! Failures: if inserting batch k fails, its callers get `NotCommitted`, and
//! the tip is learnt again from the store (`recover`: the last checkpoint
//! written, checked against the stored hashes), on which batch k+1 (built
//! on k) is prepared again, so nobody else fails. Usually nothing of k was
//! written. If it was (the WAL accepted it, then an error was reported),
//! the store shows it, the tip includes it and no index is used twice; its
//! callers' retries find their receipts by key. A write RocksDB accepted into
//! the WAL but not the memtable (so the store would not show it) cannot be
//! followed by another: RocksDB stops taking writes after such an error
//! until it is reopened, and reopening replays the WAL. If an fsync fails, the
//! state of everything not yet synced is unknown: that is fatal, the ledger
//! stops, and reopening it recovers whatever prefix is on disk.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use note::{Checkpoint, SignerKey};
use tlog::{Hash, HashReader, ReadError};
use tokio::sync::oneshot;

use crate::store::{Batch, CachedHashes, IdempotencyRecord, NewLeaf, Turn};
use crate::{Appended, Error, Options, Shared, SignedCheckpoint, MAX_KEY_SIZE, MAX_LEAF_SIZE};

type Reply = oneshot::Sender<Result<Appended, Error>>;

/// The largest batch the sequencer commits itself when the later stages are
/// idle. A batch this small means the log is barely loaded; larger ones go
/// through the pipeline, whose overlap of inserts and fsyncs is what carries
/// load.
const INLINE_BATCH_MAX: usize = 4;

struct Request {
    leaf: Vec<u8>,
    /// Computed by the caller's thread, off the sequencer's critical path.
    leaf_hash: Hash,
    key: Vec<u8>,
    reply: Reply,
}

pub(crate) struct Handle {
    tx: Option<mpsc::Sender<Request>>,
    thread: Option<JoinHandle<()>>,
    stopped: Arc<Mutex<Option<String>>>,
}

impl Handle {
    pub(crate) fn start(shared: Arc<Shared>, key: SignerKey, options: Options) -> Handle {
        let (tx, rx) = mpsc::channel();
        let stopped = Arc::new(Mutex::new(None));
        let stop = stopped.clone();
        let thread = spawn("ledger-sequencer", move || {
            let (to_inserter, inserter_rx) = mpsc::channel();
            let (to_syncer, syncer_rx) = mpsc::channel();
            let (inserted_tx, inserted) = mpsc::channel();
            let syncing = Arc::new(AtomicUsize::new(0));
            let syncer = Syncer {
                shared: shared.clone(),
                stopped: stop.clone(),
                syncing: syncing.clone(),
            };
            let own = syncer.clone();
            let syncer = spawn("ledger-syncer", move || syncer.run(&syncer_rx));
            let inserter = Inserter {
                shared: shared.clone(),
                stopped: stop.clone(),
                syncing,
            };
            let inserter = spawn("ledger-inserter", move || {
                inserter.run(&inserter_rx, &to_syncer, &inserted_tx);
            });
            let tip = shared.latest.read().expect("latest lock").clone();
            let mut s = Sequencer {
                shared,
                key,
                options,
                rx,
                inserter: Some(to_inserter),
                inserted,
                syncer: own,
                tip,
                in_flight: None,
                stale: false,
            };
            let outcome = s.run();
            // Closing or stopping: the later stages finish what they
            // were given, in order, then exit.
            drop(s.inserter.take());
            let _ = inserter.join();
            let _ = syncer.join();
            if let Err(reason) = outcome {
                stop.lock().expect("stop lock").get_or_insert(reason);
            }
        });
        Handle {
            tx: Some(tx),
            thread: Some(thread),
            stopped,
        }
    }

    pub(crate) fn submit(
        &self,
        leaf: Vec<u8>,
        key: Vec<u8>,
    ) -> Result<oneshot::Receiver<Result<Appended, Error>>, Error> {
        if leaf.is_empty() || leaf.len() > MAX_LEAF_SIZE {
            return Err(Error::InvalidAppend(format!(
                "leaf of {} bytes (1..={MAX_LEAF_SIZE})",
                leaf.len()
            )));
        }
        if key.is_empty() || key.len() > MAX_KEY_SIZE {
            return Err(Error::InvalidAppend(format!(
                "idempotency key of {} bytes (1..={MAX_KEY_SIZE})",
                key.len()
            )));
        }
        let (reply, rx) = oneshot::channel();
        let leaf_hash = tlog::leaf_hash(&leaf);
        let sent = self.tx.as_ref().map(|tx| {
            tx.send(Request {
                leaf,
                leaf_hash,
                key,
                reply,
            })
        });
        match sent {
            Some(Ok(())) => Ok(rx),
            _ => Err(self.stopped()),
        }
    }

    /// Why the sequencer stopped, if it did.
    pub(crate) fn stop_reason(&self) -> Option<String> {
        self.stopped.lock().expect("stop lock").clone()
    }

    /// The error for an append the sequencer will not answer: why it stopped.
    pub(crate) fn stopped(&self) -> Error {
        Error::Stopped(
            self.stopped
                .lock()
                .expect("stop lock")
                .clone()
                .unwrap_or_else(|| "the sequencer exited".into()),
        )
    }
}

impl Drop for Handle {
    /// Closing: the sequencer finishes the batches already queued, then exits.
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A batch computed in memory, ready to write: what the later stages need.
struct Prepared {
    /// What the writer writes; `None` if the batch adds no leaf.
    write: Option<Batch>,
    /// The batch's checkpoint (the previous one if it adds no leaf).
    checkpoint: Arc<SignedCheckpoint>,
    /// Tree size before the batch, and how many leaves it adds.
    old_size: u64,
    new_leaves: usize,
    /// One answer per request, in request order.
    answers: Vec<Result<Appended, Error>>,
    /// When the inserter started writing it (for the `write_time` metric).
    write_started: Option<Instant>,
    /// Its new stored hashes (from `stored_hash_count(old_size)` on), for
    /// the in-memory caches once they are durable (shared with its `Pending`).
    hashes: Arc<[Hash]>,
}

/// A batch handed to the inserter and not yet known to be inserted: what the
/// next batch, prepared on top of it, must see before the store has it.
struct Pending {
    /// Stored-hash index of `hashes[0]`.
    base: u64,
    hashes: Arc<[Hash]>,
    keys: HashMap<Vec<u8>, IdempotencyRecord>,
}

/// What the sequencer hands to the inserter, and the inserter to the syncer.
struct Job {
    requests: Vec<Request>,
    prepared: Prepared,
    /// On a shared store: the head it was prepared on, held until written.
    turn: Option<Box<dyn Turn>>,
}

struct Sequencer {
    shared: Arc<Shared>,
    key: SignerKey,
    options: Options,
    rx: mpsc::Receiver<Request>,
    inserter: Option<mpsc::Sender<Job>>,
    /// One outcome per job, in order.
    inserted: mpsc::Receiver<Inserted>,
    /// The syncer's steps, for batches the sequencer commits itself.
    syncer: Syncer,
    /// The checkpoint of the last batch handed to the inserter.
    tip: Arc<SignedCheckpoint>,
    /// That batch, while its outcome is unknown.
    in_flight: Option<Pending>,
    /// On a shared store: the tip must be learnt again before the next
    /// batch (the store failed, and could not tell where the log is).
    stale: bool,
}

/// What the inserter reports to the sequencer, once per job, in order.
enum Inserted {
    /// Written (not yet durable): the next batch may be handed over.
    Written,
    /// Nothing of it was written; the sequencer recovers and carries on.
    Failed(String),
    /// The ledger cannot make anything durable any more; the sequencer stops.
    Fatal(String),
}

/// What a request turns into once idempotency keys are resolved.
enum Plan {
    /// A new leaf at this index.
    New(u64),
    /// Seen before with the same leaf: the original index.
    Duplicate(u64),
    /// Seen before with a different leaf.
    Conflict(u64),
}

impl Sequencer {
    /// Runs until every sender is gone (Ok) or a fatal error (Err with the reason).
    fn run(&mut self) -> Result<(), String> {
        while let Ok(first) = self.rx.recv() {
            let batch = self.collect(first);
            self.sequence(batch)?;
        }
        self.settle().map(|_| ())
    }

    /// Group commit: a batch closes at `batch_max` requests or `batch_wait`
    /// after its first request. Waiting pays only while an earlier batch is
    /// on its way to the disk (the next fsync covers everything inserted
    /// meanwhile anyway): if everything handed over is already durable, the
    /// batch closes at once with whatever is queued.
    fn collect(&self, first: Request) -> Vec<Request> {
        let mut batch = vec![first];
        let durable = self
            .shared
            .latest
            .read()
            .expect("latest lock")
            .checkpoint
            .size;
        let idle = durable == self.tip.checkpoint.size;
        let wait = if idle {
            Duration::ZERO
        } else {
            self.options.batch_wait
        };
        let deadline = Instant::now() + wait;
        while batch.len() < self.options.batch_max {
            let left = deadline.saturating_duration_since(Instant::now());
            let next = if left.is_zero() {
                self.rx.try_recv().map_err(|_| RecvTimeoutError::Timeout)
            } else {
                self.rx.recv_timeout(left)
            };
            match next {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        batch
    }

    /// Prepares a batch while the previous one is being inserted, then hands
    /// it over once the previous one is written. Returns Err only for a fatal
    /// error, after which the sequencer stops and every later append fails.
    fn sequence(&mut self, requests: Vec<Request>) -> Result<(), String> {
        if self.shared.store.backend().shared() {
            return self.sequence_shared(requests);
        }
        let mut prepared = self.prepare(&requests);
        if self.settle()? {
            // The batch this one was built on failed: prepare it again on the
            // recovered state, so that only the failed batch's callers fail.
            prepared = self.prepare(&requests);
        }
        match prepared {
            Ok((prepared, _)) if self.later_stages_idle(requests.len()) => {
                self.commit_inline(requests, prepared)
            }
            Ok((prepared, pending)) => self.hand_over(requests, prepared, pending, None),
            Err(e) => {
                // Nothing of this batch was handed over, so nothing is written.
                let reason = e.to_string();
                fail(requests, &reason);
                self.recover(&reason)
            }
        }
    }

    /// Whether a batch of `len` requests is committed by the sequencer
    /// itself: small, and nothing in the later stages. Called after
    /// `settle`, so the inserter holds nothing (the sequencer is its only
    /// source, one job at a time); and the syncer answered every job the
    /// inserter gave it (`syncing` counts them until answered), so nothing
    /// can reach it while the sequencer commits.
    fn later_stages_idle(&self, len: usize) -> bool {
        len <= INLINE_BATCH_MAX && self.syncer.syncing.load(Ordering::Acquire) == 0
    }

    /// The inserter's and the syncer's steps for one batch, on this thread:
    /// insert, sync, publish, answer. A failed insert is the inserter's
    /// failure (the callers get `NotCommitted`, the state is recovered); a
    /// failed sync is the syncer's (fatal).
    fn commit_inline(
        &mut self,
        requests: Vec<Request>,
        mut prepared: Prepared,
    ) -> Result<(), String> {
        if let Some(reason) = self.syncer.stopped.lock().expect("stop lock").clone() {
            fail(requests, &reason);
            return Err(reason);
        }
        self.tip = prepared.checkpoint.clone();
        let written = insert(&self.shared, &mut prepared, None);
        *self.shared.write_error.lock().expect("write error lock") =
            written.as_ref().err().map(ToString::to_string);
        if let Err(e) = written {
            let reason = e.to_string();
            fail(requests, &reason);
            return self.recover(&reason);
        }
        self.syncer.complete(vec![Job {
            requests,
            prepared,
            turn: None,
        }])
    }

    /// Hands a prepared batch to the inserter; it becomes the tip and the
    /// batch in flight.
    fn hand_over(
        &mut self,
        requests: Vec<Request>,
        prepared: Prepared,
        pending: Pending,
        turn: Option<Box<dyn Turn>>,
    ) -> Result<(), String> {
        self.tip = prepared.checkpoint.clone();
        self.in_flight = Some(pending);
        let job = Job {
            requests,
            prepared,
            turn,
        };
        if self.inserter.as_ref().is_some_and(|w| w.send(job).is_ok()) {
            Ok(())
        } else {
            Err("the ledger inserter thread exited".into())
        }
    }

    /// [`Sequencer::sequence`] on a store other writers share: one batch at
    /// a time, each prepared and written holding the log's head.
    fn sequence_shared(&mut self, requests: Vec<Request>) -> Result<(), String> {
        // The batch in flight holds the head until it is written.
        self.settle()?;
        let turn = match self
            .shared
            .store
            .backend()
            .coordination()
            .map(|c| c.turn())
            .transpose()
        {
            Ok(Some(turn)) => turn,
            Ok(None) => return Err("a shared store that hands out no turns".into()),
            Err(e) => {
                fail(requests, &format!("waiting for the log's head: {e}"));
                self.stale = true;
                return Ok(());
            }
        };
        if self.stale || turn.head() != self.tip.checkpoint.size {
            // Another writer appended (or the store failed): learn the tip.
            self.recover("the log's head moved")?;
            if self.stale || turn.head() != self.tip.checkpoint.size {
                let reason = format!(
                    "the log's head is at {}, its last checkpoint at {}",
                    turn.head(),
                    self.tip.checkpoint.size
                );
                fail(requests, &reason);
                self.stale = true;
                return Ok(());
            }
        }
        match self.prepare(&requests) {
            Ok((prepared, pending)) => self.hand_over(requests, prepared, pending, Some(turn)),
            Err(e) => {
                // Nothing handed over; dropping the turn gives the head up.
                fail(requests, &e.to_string());
                self.stale = true;
                Ok(())
            }
        }
    }

    /// Waits until the batch handed over last is inserted, if any. Returns
    /// whether it failed (and the state was recovered since).
    fn settle(&mut self) -> Result<bool, String> {
        if self.in_flight.take().is_none() {
            return Ok(false);
        }
        match self.inserted.recv() {
            Ok(Inserted::Written) => Ok(false),
            Ok(Inserted::Failed(reason)) => self.recover(&reason).map(|()| true),
            Ok(Inserted::Fatal(reason)) => Err(reason),
            Err(_) => Err("the ledger inserter thread exited".into()),
        }
    }

    /// After a failed batch, learn the state the way startup does: the last
    /// checkpoint written and the stored hashes must agree. If even that
    /// fails, stop. Only the tip moves: batches written before the failed
    /// one may still be on their way to the disk, and the syncer publishes
    /// each checkpoint once it is durable.
    ///
    /// On a shared store, a recovery that fails is not fatal (the database
    /// may be unreachable for a while): the tip is learnt again before the
    /// next batch, holding the head.
    fn recover(&mut self, reason: &str) -> Result<(), String> {
        match self.shared.store.recover(&self.key) {
            Ok(recovered) => {
                self.tip = Arc::new(recovered);
                self.stale = false;
                Ok(())
            }
            Err(_) if self.shared.store.backend().shared() => {
                self.stale = true;
                Ok(())
            }
            Err(e) => Err(format!(
                "after a failed batch ({reason}), recovery failed: {e}"
            )),
        }
    }

    /// Computes one batch on top of the tip, in memory: idempotency, the new
    /// stored hashes, the signed checkpoint and every answer's proof. Nothing
    /// is written, so a crash here leaves the last committed batch, and the
    /// callers (unanswered) retry with the same keys.
    fn prepare(&self, batch: &[Request]) -> Result<(Prepared, Pending), Error> {
        let store = &self.shared.store;
        let old_size = self.tip.checkpoint.size;
        let in_flight = self.in_flight.as_ref();

        // 1. Resolve idempotency keys against the batch being written (not
        //    yet readable from the store), the store, and this batch.
        let keys: Vec<&[u8]> = batch.iter().map(|r| r.key.as_slice()).collect();
        let known = store.backend().idempotency(&keys)?;
        let mut in_batch: HashMap<Vec<u8>, IdempotencyRecord> = HashMap::new();
        let mut new_leaves: Vec<Hash> = Vec::new();
        let mut leaves: Vec<NewLeaf> = Vec::new();
        let mut plans = Vec::with_capacity(batch.len());
        for (req, known) in batch.iter().zip(known) {
            let leaf_hash = req.leaf_hash;
            let seen = known
                .or_else(|| in_flight.and_then(|p| p.keys.get(&req.key).copied()))
                .or_else(|| in_batch.get(&req.key).copied());
            plans.push(match seen {
                Some(r) if r.leaf_hash == leaf_hash => Plan::Duplicate(r.index),
                Some(r) => Plan::Conflict(r.index),
                None => {
                    let index = old_size + new_leaves.len() as u64;
                    let record = IdempotencyRecord { index, leaf_hash };
                    in_batch.insert(req.key.clone(), record);
                    new_leaves.push(leaf_hash);
                    leaves.push(NewLeaf {
                        leaf: req.leaf.clone(),
                        leaf_hash,
                        key: req.key.clone(),
                    });
                    Plan::New(index)
                }
            });
        }

        // 2. Extend the tree and sign the new checkpoint.
        let new_size = old_size + new_leaves.len() as u64;
        let base = tlog::stored_hash_count(old_size);
        let below = BatchReader::new(store.hashes(), in_flight, None);
        let new_hashes: Arc<[Hash]> = tlog::append_leaves(old_size, &new_leaves, &below)?.into();
        let reader = BatchReader::new(store.hashes(), in_flight, Some((base, &new_hashes)));
        // The new tree's right edge: its root, and the part of every answer's
        // proof that would otherwise be folded again for each one.
        let edge = tlog::RightEdge::new(new_size, &reader)?;
        let (checkpoint, write) = if new_leaves.is_empty() {
            (self.tip.clone(), None)
        } else {
            let cp = Checkpoint::new(&self.tip.checkpoint.origin, new_size, edge.root());
            let note = note::sign_checkpoint(&cp, &self.key)?.to_text();
            let write = Batch {
                old_size,
                leaves,
                hashes: new_hashes.clone(),
                checkpoint: note.clone(),
            };
            let signed = SignedCheckpoint {
                checkpoint: cp,
                note,
            };
            (Arc::new(signed), Some(write))
        };

        // 3. Each answer's inclusion proof to this batch's checkpoint, computed
        //    now, so that nothing after the write can fail.
        let batch_len = batch.len();
        let answers = plans
            .into_iter()
            .map(|plan| {
                let (index, duplicate) = match plan {
                    Plan::New(i) => (i, false),
                    Plan::Duplicate(i) => (i, true),
                    Plan::Conflict(index) => return Ok(Err(Error::Conflict { index })),
                };
                let proof = edge.prove_inclusion(index, &reader)?;
                Ok(Ok(Appended {
                    index,
                    checkpoint: checkpoint.clone(),
                    proof,
                    duplicate,
                    batch_len,
                    write_time: Duration::ZERO,
                }))
            })
            .collect::<Result<Vec<Result<Appended, Error>>, Error>>()?;
        drop(reader);

        let prepared = Prepared {
            write,
            checkpoint,
            old_size,
            new_leaves: new_leaves.len(),
            answers,
            write_started: None,
            hashes: new_hashes.clone(),
        };
        let pending = Pending {
            base,
            hashes: new_hashes,
            keys: in_batch,
        };
        Ok((prepared, pending))
    }
}

/// Starts a named ledger thread.
fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> JoinHandle<()> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .unwrap_or_else(|e| panic!("spawning the {name} thread: {e}"))
}

/// Fails every caller of a job that will not be committed.
fn fail(requests: Vec<Request>, reason: &str) {
    for req in requests {
        let _ = req.reply.send(Err(Error::NotCommitted(reason.to_string())));
    }
}

/// The inserter: writes prepared batches, in the order it gets them,
/// without waiting for the disk.
struct Inserter {
    shared: Arc<Shared>,
    stopped: Arc<Mutex<Option<String>>>,
    /// Jobs given to the syncer and not yet answered.
    syncing: Arc<AtomicUsize>,
}

impl Inserter {
    fn run(
        &self,
        jobs: &mpsc::Receiver<Job>,
        to_syncer: &mpsc::Sender<Job>,
        inserted: &mpsc::Sender<Inserted>,
    ) {
        while let Ok(mut job) = jobs.recv() {
            if let Some(reason) = self.stopped.lock().expect("stop lock").clone() {
                fail(job.requests, &reason);
                let _ = inserted.send(Inserted::Fatal(reason));
                continue;
            }
            let turn = job.turn.take();
            let written = insert(&self.shared, &mut job.prepared, turn);
            *self.shared.write_error.lock().expect("write error lock") =
                written.as_ref().err().map(ToString::to_string);
            let outcome = match written {
                Ok(()) => {
                    // Counted before the syncer can see it, so the sequencer
                    // never finds the syncer idle while it holds a job.
                    self.syncing.fetch_add(1, Ordering::AcqRel);
                    match to_syncer.send(job) {
                        Ok(()) => Inserted::Written,
                        Err(mpsc::SendError(job)) => {
                            let reason = "the ledger syncer thread exited".to_string();
                            fail(job.requests, &reason);
                            Inserted::Fatal(reason)
                        }
                    }
                }
                Err(e) => {
                    let reason = e.to_string();
                    fail(job.requests, &reason);
                    Inserted::Failed(reason)
                }
            };
            let _ = inserted.send(outcome);
        }
    }
}

/// 4. One atomic insert: entries, stored hashes, leaf index, idempotency
///    records and the checkpoint (RocksDB: one WriteBatch, appended to the
///    WAL and the memtable). A crash during or after it: the store's
///    recovery yields this whole batch or none of it (and never a later
///    batch without this one), and open() re-checks the root of whichever
///    state it finds against that state's own signed checkpoint. Nobody
///    was answered yet.
///    On a shared store, `turn` holds the head the batch was prepared on
///    (dropping it unused, for a batch with nothing new, gives it up).
fn insert(
    shared: &Shared,
    prepared: &mut Prepared,
    turn: Option<Box<dyn Turn>>,
) -> Result<(), Error> {
    let Some(batch) = prepared.write.take() else {
        return Ok(());
    };
    prepared.write_started = Some(Instant::now());
    match turn {
        Some(turn) => turn.insert(&batch)?,
        None => shared.store.backend().insert(&batch)?,
    }
    Ok(())
}

/// The syncer: makes inserted batches durable, a group per fsync, then
/// publishes and answers. The sequencer holds a copy, to take these steps
/// itself for a batch it commits inline.
#[derive(Clone)]
struct Syncer {
    shared: Arc<Shared>,
    stopped: Arc<Mutex<Option<String>>>,
    /// Jobs the inserter gave this syncer and it has not answered yet.
    syncing: Arc<AtomicUsize>,
}

impl Syncer {
    fn run(&self, jobs: &mpsc::Receiver<Job>) {
        while let Ok(first) = jobs.recv() {
            // Everything inserted by now: one fsync covers it all.
            let mut group = vec![first];
            group.extend(jobs.try_iter());
            let len = group.len();
            let done = self.complete(group);
            self.syncing.fetch_sub(len, Ordering::AcqRel);
            if let Err(reason) = done {
                // Answer nobody after a failed sync: every later job fails.
                for job in jobs.iter() {
                    fail(job.requests, &reason);
                    self.syncing.fetch_sub(1, Ordering::AcqRel);
                }
                return;
            }
        }
    }

    /// Syncs, publishes and answers `group` (inserted jobs, in order). Err
    /// if the sync failed: what is on the disk is unknown until the log is
    /// reopened, so the ledger is stopped and the group's callers are told
    /// nothing was committed.
    fn complete(&self, group: Vec<Job>) -> Result<(), String> {
        let writes = group.iter().any(|j| j.prepared.new_leaves > 0);
        if let Err(reason) = self.sync(writes) {
            let reason = format!("syncing the log failed, the ledger stopped: {reason}");
            self.stopped
                .lock()
                .expect("stop lock")
                .get_or_insert(reason.clone());
            for job in group {
                fail(job.requests, &reason);
            }
            return Err(reason);
        }
        // 5. Publish. The group is durable: a crash from here on loses
        //    only the answers, and a retry with the same key gets the
        //    original index. Jobs are in order, so the last checkpoint
        //    is the newest. Its hashes go to the in-memory caches first
        //    (here, off the inserter's critical path), so that readers of
        //    the new checkpoint find them there.
        for job in &group {
            let p = &job.prepared;
            let base = tlog::stored_hash_count(p.old_size);
            self.shared.store.remember(base, &p.hashes);
        }
        let newest = group.last().expect("a group").prepared.checkpoint.clone();
        let mut latest = self.shared.latest.write().expect("latest lock");
        // Only forward: on a shared store, `Ledger::refresh` may have
        // published another writer's newer checkpoint already.
        if newest.checkpoint.size >= latest.checkpoint.size {
            *latest = newest;
        }
        drop(latest);
        // 6. Answer. Nothing after the fsync can fail, so no caller is
        //    told "not committed" about a batch that was.
        for job in group {
            let write_time = job
                .prepared
                .write_started
                .map_or(Duration::ZERO, |t| t.elapsed());
            for (req, mut answer) in job.requests.into_iter().zip(job.prepared.answers) {
                if let Ok(a) = &mut answer {
                    a.write_time = write_time;
                }
                let _ = req.reply.send(answer);
            }
        }
        Ok(())
    }

    fn sync(&self, writes: bool) -> Result<(), String> {
        if !writes {
            return Ok(());
        }
        self.shared
            .store
            .backend()
            .sync()
            .map_err(|e| e.to_string())
    }
}

/// Stored hashes as a batch being prepared sees them: its own new hashes and
/// those of the batch being written, in memory; older ones from the store
/// (whose ring and upper-level cache hold every hash a batch's proofs need,
/// unless the ring is turned off). `copy.rs` uses it too.
pub(crate) struct BatchReader<'a> {
    /// Runs of stored hashes not yet readable from the store, in index
    /// order: (index of the first, hashes).
    runs: Vec<(u64, &'a [Hash])>,
    store: CachedHashes<'a>,
}

impl<'a> BatchReader<'a> {
    fn new(
        store: CachedHashes<'a>,
        in_flight: Option<&'a Pending>,
        batch: Option<(u64, &'a [Hash])>,
    ) -> BatchReader<'a> {
        let runs = in_flight
            .map(|p| (p.base, &p.hashes[..]))
            .into_iter()
            .chain(batch)
            .collect();
        BatchReader { runs, store }
    }

    /// The store's hashes with one batch's new ones (from stored-hash
    /// index `base` on) in front.
    pub(crate) fn with_batch(
        store: CachedHashes<'a>,
        base: u64,
        hashes: &'a [Hash],
    ) -> BatchReader<'a> {
        BatchReader::new(store, None, Some((base, hashes)))
    }

    /// Where index `i` lives in memory, if it is not the store's.
    fn in_memory(&self, i: u64) -> Option<Result<Hash, ReadError>> {
        let &(base, run) = self.runs.iter().rev().find(|(base, _)| i >= *base)?;
        Some(
            usize::try_from(i - base)
                .ok()
                .and_then(|k| run.get(k))
                .copied()
                .ok_or_else(|| format!("stored hash {i} is beyond the batch").into()),
        )
    }
}

impl HashReader for BatchReader<'_> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, ReadError> {
        let stored: Vec<u64> = indexes
            .iter()
            .copied()
            .filter(|&i| self.in_memory(i).is_none())
            .collect();
        let mut stored = if stored.is_empty() {
            Vec::new()
        } else {
            self.store.read_hashes(&stored)?
        }
        .into_iter();
        indexes
            .iter()
            .map(|&i| {
                self.in_memory(i).unwrap_or_else(|| {
                    stored
                        .next()
                        .ok_or_else(|| "the store answered short".into())
                })
            })
            .collect()
    }
}
