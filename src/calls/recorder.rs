//! The CallRecorder: writes call records in the order the router produced them, on its own
//! thread, so the router never waits on the database.
use super::state::Record;
use crate::db::{self, calls::CallRow, Db};
use crate::error::{AppError, ErrorCode};
use actix::prelude::*;

pub struct CallRecorder {
    db: Db,
}

impl CallRecorder {
    /// One thread: records of one call must land in order (created, answered, ended).
    pub fn start(db: Db) -> Addr<CallRecorder> {
        SyncArbiter::start(1, move || CallRecorder { db: db.clone() })
    }
}

impl Actor for CallRecorder {
    type Context = SyncContext<Self>;
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct WriteRecord(pub Record);

/// Answers once every record sent before it is written (used at shutdown).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Flush;

impl Handler<WriteRecord> for CallRecorder {
    type Result = ();

    fn handle(&mut self, WriteRecord(record): WriteRecord, _: &mut Self::Context) {
        // A busy or restarting database is worth waiting for: the record is the call history.
        // This actor has its own thread, so sleeping here blocks nobody else.
        for (attempt, pause_ms) in [100, 400, 1600, 0].into_iter().enumerate() {
            match self.write(&record) {
                Ok(()) => return,
                Err(e) if e.code == ErrorCode::Unavailable && pause_ms > 0 => {
                    log::warn!("retrying call record (attempt {}): {e}", attempt + 1);
                    std::thread::sleep(std::time::Duration::from_millis(pause_ms));
                }
                Err(e) => {
                    log::error!("could not record {record:?}: {e}");
                    return;
                }
            }
        }
    }
}

impl CallRecorder {
    fn write(&self, record: &Record) -> Result<(), AppError> {
        let mut conn = self.db.get()?;
        match record {
            Record::Created {
                id,
                caller,
                callee,
                media,
                at,
            } => db::calls::insert(
                &mut conn,
                &CallRow {
                    id: id.0.clone(),
                    caller_id: caller.0.clone(),
                    callee_id: callee.0.clone(),
                    media: media.as_str().to_owned(),
                    created_at: *at,
                    answered_at: None,
                    ended_at: None,
                    outcome: None,
                    end_reason: None,
                },
            ),
            Record::Answered { id, at } => db::calls::mark_answered(&mut conn, id, *at),
            Record::Ended {
                id,
                at,
                outcome,
                detail,
            } => db::calls::mark_ended(&mut conn, id, *at, *outcome, detail.as_deref()),
        }
    }
}

impl Handler<Flush> for CallRecorder {
    type Result = ();

    fn handle(&mut self, _: Flush, _: &mut Self::Context) {}
}
