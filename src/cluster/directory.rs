//! The cluster-wide presence directory: `PREFIX:presence:USER` is a hash with one field per
//! node that holds the user, its value that node's view of them (JSON). A user is online while
//! any live node has a field. Reading merges the fields of live nodes into one presence.
use super::keys::Keys;
use crate::ids::UserId;
use crate::vocabulary::{ChosenStatus, PresenceStatus};
use crate::wire::protocol::PresenceInfo;
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};

/// One node's view of one user: written by that node whenever it changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeView {
    pub username: String,
    /// Devices connected on that node (0 while the node's offline grace runs).
    pub devices: u32,
    pub status: ChosenStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When the status was chosen (ms since the epoch; 0: never chosen, the default). The
    /// newest choice over all nodes is the user's status.
    #[serde(default)]
    pub since: i64,
    #[serde(default)]
    pub busy: bool,
    /// The sessions of the devices connected there (each as [`super::session_marker`]
    /// writes it): the owner of a call does not ring by push an app open on another node.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sessions: Vec<String>,
}

/// One presence out of every node's view: busy if in a call on any node, else the status
/// chosen last. `None` when there is no view (offline).
pub fn merge<'a>(views: impl IntoIterator<Item = &'a NodeView>) -> Option<PresenceInfo> {
    let mut newest: Option<&NodeView> = None;
    let mut busy = false;
    for view in views {
        busy |= view.busy;
        if newest.is_none_or(|n| view.since > n.since) {
            newest = Some(view);
        }
    }
    newest.map(|view| PresenceInfo {
        username: view.username.clone(),
        status: if busy {
            PresenceStatus::Busy
        } else {
            view.status.into()
        },
        message: view.message.clone(),
        last_seen: None,
    })
}

/// Every node's view of each of `users` (absent: no node holds them) but those of the
/// `ignored` nodes (this one, the lost ones), one round trip.
pub async fn read(
    conn: &mut ConnectionManager,
    keys: &Keys,
    users: &[UserId],
    ignored: &HashSet<String>,
) -> redis::RedisResult<HashMap<UserId, Vec<(String, NodeView)>>> {
    if users.is_empty() {
        return Ok(HashMap::new());
    }
    let mut pipe = redis::pipe();
    for user in users {
        pipe.hgetall(keys.presence(user.as_str()));
    }
    let hashes: Vec<HashMap<String, String>> = pipe.query_async(conn).await?;
    let mut found = HashMap::new();
    for (user, fields) in users.iter().zip(hashes) {
        let views: Vec<(String, NodeView)> = fields
            .into_iter()
            .filter(|(node, _)| !ignored.contains(node))
            .filter_map(|(node, json)| match serde_json::from_str(&json) {
                Ok(view) => Some((node, view)),
                Err(e) => {
                    log::warn!("cluster: unreadable directory entry of {node}: {e}");
                    None
                }
            })
            .collect();
        if !views.is_empty() {
            found.insert(user.clone(), views);
        }
    }
    Ok(found)
}

/// How long a directory hash outlives its last write. The owner of each field removes it, or
/// the sweep of a lost node does; this only bounds what a whole cluster that vanished leaves.
pub const ENTRY_TTL_SECS: i64 = 24 * 3600;

/// Adds to `pipe` the writes that make `view` this node's view of `user` (`None`: this node
/// no longer holds them).
pub fn write(pipe: &mut redis::Pipeline, keys: &Keys, node: &str, user: &str, view: Option<&str>) {
    let entry = keys.presence(user);
    match view {
        Some(json) => {
            pipe.hset(&entry, node, json)
                .ignore()
                .expire(&entry, ENTRY_TTL_SECS)
                .ignore()
                .sadd(keys.node_users(node), user)
                .ignore();
        }
        None => {
            pipe.hdel(&entry, node)
                .ignore()
                .srem(keys.node_users(node), user)
                .ignore();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(status: ChosenStatus, since: i64, busy: bool) -> NodeView {
        NodeView {
            username: "amy".into(),
            devices: 1,
            status,
            message: None,
            since,
            busy,
            sessions: Vec::new(),
        }
    }

    #[test]
    fn the_newest_status_wins_and_busy_anywhere_is_busy() {
        let a = view(ChosenStatus::Dnd, 20, false);
        let b = view(ChosenStatus::Online, 0, false);
        let merged = merge([&b, &a]).map(|p| p.status);
        assert_eq!(merged, Some(PresenceStatus::Dnd));
        let c = view(ChosenStatus::Online, 0, true);
        assert_eq!(
            merge([&a, &c]).map(|p| p.status),
            Some(PresenceStatus::Busy)
        );
        assert!(merge(std::iter::empty()).is_none());
    }
}
