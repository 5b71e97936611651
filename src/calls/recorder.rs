//! The CallRecorder: writes call records in the order the router produced them, on the
//! blocking pool, so the router never waits on the database. Records that arrive while a
//! write is under way queue up and are then written together in one transaction (group
//! commit): one commit per batch instead of one per record, which is what lets a Postgres that
//! syncs each commit to disk keep up with a thousand calls a second.
use super::state::Record;
use crate::db::{self, calls::CallRow, Db, DbConn};
use crate::error::{AppError, ErrorCode};
use crate::ids::{CallId, UserId};
use crate::time::now_ms;
use crate::vocabulary::Media;
use actix::prelude::*;
use diesel::Connection;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use tokio::sync::oneshot;

/// Most records written in one transaction.
const MAX_BATCH: usize = 512;
/// Records kept while the database is unavailable; past this the oldest are dropped.
const MAX_QUEUED: usize = 100_000;
/// How long the recorder waits before trying an unavailable database again.
const RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

pub struct CallRecorder {
    db: Db,
    /// Records to write, each with whoever waits for it to be committed.
    queue: VecDeque<(Record, Option<oneshot::Sender<()>>)>,
    /// A batch is being written; the next one waits for it.
    writing: bool,
    /// Flush requests, answered once the queue is empty and nothing is being written.
    flushed: Vec<oneshot::Sender<()>>,
    /// In a cluster, this node's id, written as the owner of each call it creates: if the
    /// node is lost, the others close its calls (`CloseCallsOf`).
    owner: Option<Arc<str>>,
}

impl CallRecorder {
    /// One batch at a time: records of one call must land in order (created, answered, ended).
    pub fn start(db: Db, owner: Option<&str>) -> Addr<CallRecorder> {
        CallRecorder {
            db,
            queue: VecDeque::new(),
            writing: false,
            flushed: Vec::new(),
            owner: owner.map(Arc::from),
        }
        .start()
    }

    fn write_next(&mut self, ctx: &mut Context<Self>) {
        if self.writing {
            return;
        }
        if self.queue.is_empty() {
            for done in self.flushed.drain(..) {
                let _ = done.send(());
            }
            return;
        }
        let n = self.queue.len().min(MAX_BATCH);
        let (batch, waiting): (Vec<Record>, Vec<_>) = self.queue.drain(..n).unzip();
        crate::metrics::get().recorder_queue.sub(n as i64);
        self.writing = true;
        let (db, owner) = (self.db.clone(), self.owner.clone());
        let work = actix_web::web::block(move || {
            let outcome = write_batch(&db, &batch, owner.as_deref());
            (batch, outcome)
        });
        ctx.spawn(work.into_actor(self).map(|result, recorder, ctx| {
            recorder.writing = false;
            match result {
                Ok((batch, Err(Unavailable))) => {
                    // Kept, in order, for when the database is back.
                    for (record, written) in batch.into_iter().zip(waiting).rev() {
                        recorder.queue.push_front((record, written));
                        crate::metrics::get().recorder_queue.inc();
                    }
                    recorder.trim();
                    ctx.run_later(RETRY_AFTER, |recorder, ctx| recorder.write_next(ctx));
                    return;
                }
                Ok((_, Ok(()))) => {}
                Err(e) => log::error!("call records lost: {e}"),
            }
            for written in waiting.into_iter().flatten() {
                let _ = written.send(());
            }
            recorder.write_next(ctx);
        }));
    }
}

impl CallRecorder {
    /// Bounds what a long outage keeps: the oldest records go first.
    fn trim(&mut self) {
        if self.queue.len() > MAX_QUEUED {
            let dropped = self.queue.len() - MAX_QUEUED;
            self.queue.drain(..dropped);
            crate::metrics::get().recorder_queue.sub(dropped as i64);
            log::error!("database unavailable for long: {dropped} oldest call records dropped");
        }
    }
}

/// The database could not be reached: the batch should be tried again later.
struct Unavailable;

impl Actor for CallRecorder {
    type Context = Context<Self>;
}

/// A record to write; `written`, if given, is told once its batch is committed.
#[derive(Message)]
#[rtype(result = "()")]
pub struct WriteRecord {
    pub record: Record,
    pub written: Option<oneshot::Sender<()>>,
}

/// Answers once every record sent before it is written (used at shutdown).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Flush;

impl Handler<WriteRecord> for CallRecorder {
    type Result = ();

    fn handle(&mut self, msg: WriteRecord, ctx: &mut Self::Context) {
        self.queue.push_back((msg.record, msg.written));
        crate::metrics::get().recorder_queue.inc();
        self.trim();
        self.write_next(ctx);
    }
}

/// Runs `write`, retrying while the database is unavailable: a busy or restarting database is
/// worth waiting for, the record is the call history. Runs on the blocking pool, so sleeping
/// here blocks nobody else.
fn with_retry(what: &str, mut write: impl FnMut() -> Result<(), AppError>) -> Result<(), AppError> {
    let mut outcome = Ok(());
    for (attempt, pause_ms) in [100, 400, 1600, 0].into_iter().enumerate() {
        outcome = write();
        match &outcome {
            Err(e) if e.code == ErrorCode::Unavailable && pause_ms > 0 => {
                log::warn!("retrying {what} (attempt {}): {e}", attempt + 1);
                std::thread::sleep(std::time::Duration::from_millis(pause_ms));
            }
            _ => break,
        }
    }
    outcome
}

/// Writes a batch in one transaction, folded into the fewest statements. If that fails, each
/// record is written on its own, so a bad record costs only itself.
fn write_batch(db: &Db, batch: &[Record], owner: Option<&str>) -> Result<(), Unavailable> {
    let (rows, updates) = fold(batch, owner);
    let together = with_retry("call records", || {
        let mut conn = db.get()?;
        conn.transaction(|conn| {
            db::calls::insert_many(conn, &rows)?;
            updates
                .iter()
                .try_for_each(|record| write(conn, record, owner))
        })
    });
    if let Err(e) = together {
        if e.code == ErrorCode::Unavailable {
            log::warn!(
                "database unavailable; keeping {} call records: {e}",
                batch.len()
            );
            return Err(Unavailable);
        }
        if batch.len() > 1 {
            log::warn!(
                "writing {} call records together failed ({e}); one by one",
                batch.len()
            );
        }
        for record in batch {
            let alone = with_retry("a call record", || write(&mut *db.get()?, record, owner));
            if let Err(e) = alone {
                log::error!("could not record {record:?}: {e}");
            }
        }
    }
    Ok(())
}

/// Calls created in the batch become rows of one multi-row insert that already carry what the
/// batch later says about them (answered, ended); records about calls created in an earlier
/// batch stay updates, in order. Records of different calls never touch the same row.
fn fold<'a>(batch: &'a [Record], owner: Option<&str>) -> (Vec<CallRow>, Vec<&'a Record>) {
    let mut rows: Vec<CallRow> = Vec::new();
    let mut created: HashMap<&CallId, usize> = HashMap::new();
    let mut updates = Vec::new();
    for record in batch {
        match record {
            Record::Created {
                id,
                caller,
                callee,
                media,
                at,
            } => {
                created.insert(id, rows.len());
                rows.push(new_row(id, caller, callee, *media, *at, owner));
            }
            Record::Answered { id, at } => match created.get(id) {
                Some(&i) => rows[i].answered_at = Some(*at),
                None => updates.push(record),
            },
            Record::Ended {
                id,
                at,
                outcome,
                detail,
            } => match created.get(id) {
                Some(&i) => {
                    rows[i].ended_at = Some(*at);
                    rows[i].outcome = Some(*outcome);
                    rows[i].end_reason = detail.clone();
                }
                None => updates.push(record),
            },
        }
    }
    (rows, updates)
}

fn new_row(
    id: &CallId,
    caller: &UserId,
    callee: &UserId,
    media: Media,
    at: i64,
    owner: Option<&str>,
) -> CallRow {
    CallRow {
        id: id.clone(),
        caller_id: caller.clone(),
        callee_id: callee.clone(),
        media,
        created_at: at,
        answered_at: None,
        ended_at: None,
        outcome: None,
        end_reason: None,
        owner: owner.map(String::from),
    }
}

fn write(conn: &mut DbConn, record: &Record, owner: Option<&str>) -> Result<(), AppError> {
    match record {
        Record::Created {
            id,
            caller,
            callee,
            media,
            at,
        } => db::calls::insert(conn, &new_row(id, caller, callee, *media, *at, owner)),
        Record::Answered { id, at } => db::calls::mark_answered(conn, id, *at),
        Record::Ended {
            id,
            at,
            outcome,
            detail,
        } => db::calls::mark_ended(conn, id, *at, *outcome, detail.as_deref()),
    }
}

impl Handler<Flush> for CallRecorder {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: Flush, _: &mut Self::Context) -> Self::Result {
        let (done, flushed) = oneshot::channel();
        if self.writing || !self.queue.is_empty() {
            self.flushed.push(done);
        } else {
            let _ = done.send(());
        }
        Box::pin(async move {
            let _ = flushed.await;
        })
    }
}

/// Call `call` was handed to node `owner` (this node drains). Written in order with the
/// records, so it is committed before the shutdown's flush answers, and so before the node
/// leaves the cluster (after which the others close the calls it still owns).
#[derive(Message)]
#[rtype(result = "()")]
pub struct SetOwner {
    pub call: CallId,
    pub owner: String,
}

impl Handler<SetOwner> for CallRecorder {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, msg: SetOwner, _: &mut Self::Context) -> Self::Result {
        let db = self.db.clone();
        Box::pin(async move {
            let SetOwner { call, owner } = msg;
            let set = db
                .run(move |conn| db::calls::set_owner(conn, &call, &owner))
                .await;
            if let Err(e) = set {
                log::error!("a handed-over call keeps its old owner in the database: {e}");
            }
        })
    }
}

/// The node `node` is lost: its calls still open are closed as `connection_lost` (every node
/// that notices does it; the first end recorded stays).
#[derive(Message)]
#[rtype(result = "()")]
pub struct CloseCallsOf {
    pub node: String,
}

impl Handler<CloseCallsOf> for CallRecorder {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, msg: CloseCallsOf, _: &mut Self::Context) -> Self::Result {
        let db = self.db.clone();
        Box::pin(async move {
            let node = msg.node;
            let closed = db
                .run(move |conn| db::calls::close_calls_of(conn, &node, now_ms()))
                .await;
            match closed {
                Ok(0) => {}
                Ok(n) => log::warn!("closed {n} call(s) of a lost node as connection_lost"),
                Err(e) => log::error!("the calls of a lost node stay open: {e}"),
            }
        })
    }
}
