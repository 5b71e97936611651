//! Live calls in Redis: which node owns each call (`PREFIX:call:ID`) and which call each user
//! is in (`PREFIX:incall:USER`). Written by the owner as the call rings, is answered and ends;
//! read when a device connects to a node that does not hold its user's call (its `welcome`
//! lists the call, which it can then resume there) and before an invite (a callee in a call
//! anywhere is busy).
use super::keys::Keys;
use crate::ids::{CallId, DeviceId};
use crate::vocabulary::Media;
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};

/// A live call as its owner describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveCall {
    pub owner: String,
    pub caller: String,
    pub callee: String,
    pub caller_name: String,
    pub callee_name: String,
    pub media: Media,
    /// Answered.
    pub active: bool,
}

/// One side of a handed-over call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandedParty {
    pub user: String,
    pub username: String,
    pub display_name: String,
    /// Its device in the call, unless it was on the node that handed the call over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<DeviceId>,
}

/// A live call a draining node hands to another (`call_handover`): its state, and where each
/// of its devices on other nodes is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandedCall {
    pub call: String,
    pub caller: HandedParty,
    pub callee: HandedParty,
    pub media: Media,
    pub created_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answered_at: Option<i64>,
    /// The callee devices still ringing (none once answered).
    #[serde(default)]
    pub ringing: Vec<DeviceId>,
    /// The caller sends the offer.
    pub caller_offers: bool,
    /// Devices of the call on nodes other than the one handing it over: (device, user, node).
    #[serde(default)]
    pub devices: Vec<(DeviceId, String, String)>,
    /// Nodes that rang or resumed devices of `user` for the call: (node, user).
    #[serde(default)]
    pub nodes: Vec<(String, String)>,
}

/// How long a live call's keys outlive their last write: the owner deletes them when the call
/// ends; this only bounds what a lost owner leaves (readers also skip calls of lost nodes).
pub const CALL_TTL_MS: u64 = 24 * 3600 * 1000;

/// Deletes `KEYS[1]` only if it still names call `ARGV[1]`: a user's next call may have been
/// written meanwhile.
const FORGET: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
";

/// Adds to `pipe` the writes that make `live` call `call` of `users` (`None`: it is over).
pub fn write(
    pipe: &mut redis::Pipeline,
    keys: &Keys,
    call: &str,
    users: &[String; 2],
    live: Option<&str>,
) {
    match live {
        Some(json) => {
            pipe.cmd("SET")
                .arg(keys.call(call))
                .arg(json)
                .arg("PX")
                .arg(CALL_TTL_MS)
                .ignore();
            for user in users {
                pipe.cmd("SET")
                    .arg(keys.in_call(user))
                    .arg(call)
                    .arg("PX")
                    .arg(CALL_TTL_MS)
                    .ignore();
            }
        }
        None => {
            pipe.del(keys.call(call)).ignore();
            for user in users {
                pipe.cmd("EVAL")
                    .arg(FORGET)
                    .arg(1)
                    .arg(keys.in_call(user))
                    .arg(call)
                    .ignore();
            }
        }
    }
}

/// The live call `user` is in, if any (two round trips).
pub async fn of_user(
    conn: &mut ConnectionManager,
    keys: &Keys,
    user: &str,
) -> redis::RedisResult<Option<(CallId, LiveCall)>> {
    let call: Option<String> = redis::cmd("GET")
        .arg(keys.in_call(user))
        .query_async(conn)
        .await?;
    let Some(call) = call else {
        return Ok(None);
    };
    let json: Option<String> = redis::cmd("GET")
        .arg(keys.call(&call))
        .query_async(conn)
        .await?;
    Ok(json.and_then(|json| match serde_json::from_str(&json) {
        Ok(live) => Some((CallId::from(call), live)),
        Err(e) => {
            log::warn!("cluster: unreadable live call {call}: {e}");
            None
        }
    }))
}
