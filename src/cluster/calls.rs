//! Live calls in Redis: which node owns each call (`PREFIX:call:ID`) and which call each user
//! is in (`PREFIX:incall:USER`). Written by the owner as the call rings, is answered and ends;
//! read when a device connects to a node that does not hold its user's call (its `welcome`
//! lists the call, which it can then resume there) and before an invite (a callee in a call
//! anywhere is busy).
use super::keys::Keys;
use crate::ids::{CallId, DeviceId, UserId};
use crate::people::Party;
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

/// One side of a call, as nodes send it: of a handed-over call, or of one placed elsewhere.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandedParty {
    pub user: String,
    pub username: String,
    pub display_name: String,
    /// Its device in the call, unless it was on the node that handed the call over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<DeviceId>,
}

impl HandedParty {
    pub fn new(party: &Party, device: Option<DeviceId>) -> Self {
        Self {
            user: party.user.to_string(),
            username: party.username.clone(),
            display_name: party.display_name.clone(),
            device,
        }
    }

    pub fn party(&self) -> Party {
        Party {
            user: UserId::from(self.user.clone()),
            username: self.username.clone(),
            display_name: self.display_name.clone(),
        }
    }
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

/// How long a live call's keys outlive their last write. The owner deletes them when the call
/// ends and writes them again every [`CALL_REFRESH`]; this bounds what a lost owner, or an end
/// written while Redis was unreachable, leaves (readers also skip calls of lost nodes).
pub const CALL_TTL_MS: u64 = 3 * 60 * 1000;
/// How often an owner writes its live calls again.
pub const CALL_REFRESH: std::time::Duration = std::time::Duration::from_secs(60);

/// What `PREFIX:incall:USER` holds: `CALL OWNER CALLER CALLEE`, so that the reservation
/// script can tell glare from busy without another key.
pub fn in_call_value(call: &str, live: &LiveCall) -> String {
    format!("{call} {} {} {}", live.owner, live.caller, live.callee)
}

/// Deletes `KEYS[1]` only if it still names call `ARGV[1]`: a user's next call may have been
/// written meanwhile.
const FORGET: &str = r"
local held = redis.call('GET', KEYS[1])
if held and string.match(held, '^(%S+)') == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
";

/// Reserves both users for a new call, atomically: `KEYS[1]`/`KEYS[2]` are the caller's and
/// the callee's `incall` keys, `KEYS[3]` the call's key, `ARGV[1]` the `incall` value to set,
/// `ARGV[2]` the expiry (ms), `ARGV[3]`/`ARGV[4]` the caller and callee ids, `ARGV[5]` the key
/// prefix, `ARGV[6]` the call's JSON. The call is written with the reservation, so that a
/// device that finds its user reserved also finds the call (and rings). A reservation whose
/// owner node is gone counts as free. Answers `{'ok'}`, `{'busy'}` (the callee is in a
/// call), `{'engaged'}` (the caller is), or `{'glare', CALL, OWNER}`: the callee is calling
/// the caller already, in call CALL held by OWNER.
const RESERVE: &str = r"
local function live(v)
  if not v then return nil end
  local call, owner, caller, callee = string.match(v, '^(%S+) (%S+) (%S+) (%S+)$')
  if not call then return nil end
  if redis.call('EXISTS', ARGV[5] .. ':node:' .. owner) == 0 then return nil end
  return {call, owner, caller, callee}
end
local theirs = live(redis.call('GET', KEYS[2]))
if theirs then
  if theirs[3] == ARGV[4] and theirs[4] == ARGV[3] then
    return {'glare', theirs[1], theirs[2]}
  end
  return {'busy'}
end
if live(redis.call('GET', KEYS[1])) then return {'engaged'} end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
redis.call('SET', KEYS[3], ARGV[6], 'PX', ARGV[2])
return {'ok'}
";

/// How a reservation went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reserved {
    Ok,
    /// The callee is in a call (ringing included).
    Busy,
    /// The caller is in a call held elsewhere.
    Engaged,
    /// The callee is calling the caller: that call, and its owner.
    Glare {
        call: CallId,
        owner: String,
    },
}

/// Reserves `live`'s two users for call `call` (see [`RESERVE`]).
pub async fn reserve(
    conn: &mut ConnectionManager,
    keys: &Keys,
    call: &str,
    live: &LiveCall,
) -> redis::RedisResult<Reserved> {
    let json = serde_json::to_string(live).map_err(|e| {
        redis::RedisError::from((
            redis::ErrorKind::Client,
            "cannot encode the call",
            e.to_string(),
        ))
    })?;
    let answer: Vec<String> = redis::Script::new(RESERVE)
        .key(keys.in_call(&live.caller))
        .key(keys.in_call(&live.callee))
        .key(keys.call(call))
        .arg(in_call_value(call, live))
        .arg(CALL_TTL_MS)
        .arg(&live.caller)
        .arg(&live.callee)
        .arg(keys.prefix())
        .arg(json)
        .invoke_async(conn)
        .await?;
    Ok(match answer.as_slice() {
        [ok] if ok == "ok" => Reserved::Ok,
        [engaged] if engaged == "engaged" => Reserved::Engaged,
        [glare, call, owner] if glare == "glare" => Reserved::Glare {
            call: CallId::from(call.clone()),
            owner: owner.clone(),
        },
        _ => Reserved::Busy,
    })
}

/// Adds to `pipe` the writes that make `live` call `call` of `users` (`None`: it is over).
pub fn write(
    pipe: &mut redis::Pipeline,
    keys: &Keys,
    call: &str,
    users: &[String; 2],
    live: Option<(&str, &str)>,
) {
    match live {
        Some((json, in_call)) => {
            pipe.cmd("SET")
                .arg(keys.call(call))
                .arg(json)
                .arg("PX")
                .arg(CALL_TTL_MS)
                .ignore();
            for user in users {
                pipe.cmd("SET")
                    .arg(keys.in_call(user))
                    .arg(in_call)
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
    let held: Option<String> = redis::cmd("GET")
        .arg(keys.in_call(user))
        .query_async(conn)
        .await?;
    let Some(call) = held.and_then(|v| v.split(' ').next().map(String::from)) else {
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
