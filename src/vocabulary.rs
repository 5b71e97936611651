//! The words the broker speaks in: every status, outcome, direction and kind that crosses a
//! boundary as a string is an enum here, and the string is written once, in its declaration.
//! serde and (for the stored ones) diesel both read it from there, so a frame, a REST body and
//! a database row can't spell one value two ways.
use diesel::backend::Backend;
use diesel::deserialize::{self, FromSql, FromSqlRow};
use diesel::expression::AsExpression;
use diesel::serialize::{self, Output, ToSql};
use diesel::sql_types::Text;
use serde::{Deserialize, Serialize};

/// An enum whose variants each have one spelling, used by serde and stored as text by diesel.
macro_rules! text_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident => $text:literal,)+ }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, AsExpression, FromSqlRow)]
        #[diesel(sql_type = Text)]
        pub enum $name {
            $($(#[$vdoc])* $variant,)+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];
            const NAMES: &'static [&'static str] = &[$($text,)+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }

            pub fn from_name(name: &str) -> Option<Self> {
                match name {
                    $($text => Some($name::$variant),)+
                    _ => None,
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        /// A string enum in the OpenAPI description, of the same spellings.
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .enum_values(Some(Self::NAMES.iter().copied()))
                    .into()
            }
        }

        impl utoipa::ToSchema for $name {}

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let name = std::borrow::Cow::<'de, str>::deserialize(d)?;
                Self::from_name(&name)
                    .ok_or_else(|| serde::de::Error::unknown_variant(&name, Self::NAMES))
            }
        }

        impl<DB: Backend> ToSql<Text, DB> for $name
        where
            str: ToSql<Text, DB>,
        {
            fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, DB>) -> serialize::Result {
                self.as_str().to_sql(out)
            }
        }

        impl<DB: Backend> FromSql<Text, DB> for $name
        where
            String: FromSql<Text, DB>,
        {
            fn from_sql(bytes: DB::RawValue<'_>) -> deserialize::Result<Self> {
                let name = String::from_sql(bytes)?;
                Self::from_name(&name).ok_or_else(|| {
                    format!("{name:?} is not a stored {}", stringify!($name)).into()
                })
            }
        }
    };
}

text_enum!(
    /// What a call carries.
    Media {
        Audio => "audio",
        Video => "video",
    }
);

text_enum!(
    /// How a call ended: its stored outcome and the `reason` of `call.ended`.
    EndReason {
        Completed => "completed",
        Declined => "declined",
        Cancelled => "cancelled",
        NoAnswer => "no_answer",
        Unavailable => "unavailable",
        Busy => "busy",
        ConnectionLost => "connection_lost",
        Failed => "failed",
        ServerShutdown => "server_shutdown",
    }
);

impl EndReason {
    /// Outcomes that count as a missed call for the callee (when it was never answered).
    pub const MISSED: [EndReason; 4] = [
        EndReason::Cancelled,
        EndReason::NoAnswer,
        EndReason::Unavailable,
        EndReason::Busy,
    ];

    pub fn is_missed(self) -> bool {
        Self::MISSED.contains(&self)
    }
}

/// The status a user chooses for themselves (`presence.set`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChosenStatus {
    Online,
    Away,
    Dnd,
}

/// A user's presence as their friends see it: the chosen status, `busy` while in a call, or
/// `offline`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PresenceStatus {
    Online,
    Away,
    Dnd,
    Busy,
    Offline,
}

impl From<ChosenStatus> for PresenceStatus {
    fn from(status: ChosenStatus) -> Self {
        match status {
            ChosenStatus::Online => PresenceStatus::Online,
            ChosenStatus::Away => PresenceStatus::Away,
            ChosenStatus::Dnd => PresenceStatus::Dnd,
        }
    }
}

/// A call as one of its parties sees it: placed by them, or to them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Outgoing,
    Incoming,
}

/// Where a live call stands for one of its parties (`welcome.calls`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LiveState {
    /// The user's own call, ringing the other side.
    Calling,
    /// A call to the user, ringing their devices.
    Ringing,
    Active,
}

/// Where a call in the history stands: still ringing or active (as written so far), or how
/// it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum HistoryOutcome {
    Live(RecordedPhase),
    Ended(EndReason),
}

/// A call not ended yet, as its record shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RecordedPhase {
    Ringing,
    Active,
}

/// What a `signal` frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignalKind {
    Offer,
    Answer,
    Candidate,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_words_round_trip_through_their_one_spelling() {
        for media in Media::ALL {
            let json = serde_json::to_string(media).unwrap();
            assert_eq!(json, format!("\"{}\"", media.as_str()));
            assert_eq!(serde_json::from_str::<Media>(&json).unwrap(), *media);
        }
        for reason in EndReason::ALL {
            assert_eq!(EndReason::from_name(reason.as_str()), Some(*reason));
        }
        assert_eq!(EndReason::NoAnswer.as_str(), "no_answer");
        let err = serde_json::from_str::<Media>("\"hologram\"").unwrap_err();
        assert!(err.to_string().contains("unknown variant `hologram`"));
    }

    #[test]
    fn history_outcomes_serialize_as_one_word() {
        let live = HistoryOutcome::Live(RecordedPhase::Ringing);
        let ended = HistoryOutcome::Ended(EndReason::Busy);
        assert_eq!(serde_json::to_string(&live).unwrap(), "\"ringing\"");
        assert_eq!(serde_json::to_string(&ended).unwrap(), "\"busy\"");
    }
}
