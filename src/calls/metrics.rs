//! What each call record means for the call metrics (calls ringing and active, set-up and
//! ring times, calls ended by outcome), counted as the router hands the record to the recorder.
use super::state::{Call, Record};
use crate::vocabulary::EndReason;
use std::time::Duration;

pub fn count(call: &Call, record: &Record) {
    let metrics = crate::metrics::get();
    let since_invite = |at: i64| Duration::from_millis((at - call.created_at).max(0) as u64);
    match record {
        Record::Created { .. } => metrics.call_placed(),
        Record::Answered { at, .. } => metrics.call_answered(since_invite(*at)),
        Record::Ended { at, outcome, .. } => {
            let answered = call.answered_at.is_some();
            // A busy or unreachable callee's call ends as it is placed: it never rang.
            let rang = !answered && !matches!(outcome, EndReason::Busy | EndReason::Unavailable);
            metrics.call_ended(*outcome, answered, rang.then(|| since_invite(*at)));
        }
    }
}
