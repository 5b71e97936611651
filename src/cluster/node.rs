//! This node's registration and the watch over the others.
//!
//! `PREFIX:node:ID` exists while the node lives: written with an expiry a little under
//! `--node-ttl` and refreshed four times per ttl. `PREFIX:nodes` lists the ids that
//! registered. A node listed whose key has expired is lost: every node notices it within a
//! tenth of the ttl (so friends see its users go offline within `--node-ttl` of its last
//! refresh), tells its presence hub, and one of them, holding `PREFIX:sweep:ID` (SET NX),
//! removes the lost node's directory fields in one script.
use super::health::Health;
use super::keys::Keys;
use super::ClusterEvent;
use actix::Recipient;
use redis::aio::ConnectionManager;
use std::collections::HashSet;
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// The timings derived from `--node-ttl`.
#[derive(Debug, Clone, Copy)]
pub struct Timings {
    /// The registration's expiry.
    pub expiry: Duration,
    /// How often the registration is refreshed.
    pub refresh: Duration,
    /// How often the other nodes' registrations are checked.
    pub watch: Duration,
}

impl Timings {
    pub fn new(ttl: Duration) -> Self {
        let watch = ttl / 10;
        Self {
            expiry: ttl - watch,
            refresh: ttl / 4,
            watch,
        }
    }
}

/// Writes the registration; `Ok(false)` when it had lapsed (new node, or Redis lost it, or
/// the others swept this node), so what this node holds must be written again.
pub async fn refresh(
    conn: &mut ConnectionManager,
    keys: &Keys,
    node: &str,
    timings: Timings,
) -> redis::RedisResult<bool> {
    let expiry = timings.expiry.as_millis() as u64;
    let (kept,): (Option<String>,) = redis::pipe()
        .cmd("SET")
        .arg(keys.node(node))
        .arg(crate::time::now_ms())
        .arg("XX")
        .arg("PX")
        .arg(expiry)
        .pexpire(keys.node_users(node), (expiry * 3) as i64)
        .ignore()
        .pexpire(keys.nodes(), (expiry * 3) as i64)
        .ignore()
        .query_async(conn)
        .await?;
    if kept.is_some() {
        return Ok(true);
    }
    register(conn, keys, node, timings).await?;
    Ok(false)
}

/// Writes the registration and lists the node, in one transaction.
pub async fn register(
    conn: &mut ConnectionManager,
    keys: &Keys,
    node: &str,
    timings: Timings,
) -> redis::RedisResult<()> {
    let expiry = timings.expiry.as_millis() as u64;
    redis::pipe()
        .atomic()
        .cmd("SET")
        .arg(keys.node(node))
        .arg(crate::time::now_ms())
        .arg("PX")
        .arg(expiry)
        .ignore()
        .sadd(keys.nodes(), node)
        .ignore()
        .pexpire(keys.nodes(), (expiry * 3) as i64)
        .ignore()
        .exec_async(conn)
        .await
}

/// The listed nodes whose registration still exists, and those whose has expired.
const CENSUS: &str = r#"
local live, lost = {}, {}
for _, node in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if redis.call('EXISTS', ARGV[1] .. ':node:' .. node) == 1 then
    table.insert(live, node)
  else
    table.insert(lost, node)
  end
end
return {live, lost}
"#;

/// Removes a lost node's directory fields, unless it came back meanwhile or another node
/// sweeps it. Atomic, so it can't race with the node's own re-registration.
const SWEEP: &str = r#"
local node, prefix = ARGV[1], ARGV[2]
if ARGV[4] ~= 'own' then
  if redis.call('EXISTS', prefix .. ':node:' .. node) == 1 then return 0 end
  if not redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[3]) then return 0 end
end
local users = redis.call('SMEMBERS', prefix .. ':node:' .. node .. ':users')
for _, user in ipairs(users) do
  redis.call('HDEL', prefix .. ':presence:' .. user, node)
end
redis.call('DEL', prefix .. ':node:' .. node .. ':users')
redis.call('SREM', KEYS[2], node)
if ARGV[4] ~= 'own' then redis.call('PUBLISH', ARGV[6], ARGV[5]) end
return #users
"#;

/// Removes a lost `node`'s directory fields and tells every node on the cluster channel (a
/// node whose census runs after the sweep no longer finds it listed). With `own`, whatever
/// its registration says, and quietly: a node that restarts with the same id clears what its
/// previous run left before it registers.
pub async fn sweep(
    conn: &mut ConnectionManager,
    keys: &Keys,
    me: &str,
    node: &str,
    hold: Duration,
    own: bool,
) -> redis::RedisResult<i64> {
    let lost = super::bus::Envelope {
        from: me.to_owned(),
        body: super::bus::Body::NodeLost {
            node: node.to_owned(),
        },
    };
    let announcement = serde_json::to_string(&lost).unwrap_or_default();
    redis::Script::new(SWEEP)
        .key(keys.sweep(node))
        .key(keys.nodes())
        .arg(node)
        .arg(keys.prefix())
        .arg(hold.as_millis() as u64)
        .arg(if own { "own" } else { "lost" })
        .arg(announcement)
        .arg(keys.cluster_channel())
        .invoke_async(conn)
        .await
}

/// This node stops: its registration, its directory fields and its entry in the node set go,
/// and the others hear `node_lost` at once, as for a node swept, instead of after the ttl.
/// Returns how many users it held.
pub async fn leave(
    conn: &mut ConnectionManager,
    keys: &Keys,
    node: &str,
) -> redis::RedisResult<i64> {
    redis::cmd("DEL")
        .arg(keys.node(node))
        .exec_async(conn)
        .await?;
    let held = sweep(conn, keys, node, node, Duration::ZERO, true).await?;
    let gone = super::bus::Envelope {
        from: node.to_owned(),
        body: super::bus::Body::NodeLost {
            node: node.to_owned(),
        },
    };
    redis::cmd("PUBLISH")
        .arg(keys.cluster_channel())
        .arg(serde_json::to_string(&gone).unwrap_or_default())
        .exec_async(conn)
        .await?;
    Ok(held)
}

/// The nodes last found lost (listed, registration expired), shared with the directory
/// reads and the hub: what they held is ignored. A node not known either way counts as live
/// (one that just joined is seen before the next census).
pub type Lost = Arc<RwLock<HashSet<String>>>;

/// The nodes the last census found alive (this one included).
pub type Alive = Arc<RwLock<Vec<String>>>;

/// The nodes registered now: (alive, lost).
pub async fn census(
    conn: &mut ConnectionManager,
    keys: &Keys,
) -> redis::RedisResult<(Vec<String>, Vec<String>)> {
    redis::Script::new(CENSUS)
        .key(keys.nodes())
        .arg(keys.prefix())
        .invoke_async(conn)
        .await
}

pub fn is_lost(lost: &Lost, node: &str) -> bool {
    lost.read().is_ok_and(|l| l.contains(node))
}

/// Refreshes the registration and watches the others, forever.
#[allow(clippy::too_many_arguments)]
pub async fn keeper(
    mut conn: ConnectionManager,
    keys: Keys,
    node: String,
    timings: Timings,
    health: Arc<Health>,
    lost_set: Lost,
    alive_set: Alive,
    events: Recipient<ClusterEvent>,
    calls: super::OnCall,
) {
    let mut refresh = tokio::time::interval(timings.refresh);
    let mut watch = tokio::time::interval(timings.watch);
    for timer in [&mut refresh, &mut watch] {
        timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    }
    let mut lost_before: HashSet<String> = HashSet::new();
    loop {
        tokio::select! {
            _ = refresh.tick() => {
                let refreshed = tokio::time::timeout(
                    super::bus::TIMEOUT,
                    self::refresh(&mut conn, &keys, &node, timings),
                ).await;
                match refreshed {
                    Ok(Ok(kept)) => {
                        let back = health.commands(Ok(()));
                        if !kept {
                            log::warn!("cluster: this node's registration had lapsed; registering again");
                        }
                        if !kept || back {
                            events.do_send(ClusterEvent::Resync);
                        }
                    }
                    Ok(Err(e)) => fail(&health, e.to_string()),
                    Err(_) => fail(&health, "refreshing the registration timed out".into()),
                }
            }
            _ = watch.tick() => {
                let census = tokio::time::timeout(
                    super::bus::TIMEOUT,
                    census(&mut conn, &keys),
                ).await;
                let Ok(Ok((alive, lost))) = census else { continue };
                if let Ok(mut set) = alive_set.write() {
                    *set = alive;
                }
                if let Ok(mut set) = lost_set.write() {
                    *set = lost.iter().filter(|n| **n != node).cloned().collect();
                }
                for gone in &lost {
                    if gone == &node {
                        continue;
                    }
                    if !lost_before.contains(gone) {
                        log::warn!("cluster: node {gone} is lost; its users go offline");
                        events.do_send(ClusterEvent::NodeLost { node: gone.clone() });
                        if let Some(router) = calls.get() {
                            router.do_send(super::CallEvent(super::bus::Envelope {
                                from: node.clone(),
                                body: super::bus::Body::NodeLost { node: gone.clone() },
                            }));
                        }
                    }
                    match sweep(&mut conn, &keys, &node, gone, timings.expiry, false).await {
                        Ok(n) if n > 0 => log::info!("cluster: swept {n} user(s) of lost node {gone}"),
                        Ok(_) => {}
                        Err(e) => log::warn!("cluster: sweeping node {gone} failed: {e}"),
                    }
                }
                lost_before = lost.into_iter().collect();
            }
        }
    }
}

fn fail(health: &Health, why: String) {
    if health.ready().is_ok() {
        log::warn!("cluster: redis unreachable: {why}");
    }
    health.commands(Err(why));
}
