//! Id newtypes, so a user id can't be passed where a call id belongs.
use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $make:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub String);

        impl $name {
            pub fn new() -> Self {
                Self($make.simple().to_string())
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

id_type!(
    /// A user's stable id (never shown as a login name).
    UserId,
    uuid::Uuid::new_v4()
);
id_type!(
    /// A call's id, handed to both parties and used in the REST history. Time-ordered
    /// (UUIDv7), so history pages sort calls made within one millisecond in creation order.
    CallId,
    uuid::Uuid::now_v7()
);
id_type!(
    /// One WebSocket connection of a user (a browser tab, a phone).
    DeviceId,
    uuid::Uuid::new_v4()
);
