//! The PostgreSQL backend (issue 21): the same [`LogStore`] as RocksDB, in
//! nine tables, so that a log can live in a database that many gates
//! share.
//!
//! A batch is **one transaction holding the log's head**: the sequencer
//! first takes a [`Turn`] (a transaction that locks the head row with
//! `SELECT … FOR UPDATE`), learns the tip again if another writer moved it,
//! prepares the batch on that head, and writes entries, stored hashes, both
//! indexes, the checkpoint and the new head in the same transaction, then
//! commits. Writers queue on the row lock, so however many gates share the
//! database the tree has one order, no index is used twice and no batch is
//! prepared on a stale head. Idempotency keys are unique in the database (a
//! primary key), so across writers too. A commit is durable when it returns
//! (`synchronous_commit` on, the default), so [`LogStore::sync`] has nothing
//! left to do. A writer that dies holding the head loses its connection and
//! with it the lock; one that hangs is cut off by
//! `idle_in_transaction_session_timeout` (set per session, [`IDLE_IN_TX`]).
//!
//! The SQL is plain: row locks and primary keys, no advisory locks, no
//! LISTEN/NOTIFY. Each connection lives on a thread of its own (the
//! `postgres` client runs its own small runtime, which must not be entered
//! from the gate's), and calls are handed to a free one; a connection the
//! server closed is opened again for the next call.

use std::collections::HashMap;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use postgres::types::ToSql;
use postgres::{Client, Row, Statement};
use tlog::Hash;

use crate::pg_tls::Connector;
use crate::store::{
    Batch, Coordination, IdempotencyRecord, LogStore, StatePairs, StateStore, Turn,
};
use crate::Error;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS tollgate_hashes (idx BIGINT PRIMARY KEY, hash BYTEA NOT NULL);
CREATE TABLE IF NOT EXISTS tollgate_entries (idx BIGINT PRIMARY KEY, leaf BYTEA NOT NULL);
CREATE TABLE IF NOT EXISTS tollgate_idempotency (
    key BYTEA PRIMARY KEY, idx BIGINT NOT NULL, leaf_hash BYTEA NOT NULL);
CREATE TABLE IF NOT EXISTS tollgate_checkpoints (size BIGINT PRIMARY KEY, note TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tollgate_head (id INT PRIMARY KEY CHECK (id = 1), size BIGINT NOT NULL);
INSERT INTO tollgate_head VALUES (1, -1) ON CONFLICT (id) DO NOTHING;
CREATE TABLE IF NOT EXISTS tollgate_state (key BYTEA PRIMARY KEY, value BYTEA NOT NULL);
CREATE TABLE IF NOT EXISTS tollgate_holds (name BYTEA PRIMARY KEY);
CREATE TABLE IF NOT EXISTS tollgate_leases (
    name TEXT PRIMARY KEY, holder TEXT NOT NULL, until TIMESTAMPTZ NOT NULL);
";

type Job = Box<dyn FnOnce(&mut Conn) + Send>;

/// One connection and the statements prepared on it: every statement is
/// parsed once per connection, then only executed (a round trip each).
pub(crate) struct Conn {
    client: Client,
    prepared: HashMap<&'static str, Statement>,
}

impl std::ops::Deref for Conn {
    type Target = Client;
    fn deref(&self) -> &Client {
        &self.client
    }
}

impl std::ops::DerefMut for Conn {
    fn deref_mut(&mut self) -> &mut Client {
        &mut self.client
    }
}

impl Conn {
    fn new(client: Client) -> Conn {
        Conn {
            client,
            prepared: HashMap::new(),
        }
    }

    fn statement(&mut self, sql: &'static str) -> Result<Statement, postgres::Error> {
        if let Some(s) = self.prepared.get(sql) {
            return Ok(s.clone());
        }
        let s = self.client.prepare(sql)?;
        self.prepared.insert(sql, s.clone());
        Ok(s)
    }

    fn query(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, postgres::Error> {
        let s = self.statement(sql)?;
        self.client.query(&s, params)
    }

    fn query_opt(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, postgres::Error> {
        let s = self.statement(sql)?;
        self.client.query_opt(&s, params)
    }

    /// Opens a transaction and locks the log's head row for it, in one
    /// round trip; returns the head's size (-1: no first checkpoint yet).
    fn lock_head(&mut self) -> Result<i64, Error> {
        let messages = self
            .client
            .simple_query("BEGIN; SELECT size FROM tollgate_head WHERE id = 1 FOR UPDATE")
            .map_err(storage)?;
        let head = messages.iter().find_map(|m| match m {
            postgres::SimpleQueryMessage::Row(r) => r.get(0).and_then(|v| v.parse::<i64>().ok()),
            _ => None,
        });
        match head {
            Some(h) => Ok(h),
            None => {
                self.rollback();
                Err(Error::Corrupt("the log's head row is missing".into()))
            }
        }
    }

    /// Writes `rows` and commits the transaction `lock_head` opened (rolled
    /// back if anything fails).
    fn write_and_commit(&mut self, rows: &Rows) -> Result<(), Error> {
        let written = self
            .statement(WRITE)
            .and_then(|s| {
                self.client.execute(
                    &s,
                    &[
                        &rows.idx,
                        &rows.leaves,
                        &rows.hash_idx,
                        &rows.hashes,
                        &rows.keys,
                        &rows.key_hashes,
                        &rows.new_size,
                        &rows.note,
                    ],
                )
            })
            .and_then(|_| self.client.batch_execute("COMMIT"))
            .map_err(storage);
        if written.is_err() {
            self.rollback();
        }
        written
    }

    /// Ends an open transaction without its changes (a connection that
    /// failed is opened again for the next call anyway).
    fn rollback(&mut self) {
        let _ = self.client.batch_execute("ROLLBACK");
    }
}

/// A batch's rows, one statement: entries, stored hashes, idempotency
/// records, the checkpoint and the new head. (Logs created before
/// 2026-12-08 also have a `tollgate_leaves` table, a leaf-hash index nothing
/// read; it is left as it is and no longer written.)
const WRITE: &str = "WITH \
    e AS (INSERT INTO tollgate_entries (idx, leaf) \
          SELECT * FROM UNNEST($1::BIGINT[], $2::BYTEA[])), \
    h AS (INSERT INTO tollgate_hashes (idx, hash) \
          SELECT * FROM UNNEST($3::BIGINT[], $4::BYTEA[])), \
    i AS (INSERT INTO tollgate_idempotency (key, idx, leaf_hash) \
          SELECT * FROM UNNEST($5::BYTEA[], $1::BIGINT[], $6::BYTEA[])), \
    c AS (INSERT INTO tollgate_checkpoints (size, note) VALUES ($7, $8) \
          ON CONFLICT (size) DO UPDATE SET note = EXCLUDED.note) \
    UPDATE tollgate_head SET size = $7 WHERE id = 1";

/// A session idle this long inside a transaction (a writer holding the head
/// that stopped) is ended by the server, which releases the head.
pub(crate) const IDLE_IN_TX: std::time::Duration = std::time::Duration::from_secs(10);

/// Creates the tables if they do not exist. Writers starting together on an
/// empty database can collide inside PostgreSQL's catalog (`CREATE TABLE IF
/// NOT EXISTS` is not safe against a concurrent twin): the loser tries
/// again and finds the tables there.
fn create_schema(c: &mut Client) -> Result<(), Error> {
    let mut last = None;
    for attempt in 0..10u64 {
        match c.batch_execute(SCHEMA) {
            Ok(()) => return Ok(()),
            Err(e) => {
                last = Some(storage(e));
                std::thread::sleep(std::time::Duration::from_millis(20 * (attempt + 1)));
            }
        }
    }
    Err(last.expect("ten attempts"))
}

fn storage(e: postgres::Error) -> Error {
    match e.as_db_error() {
        // The server's own message and SQLSTATE, not just "db error".
        Some(db) => Error::Storage(format!(
            "postgres: {} (SQLSTATE {})",
            db.message(),
            db.code().code()
        )),
        // The cause too ("error connecting to server: Connection refused").
        None => Error::Storage(match std::error::Error::source(&e) {
            Some(cause) => format!("postgres: {e}: {cause}"),
            None => format!("postgres: {e}"),
        }),
    }
}

fn i64_of(n: u64) -> Result<i64, Error> {
    i64::try_from(n).map_err(|_| Error::Storage(format!("index {n} beyond 2^63")))
}

fn hash_of(bytes: &[u8]) -> Result<Hash, Error> {
    Hash::from_slice(bytes).ok_or_else(|| Error::Corrupt("a stored hash is not 32 bytes".into()))
}

/// A batch as the arrays its `UNNEST` inserts take.
struct Rows {
    idx: Vec<i64>,
    leaves: Vec<Vec<u8>>,
    keys: Vec<Vec<u8>>,
    key_hashes: Vec<Vec<u8>>,
    hash_idx: Vec<i64>,
    hashes: Vec<Vec<u8>>,
    new_size: i64,
    note: String,
}

impl Rows {
    fn of(batch: &Batch) -> Result<Rows, Error> {
        let new_size = i64_of(batch.new_size())?;
        let first_hash = i64_of(tlog::stored_hash_count(batch.old_size))?;
        let first = i64_of(batch.old_size)?;
        let n = batch.leaves.len();
        let (mut idx, mut leaves) = (Vec::with_capacity(n), Vec::with_capacity(n));
        let (mut keys, mut key_hashes) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for (k, l) in batch.leaves.iter().enumerate() {
            let i = first + k as i64;
            idx.push(i);
            leaves.push(l.leaf.clone());
            keys.push(l.key.clone());
            key_hashes.push(l.leaf_hash.0.to_vec());
        }
        Ok(Rows {
            idx,
            leaves,
            keys,
            key_hashes,
            hash_idx: (0..batch.hashes.len() as i64)
                .map(|k| first_hash + k)
                .collect(),
            hashes: batch.hashes.iter().map(|h| h.0.to_vec()).collect(),
            new_size,
            note: batch.checkpoint.clone(),
        })
    }
}

/// The head held by an open transaction (see [`PgStore::turn`]).
struct PgTurn {
    head: u64,
    batch: mpsc::Sender<(Rows, mpsc::Sender<Result<(), Error>>)>,
}

impl Turn for PgTurn {
    fn head(&self) -> u64 {
        self.head
    }

    fn insert(self: Box<Self>, batch: &Batch) -> Result<(), Error> {
        if batch.old_size != self.head {
            return Err(Error::Storage(format!(
                "postgres: a batch prepared on {} offered to the head at {}",
                batch.old_size, self.head
            )));
        }
        let (done_tx, done) = mpsc::channel();
        self.batch.send((Rows::of(batch)?, done_tx)).map_err(|_| {
            Error::Storage("postgres: the connection holding the head failed".into())
        })?;
        done.recv().map_err(|_| {
            Error::Storage("postgres: the connection holding the head failed".into())
        })?
    }
}

/// The log in a PostgreSQL database.
pub(crate) struct PgStore {
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
    config: postgres::Config,
    /// TLS as the connection string's `sslmode` asks (`pg_tls`).
    tls: Connector,
    /// The connections that hold named locks (`hold`), opened on first use:
    /// a hold keeps its connection for as long as it is held, so holds
    /// never take the connections appends and reads need.
    holds: Mutex<Option<mpsc::Sender<Job>>>,
}

/// Connections for named locks (`LogStore::hold`): at most this many held at
/// once per gate; more wait for one.
const HOLD_CONNECTIONS: usize = 16;

impl PgStore {
    /// Connects `connections` clients to the database at `url` (a libpq
    /// connection string or `postgres://` URL, TLS as its `sslmode` says:
    /// `pg_tls`) and creates the tables if they do not exist.
    pub(crate) fn connect(url: &str, connections: usize) -> Result<PgStore, Error> {
        let (url, ssl_mode, tls) = crate::pg_tls::settings(url)?;
        let mut config: postgres::Config = url.parse().map_err(storage)?;
        config.ssl_mode(ssl_mode);
        // A server that does not answer fails a connection attempt rather
        // than hanging it; a peer that vanished is noticed; a session that
        // holds the head and goes quiet gives it up.
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(std::time::Duration::from_secs(5));
        }
        config.keepalives(true);
        config.keepalives_idle(std::time::Duration::from_secs(30));
        let options = config.get_options().unwrap_or_default().to_string();
        config.options(&format!(
            "{options} -c idle_in_transaction_session_timeout={}",
            IDLE_IN_TX.as_millis()
        ));
        let tx = pool(&config, &tls, connections, true)?;
        Ok(PgStore {
            jobs: Mutex::new(Some(tx)),
            config,
            tls,
            holds: Mutex::new(None),
        })
    }

    /// Runs `f` on a free connection and waits for its result.
    fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Conn) -> Result<T, Error> + Send + 'static,
    ) -> Result<T, Error> {
        let (tx, rx) = mpsc::channel();
        self.submit(Box::new(move |c| drop(tx.send(f(c)))))?;
        rx.recv()
            .map_err(|_| Error::Storage("postgres: a connection thread failed".into()))?
    }

    /// Whether `query` (one parameter: the index) finds a row.
    fn has_row(&self, query: &'static str, index: u64) -> Result<bool, Error> {
        let i = i64_of(index)?;
        self.run(move |c| Ok(c.query_opt(query, &[&i]).map_err(storage)?.is_some()))
    }

    /// Hands `job` to a free connection.
    fn submit(&self, job: Job) -> Result<(), Error> {
        self.jobs
            .lock()
            .expect("jobs lock")
            .as_ref()
            .ok_or_else(|| Error::Storage("postgres: closed".into()))?
            .send(job)
            .map_err(|_| Error::Storage("postgres: the connection threads stopped".into()))
    }
}

/// `connections` clients of `config`, each on a thread of its own, taking
/// jobs from one queue; the first creates the tables if `schema`.
fn pool(
    config: &postgres::Config,
    tls: &Connector,
    connections: usize,
    schema: bool,
) -> Result<mpsc::Sender<Job>, Error> {
    let (tx, rx) = mpsc::channel::<Job>();
    let rx = Arc::new(Mutex::new(rx));
    for n in 0..connections.max(1) {
        let (rx, config, tls) = (rx.clone(), config.clone(), tls.clone());
        // Each client connects on its own thread: the `postgres` client
        // drives a runtime there, which must not nest in the caller's.
        let (ready_tx, ready) = mpsc::channel::<Result<(), Error>>();
        std::thread::Builder::new()
            .name("ledger-postgres".into())
            .spawn(move || {
                let connected = config
                    .connect(tls.clone())
                    .map_err(storage)
                    .and_then(|mut c| {
                        if schema && n == 0 {
                            create_schema(&mut c)?;
                        }
                        Ok(c)
                    });
                let mut conn = match connected {
                    Ok(c) => {
                        let _ = ready_tx.send(Ok(()));
                        Conn::new(c)
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                loop {
                    let job = rx.lock().expect("jobs lock").recv();
                    let Ok(job) = job else { break };
                    if conn.client.is_closed() {
                        // The server went away: connect again for this
                        // job (if that fails, the job sees a closed
                        // client and fails; the next one tries again).
                        if let Ok(c) = config.connect(tls.clone()) {
                            conn = Conn::new(c);
                        }
                    }
                    job(&mut conn);
                }
            })
            .map_err(|e| Error::Storage(e.to_string()))?;
        ready
            .recv()
            .map_err(|_| Error::Storage("postgres: a connection thread failed".into()))??;
    }
    Ok(tx)
}

impl Drop for PgStore {
    fn drop(&mut self) {
        // The threads end when the channel closes.
        drop(self.jobs.lock().expect("jobs lock").take());
    }
}

impl LogStore for PgStore {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, Error> {
        let wanted = indexes
            .iter()
            .map(|&i| i64_of(i))
            .collect::<Result<Vec<_>, _>>()?;
        self.run(move |c| {
            let rows = c
                .query(
                    "SELECT idx, hash FROM tollgate_hashes WHERE idx = ANY($1)",
                    &[&wanted],
                )
                .map_err(storage)?;
            let mut found = HashMap::with_capacity(rows.len());
            for r in rows {
                found.insert(r.get::<_, i64>(0), hash_of(r.get::<_, &[u8]>(1))?);
            }
            wanted
                .iter()
                .map(|i| {
                    found
                        .get(i)
                        .copied()
                        .ok_or_else(|| Error::NotFound(format!("stored hash {i}")))
                })
                .collect()
        })
    }

    fn entries(&self, start: u64, count: u64) -> Result<Vec<Vec<u8>>, Error> {
        let (from, to) = (i64_of(start)?, i64_of(start + count)?);
        self.run(move |c| {
            let rows = c
                .query(
                    "SELECT idx, leaf FROM tollgate_entries WHERE idx >= $1 AND idx < $2 ORDER BY idx",
                    &[&from, &to],
                )
                .map_err(storage)?;
            if rows.len() as u64 != count {
                return Err(Error::NotFound(format!("entries {start}..{}", start + count)));
            }
            Ok(rows.into_iter().map(|r| r.get::<_, Vec<u8>>(1)).collect())
        })
    }

    fn has_entry(&self, index: u64) -> Result<bool, Error> {
        self.has_row("SELECT 1 FROM tollgate_entries WHERE idx = $1", index)
    }

    fn has_hash(&self, index: u64) -> Result<bool, Error> {
        self.has_row("SELECT 1 FROM tollgate_hashes WHERE idx = $1", index)
    }

    fn idempotency(&self, keys: &[&[u8]]) -> Result<Vec<Option<IdempotencyRecord>>, Error> {
        let keys: Vec<Vec<u8>> = keys.iter().map(|k| k.to_vec()).collect();
        self.run(move |c| {
            let rows = c
                .query(
                    "SELECT key, idx, leaf_hash FROM tollgate_idempotency WHERE key = ANY($1)",
                    &[&keys],
                )
                .map_err(storage)?;
            let mut found = HashMap::with_capacity(rows.len());
            for r in rows {
                found.insert(
                    r.get::<_, Vec<u8>>(0),
                    IdempotencyRecord {
                        index: r.get::<_, i64>(1) as u64,
                        leaf_hash: hash_of(r.get::<_, &[u8]>(2))?,
                    },
                );
            }
            Ok(keys.iter().map(|k| found.get(k).copied()).collect())
        })
    }

    fn idempotency_records(&self) -> Result<Vec<(Vec<u8>, IdempotencyRecord)>, Error> {
        self.run(|c| {
            c.query("SELECT key, idx, leaf_hash FROM tollgate_idempotency", &[])
                .map_err(storage)?
                .into_iter()
                .map(|r| {
                    Ok((
                        r.get::<_, Vec<u8>>(0),
                        IdempotencyRecord {
                            index: r.get::<_, i64>(1) as u64,
                            leaf_hash: hash_of(r.get::<_, &[u8]>(2))?,
                        },
                    ))
                })
                .collect()
        })
    }

    fn checkpoints_from(&self, from: u64, limit: usize) -> Result<Vec<(u64, String)>, Error> {
        let (from, limit) = (i64_of(from)?, i64::try_from(limit).unwrap_or(i64::MAX));
        self.run(move |c| {
            Ok(c.query(
                "SELECT size, note FROM tollgate_checkpoints WHERE size >= $1 ORDER BY size LIMIT $2",
                &[&from, &limit],
            )
            .map_err(storage)?
            .into_iter()
            .map(|r| (r.get::<_, i64>(0) as u64, r.get::<_, String>(1)))
            .collect())
        })
    }

    fn checkpoint(&self, size: u64) -> Result<Option<String>, Error> {
        let s = i64_of(size)?;
        self.run(move |c| {
            Ok(c.query_opt(
                "SELECT note FROM tollgate_checkpoints WHERE size = $1",
                &[&s],
            )
            .map_err(storage)?
            .map(|r| r.get::<_, String>(0)))
        })
    }

    fn last_checkpoint(&self) -> Result<Option<(u64, String)>, Error> {
        self.run(|c| {
            Ok(c.query_opt(
                "SELECT size, note FROM tollgate_checkpoints ORDER BY size DESC LIMIT 1",
                &[],
            )
            .map_err(storage)?
            .map(|r| (r.get::<_, i64>(0) as u64, r.get::<_, String>(1))))
        })
    }

    fn insert(&self, batch: &Batch) -> Result<(), Error> {
        // Without a turn (the empty log's first checkpoint): the head must
        // be what the batch was prepared on, or none yet for that first one.
        let expected: i64 = if batch.leaves.is_empty() && batch.old_size == 0 {
            -1
        } else {
            i64_of(batch.old_size)?
        };
        let rows = Rows::of(batch)?;
        self.run(move |c| {
            let head = c.lock_head()?;
            if head != expected {
                c.rollback();
                return Err(Error::Storage(format!(
                    "postgres: the log's head is {head}, this batch was prepared on {expected}: \
                     another writer appended"
                )));
            }
            c.write_and_commit(&rows)
        })
    }

    fn sync(&self) -> Result<(), Error> {
        // Every insert committed synchronously: durable already.
        Ok(())
    }

    fn coordination(&self) -> Option<&dyn Coordination> {
        Some(self)
    }
}

impl Coordination for PgStore {
    fn turn(&self) -> Result<Box<dyn Turn>, Error> {
        // The transaction stays open on its connection's thread, holding
        // the head row, until the batch arrives (then it is written and
        // committed) or the turn is dropped (then it is rolled back).
        let (head_tx, head_rx) = mpsc::channel::<Result<i64, Error>>();
        let (batch_tx, batch_rx) = mpsc::channel::<(Rows, mpsc::Sender<Result<(), Error>>)>();
        self.submit(Box::new(move |c| {
            match c.lock_head() {
                Ok(head) => {
                    if head_tx.send(Ok(head)).is_err() {
                        return c.rollback();
                    }
                }
                Err(e) => return drop(head_tx.send(Err(e))),
            }
            let Ok((rows, done)) = batch_rx.recv() else {
                return c.rollback(); // the turn was dropped
            };
            let _ = done.send(c.write_and_commit(&rows));
        }))?;
        let head = head_rx
            .recv()
            .map_err(|_| Error::Storage("postgres: a connection thread failed".into()))??;
        let head = u64::try_from(head)
            .map_err(|_| Error::Corrupt("the shared log has no first checkpoint".into()))?;
        Ok(Box::new(PgTurn {
            head,
            batch: batch_tx,
        }))
    }

    fn hold(&self, name: &[u8]) -> Result<Box<dyn Send>, Error> {
        // The row is made on first use and locked for the transaction; the
        // name goes in as a hex bytea literal (hex digits only), so the three
        // statements travel in one round trip.
        let literal = format!(
            "'\\x{}'::bytea",
            name.iter().map(|b| format!("{b:02x}")).collect::<String>()
        );
        let sql = format!(
            "BEGIN; INSERT INTO tollgate_holds (name) VALUES ({literal}) ON CONFLICT DO NOTHING; \
             SELECT 1 FROM tollgate_holds WHERE name = {literal} FOR UPDATE"
        );
        let (held_tx, held) = mpsc::channel::<Result<(), Error>>();
        let (release, released) = mpsc::channel::<()>();
        let job: Job = Box::new(move |c| {
            if let Err(e) = c.client.simple_query(&sql) {
                c.rollback();
                return drop(held_tx.send(Err(storage(e))));
            }
            if held_tx.send(Ok(())).is_err() {
                return c.rollback();
            }
            // Until the guard is dropped (its sender with it).
            let _ = released.recv();
            if c.client.batch_execute("COMMIT").is_err() {
                c.rollback();
            }
        });
        {
            let mut holds = self.holds.lock().expect("holds lock");
            if holds.is_none() {
                // Opened on first use; a failure (the database away) is
                // tried again by the next hold.
                *holds = Some(pool(&self.config, &self.tls, HOLD_CONNECTIONS, false)?);
            }
            holds
                .as_ref()
                .expect("just made")
                .send(job)
                .map_err(|_| Error::Storage("postgres: the lock connections stopped".into()))?;
        }
        held.recv()
            .map_err(|_| Error::Storage("postgres: a lock connection failed".into()))??;
        Ok(Box::new(release))
    }

    fn lease(&self, name: &str, holder: &str, ttl: std::time::Duration) -> Result<bool, Error> {
        // The database's clock decides, so the gates' clocks need not agree.
        let (name, holder) = (name.to_string(), holder.to_string());
        let ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        self.run(move |c| {
            Ok(c.query_opt(
                "INSERT INTO tollgate_leases (name, holder, until) \
                 VALUES ($1, $2, now() + $3 * interval '1 millisecond') \
                 ON CONFLICT (name) DO UPDATE SET holder = EXCLUDED.holder, until = EXCLUDED.until \
                 WHERE tollgate_leases.holder = EXCLUDED.holder OR tollgate_leases.until < now() \
                 RETURNING holder",
                &[&name, &holder, &(ms as f64)],
            )
            .map_err(storage)?
            .is_some())
        })
    }
}

impl StateStore for PgStore {
    fn state_get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, Error> {
        let k = key.to_vec();
        self.run(move |c| {
            Ok(
                c.query_opt("SELECT value FROM tollgate_state WHERE key = $1", &[&k])
                    .map_err(storage)?
                    .map(|r| r.get::<_, Vec<u8>>(0)),
            )
        })
    }

    fn state_put(&self, pairs: &[(&[u8], &[u8])]) -> Result<(), Error> {
        let pairs: Vec<(Vec<u8>, Vec<u8>)> = pairs
            .iter()
            .map(|(k, v)| (k.to_vec(), v.to_vec()))
            .collect();
        self.run(move |c| {
            let mut tx = c.transaction().map_err(storage)?;
            for (k, v) in &pairs {
                tx.execute(
                    "INSERT INTO tollgate_state (key, value) VALUES ($1, $2) \
                     ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                    &[k, v],
                )
                .map_err(storage)?;
            }
            tx.commit().map_err(storage)
        })
    }

    /// Deleted, then the state table vacuumed so the dead row's space is
    /// reclaimed for reuse (VACUUM cannot run in a transaction; if it
    /// fails, the error says the row is deleted all the same). The server's WAL and
    /// backups are the operator's: PostgreSQL keeps them as configured.
    fn state_erase(&self, key: &[u8]) -> Result<(), Error> {
        let k = key.to_vec();
        self.run(move |c| {
            c.execute("DELETE FROM tollgate_state WHERE key = $1", &[&k])
                .map_err(storage)?;
            c.batch_execute("VACUUM tollgate_state").map_err(|e| {
                Error::Storage(format!(
                    "the row is deleted, but vacuuming tollgate_state after it failed: {e}"
                ))
            })
        })
    }

    fn state_swap(&self, key: &[u8], expected: Option<&[u8]>, new: &[u8]) -> Result<bool, Error> {
        let (k, e, n) = (key.to_vec(), expected.map(<[u8]>::to_vec), new.to_vec());
        // One statement each: the row's value is compared and replaced
        // atomically, whatever other gates write meanwhile.
        self.run(move |c| {
            let written = match &e {
                Some(e) => c.execute(
                    "UPDATE tollgate_state SET value = $3 WHERE key = $1 AND value = $2",
                    &[&k, e, &n],
                ),
                None => c.execute(
                    "INSERT INTO tollgate_state (key, value) VALUES ($1, $2) \
                     ON CONFLICT (key) DO NOTHING",
                    &[&k, &n],
                ),
            };
            Ok(written.map_err(storage)? == 1)
        })
    }

    fn state_scan(&self, prefix: &[u8]) -> Result<StatePairs, Error> {
        let p = prefix.to_vec();
        self.run(move |c| {
            Ok(c.query(
                "SELECT key, value FROM tollgate_state WHERE substr(key, 1, length($1::BYTEA)) = $1::BYTEA ORDER BY key",
                &[&p],
            )
            .map_err(storage)?
            .into_iter()
            .map(|r| (r.get::<_, Vec<u8>>(0), r.get::<_, Vec<u8>>(1)))
            .collect())
        })
    }
}
