//! The sequencer: group commit in two overlapping stages.
//!
//! - The **sequencer thread** collects a batch, resolves its idempotency
//!   keys, extends the tree, signs the batch's checkpoint and computes every
//!   answer's inclusion proof: all in memory, nothing written.
//! - The **writer thread** writes each prepared batch in one synced RocksDB
//!   write, publishes its checkpoint and answers its callers.
//!
//! Batch k+1 is prepared, on top of batch k, while batch k is being written,
//! so the CPU work of one batch hides behind the other's fsync. Batch k+1 is
//! handed to the writer only once batch k is durable. If batch k fails, batch
//! k+1 (built on a state that never became durable) is prepared again on the
//! recovered state: a failed write fails its own callers and nobody else.
//! At most one batch is being written and one prepared, so the memory held
//! for batches not yet durable is bounded by two batches.

use std::collections::HashMap;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use note::{Checkpoint, SignerKey};
use tlog::{Hash, HashReader, ReadError};
use tokio::sync::oneshot;

use crate::store::{Batch, DbHashes, IdempotencyRecord};
use crate::{Appended, Error, Options, Shared, SignedCheckpoint, MAX_KEY_SIZE, MAX_LEAF_SIZE};

/// Fault injection for tests: called before each batch write with the tree
/// size before the batch and the number of new leaves; returning `Some(reason)`
/// makes that write fail as a storage error would, without writing.
pub type WriteFault = Arc<dyn Fn(u64, usize) -> Option<String> + Send + Sync>;

type Reply = oneshot::Sender<Result<Appended, Error>>;

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
        let thread = std::thread::Builder::new()
            .name("ledger-sequencer".into())
            .spawn(move || {
                let (to_writer, writer_rx) = mpsc::channel();
                let (done_tx, done) = mpsc::channel();
                let writer = Writer {
                    shared: shared.clone(),
                    write_fault: options.write_fault.clone(),
                };
                let writer = std::thread::Builder::new()
                    .name("ledger-writer".into())
                    .spawn(move || writer.run(&writer_rx, &done_tx))
                    .expect("spawning the ledger writer thread");
                let tip = shared.latest.read().expect("latest lock").clone();
                let mut s = Sequencer {
                    shared,
                    key,
                    options,
                    rx,
                    writer: Some(to_writer),
                    done,
                    tip,
                    in_flight: None,
                };
                let outcome = s.run();
                // Closing or stopping: the writer finishes what it was given.
                drop(s.writer.take());
                let _ = writer.join();
                if let Err(reason) = outcome {
                    *stop.lock().expect("stop lock") = Some(reason);
                }
            })
            .expect("spawning the sequencer thread");
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
            _ => Err(Error::Stopped(
                self.stopped
                    .lock()
                    .expect("stop lock")
                    .clone()
                    .unwrap_or_else(|| "closed".into()),
            )),
        }
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

/// A batch computed in memory, ready to write: what the writer needs.
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
}

/// A batch handed to the writer and not yet known to be durable: what the
/// next batch, prepared on top of it, must see before the store has it.
struct Pending {
    /// Stored-hash index of `hashes[0]`.
    base: u64,
    hashes: Vec<Hash>,
    keys: HashMap<Vec<u8>, IdempotencyRecord>,
}

/// What the sequencer hands to the writer.
struct Job {
    requests: Vec<Request>,
    prepared: Prepared,
}

struct Sequencer {
    shared: Arc<Shared>,
    key: SignerKey,
    options: Options,
    rx: mpsc::Receiver<Request>,
    writer: Option<mpsc::Sender<Job>>,
    /// One outcome per job, in order: Ok, or the reason its write failed.
    done: mpsc::Receiver<Result<(), String>>,
    /// The checkpoint of the last batch handed to the writer.
    tip: Arc<SignedCheckpoint>,
    /// That batch, while its outcome is unknown.
    in_flight: Option<Pending>,
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
    /// after its first request.
    fn collect(&self, first: Request) -> Vec<Request> {
        let mut batch = vec![first];
        let deadline = Instant::now() + self.options.batch_wait;
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

    /// Prepares a batch while the previous one is being written, then hands
    /// it over once the previous one is durable. Returns Err only for a fatal
    /// error, after which the sequencer stops and every later append fails.
    fn sequence(&mut self, requests: Vec<Request>) -> Result<(), String> {
        let mut prepared = self.prepare(&requests);
        if self.settle()? {
            // The batch this one was built on failed: prepare it again on the
            // recovered state, so that only the failed batch's callers fail.
            prepared = self.prepare(&requests);
        }
        match prepared {
            Ok((prepared, pending)) => {
                self.tip = prepared.checkpoint.clone();
                self.in_flight = Some(pending);
                let job = Job { requests, prepared };
                let sent = self.writer.as_ref().is_some_and(|w| w.send(job).is_ok());
                if sent {
                    Ok(())
                } else {
                    Err("the ledger writer thread exited".into())
                }
            }
            Err(e) => {
                // Nothing of this batch was handed over, so nothing is written.
                let reason = e.to_string();
                for req in requests {
                    let _ = req.reply.send(Err(Error::NotCommitted(reason.clone())));
                }
                self.recover(&reason)
            }
        }
    }

    /// Waits for the outcome of the batch being written, if any. Returns
    /// whether it failed (and the state was recovered since).
    fn settle(&mut self) -> Result<bool, String> {
        if self.in_flight.take().is_none() {
            return Ok(false);
        }
        match self.done.recv() {
            Ok(Ok(())) => Ok(false),
            Ok(Err(reason)) => self.recover(&reason).map(|()| true),
            Err(_) => Err("the ledger writer thread exited".into()),
        }
    }

    /// After a failed batch the write may or may not have been applied: learn
    /// the truth the way startup does. If even that fails, stop.
    fn recover(&mut self, reason: &str) -> Result<(), String> {
        let recovered = self
            .shared
            .store
            .recover(&self.key)
            .map_err(|e| format!("after a failed batch ({reason}), recovery failed: {e}"))?;
        let recovered = Arc::new(recovered);
        *self.shared.latest.write().expect("latest lock") = recovered.clone();
        self.tip = recovered;
        Ok(())
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
        let known = store.idempotency(&keys)?;
        let mut in_batch: HashMap<Vec<u8>, IdempotencyRecord> = HashMap::new();
        let mut new_leaves: Vec<Hash> = Vec::new();
        let mut wb = Batch::new();
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
                    wb.entry(index, &req.leaf);
                    wb.leaf_index(&leaf_hash, index);
                    wb.idempotency(&req.key, record);
                    Plan::New(index)
                }
            });
        }

        // 2. Extend the tree and sign the new checkpoint.
        let new_size = old_size + new_leaves.len() as u64;
        let base = tlog::stored_hash_count(old_size);
        let below = BatchReader::new(store.hashes(), in_flight, None);
        let new_hashes = tlog::append_leaves(old_size, &new_leaves, &below)?;
        let reader = BatchReader::new(store.hashes(), in_flight, Some((base, &new_hashes)));
        let checkpoint = if new_leaves.is_empty() {
            self.tip.clone()
        } else {
            let cp = Checkpoint::new(
                &self.tip.checkpoint.origin,
                new_size,
                tlog::tree_hash(new_size, &reader)?,
            );
            let note = note::sign_checkpoint(&cp, &self.key)?.to_text();
            for (i, h) in new_hashes.iter().enumerate() {
                wb.hash(base + i as u64, h);
            }
            wb.checkpoint(new_size, &note);
            Arc::new(SignedCheckpoint {
                checkpoint: cp,
                note,
            })
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
                let proof = tlog::prove_inclusion(index, checkpoint.checkpoint.size, &reader)?;
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
            write: (!new_leaves.is_empty()).then_some(wb),
            checkpoint,
            old_size,
            new_leaves: new_leaves.len(),
            answers,
        };
        let pending = Pending {
            base,
            hashes: new_hashes,
            keys: in_batch,
        };
        Ok((prepared, pending))
    }
}

/// The writer: writes prepared batches in the order it gets them.
struct Writer {
    shared: Arc<Shared>,
    write_fault: Option<WriteFault>,
}

impl Writer {
    fn run(&self, jobs: &mpsc::Receiver<Job>, done: &mpsc::Sender<Result<(), String>>) {
        while let Ok(Job {
            requests,
            mut prepared,
        }) = jobs.recv()
        {
            match self.write(&mut prepared) {
                Ok(write_time) => {
                    // 5. Publish. The batch is durable: a crash from here on
                    //    loses only the answers, and a retry with the same key
                    //    gets the original index.
                    *self.shared.latest.write().expect("latest lock") = prepared.checkpoint.clone();
                    // The sequencer may hand over the next batch now.
                    let _ = done.send(Ok(()));
                    // 6. Answer. Nothing after the write can fail, so no
                    //    caller is told "not committed" about a batch that was.
                    for (req, mut answer) in requests.into_iter().zip(prepared.answers) {
                        if let Ok(a) = &mut answer {
                            a.write_time = write_time;
                        }
                        let _ = req.reply.send(answer);
                    }
                }
                Err(e) => {
                    let reason = e.to_string();
                    for req in requests {
                        let _ = req.reply.send(Err(Error::NotCommitted(reason.clone())));
                    }
                    let _ = done.send(Err(reason));
                }
            }
        }
    }

    /// 4. One WriteBatch with a synced WAL: entries, stored hashes, leaf
    ///    index, idempotency records and the checkpoint. A crash during the
    ///    write: RocksDB's WAL recovery yields this whole batch or none of it
    ///    (batches are written one at a time, in order, so the disk holds a
    ///    prefix of them), and open() re-checks the root of whichever state it
    ///    finds against that state's own signed checkpoint.
    fn write(&self, prepared: &mut Prepared) -> Result<Duration, Error> {
        let Some(wb) = prepared.write.take() else {
            return Ok(Duration::ZERO);
        };
        if let Some(reason) = self
            .write_fault
            .as_ref()
            .and_then(|f| f(prepared.old_size, prepared.new_leaves))
        {
            return Err(Error::NotCommitted(format!(
                "injected write failure: {reason}"
            )));
        }
        let started = Instant::now();
        self.shared.store.write(wb)?;
        Ok(started.elapsed())
    }
}

/// Stored hashes as a batch being prepared sees them: its own new hashes and
/// those of the batch being written, in memory; older ones from the store
/// (cached, since every proof in a batch shares the old tree's right edge).
struct BatchReader<'a> {
    /// Runs of stored hashes not yet readable from the store, in index
    /// order: (index of the first, hashes).
    runs: Vec<(u64, &'a [Hash])>,
    store: DbHashes<'a>,
    cache: Mutex<HashMap<u64, Hash>>,
}

impl<'a> BatchReader<'a> {
    fn new(
        store: DbHashes<'a>,
        in_flight: Option<&'a Pending>,
        batch: Option<(u64, &'a [Hash])>,
    ) -> BatchReader<'a> {
        let runs = in_flight
            .map(|p| (p.base, p.hashes.as_slice()))
            .into_iter()
            .chain(batch)
            .collect();
        BatchReader {
            runs,
            store,
            cache: Mutex::default(),
        }
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
        let mut cache = self.cache.lock().expect("cache lock");
        let missing: Vec<u64> = indexes
            .iter()
            .copied()
            .filter(|&i| self.in_memory(i).is_none() && !cache.contains_key(&i))
            .collect();
        if !missing.is_empty() {
            for (i, h) in missing.iter().zip(self.store.read_hashes(&missing)?) {
                cache.insert(*i, h);
            }
        }
        indexes
            .iter()
            .map(|&i| self.in_memory(i).unwrap_or_else(|| Ok(cache[&i])))
            .collect()
    }
}
