//! The names of every Redis key and channel a cluster uses, all under `--redis-prefix`, so
//! clusters (and tests) sharing one Redis never see each other's.

#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `PREFIX:nodes`: the set of node ids that registered and were not swept yet.
    pub fn nodes(&self) -> String {
        format!("{}:nodes", self.prefix)
    }

    /// `PREFIX:node:ID`: a node's registration; it expires unless the node refreshes it.
    pub fn node(&self, node: &str) -> String {
        format!("{}:node:{node}", self.prefix)
    }

    /// `PREFIX:node:ID:users`: the users with a field of this node in the directory, for the
    /// sweep when the node is lost.
    pub fn node_users(&self, node: &str) -> String {
        format!("{}:node:{node}:users", self.prefix)
    }

    /// `PREFIX:sweep:ID`: taken with SET NX by the one node that sweeps a lost node.
    pub fn sweep(&self, node: &str) -> String {
        format!("{}:sweep:{node}", self.prefix)
    }

    /// `PREFIX:presence:USER`: the directory entry, one field per node holding the user.
    pub fn presence(&self, user: &str) -> String {
        format!("{}:presence:{user}", self.prefix)
    }

    /// `PREFIX:user:USER`: the channel of one user, subscribed by every node holding a device
    /// of theirs.
    pub fn user_channel(&self, user: &str) -> String {
        format!("{}:user:{user}", self.prefix)
    }

    /// The user a `PREFIX:user:USER` channel belongs to.
    pub fn user_of_channel<'a>(&self, channel: &'a str) -> Option<&'a str> {
        channel
            .strip_prefix(self.prefix.as_str())?
            .strip_prefix(":user:")
    }

    /// `PREFIX:call:ID`: a live call and its owner (see `calls.rs`).
    pub fn call(&self, call: &str) -> String {
        format!("{}:call:{call}", self.prefix)
    }

    /// `PREFIX:incall:USER`: the live call a user is in.
    pub fn in_call(&self, user: &str) -> String {
        format!("{}:incall:{user}", self.prefix)
    }

    /// `PREFIX:to:NODE`: what is meant for one node (a call it owns, a device it holds).
    pub fn node_channel(&self, node: &str) -> String {
        format!("{}:to:{node}", self.prefix)
    }

    /// `PREFIX:revoked:KEY`: a session revoked within [`super::REVOKED_KEPT`], for a node
    /// that missed the `revoke` message; KEY is [`super::session_marker`] of its token hash.
    pub fn revoked(&self, key: &str) -> String {
        format!("{}:revoked:{key}", self.prefix)
    }

    /// `PREFIX:cluster`: node events every node hears (a node lost, a node restarted).
    pub fn cluster_channel(&self) -> String {
        format!("{}:cluster", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_channel_names_its_user() {
        let keys = Keys::new("t1");
        let channel = keys.user_channel("abc");
        assert_eq!(channel, "t1:user:abc");
        assert_eq!(keys.user_of_channel(&channel), Some("abc"));
        assert_eq!(keys.user_of_channel("t2:user:abc"), None);
        assert_eq!(keys.user_of_channel(&keys.cluster_channel()), None);
    }
}
