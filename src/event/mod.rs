//! Events: what detection produces, the outbox stores and delivery sends.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::config::EventType;
use crate::lsn::Lsn;

mod encoding;

pub use encoding::DecodeError;

/// An event's identity: its transaction's commit LSN and its ordinal among the transaction's
/// events. Stable across retries, restarts and re-deliveries, so receivers can deduplicate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventId {
    pub commit_lsn: Lsn,
    pub ordinal: u32,
}

impl fmt::Display for EventId {
    /// `evt_<commit LSN as 16 hex digits>_<ordinal>`: sorts like the WAL when compared as text
    /// within one transaction size, and reads back with [`EventId::parse`].
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "evt_{:016x}_{}", self.commit_lsn.0, self.ordinal)
    }
}

impl EventId {
    pub fn parse(text: &str) -> Option<EventId> {
        let rest = text.strip_prefix("evt_")?;
        let (lsn, ordinal) = rest.split_once('_')?;
        if lsn.len() != 16 {
            return None;
        }
        Some(EventId {
            commit_lsn: Lsn(u64::from_str_radix(lsn, 16).ok()?),
            ordinal: ordinal.parse().ok()?,
        })
    }
}

/// One parameter of an event, in the order the rule lists them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventParam {
    pub name: String,
    /// The column's text value; `None` when the column was NULL (or its value was not sent):
    /// such an event goes to dead letters naming the column, never out with an empty value.
    pub value: Option<String>,
    /// The column is an integer type: JSON payloads render it as a number.
    pub integer: bool,
    /// The column the value came from, for error messages.
    pub column: String,
}

/// A detected Fuse event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    #[serde(with = "event_type_text")]
    pub event_type: EventType,
    pub params: Vec<EventParam>,
    /// Commit time, PostgreSQL microseconds since 2000-01-01.
    pub commit_time: i64,
    /// `schema.table` the change came from, for logs.
    pub table: String,
}

impl Event {
    /// The ordering key: events with the same key reach an endpoint in commit order. The
    /// `user_id` parameter when there is one, otherwise the first parameter.
    pub fn ordering_key(&self) -> String {
        let param = self
            .params
            .iter()
            .find(|p| p.name == "user_id")
            .or_else(|| self.params.first());
        match param {
            Some(p) => format!("{}={}", p.name, p.value.as_deref().unwrap_or("")),
            None => String::new(),
        }
    }

    /// The first parameter without a value, if any.
    pub fn missing_param(&self) -> Option<&EventParam> {
        self.params.iter().find(|p| p.value.is_none())
    }

    /// The stored form (see [`encoding`]): compact, because every event is written to the
    /// outbox and sled's cost grows with the bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        encoding::encode(self)
    }

    /// Reads the stored form back; also the JSON that earlier builds stored.
    pub fn from_bytes(bytes: &[u8]) -> Result<Event, DecodeError> {
        encoding::decode(bytes)
    }
}

mod event_type_text {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::config::EventType;

    pub fn serialize<S: Serializer>(t: &EventType, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(t.as_str())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<EventType, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> Event {
        Event {
            event_type: EventType::LearningPlanCompleted,
            params: vec![
                EventParam {
                    name: "user_id".into(),
                    value: Some("42".into()),
                    integer: true,
                    column: "user_id".into(),
                },
                EventParam {
                    name: "learning_plan_id".into(),
                    value: None,
                    integer: true,
                    column: "learning_plan_id".into(),
                },
            ],
            commit_time: 1_000_000,
            table: "public.learning_plan_enrollments".into(),
        }
    }

    #[test]
    fn id_round_trips() {
        let id = EventId {
            commit_lsn: Lsn(0x01A3_F2B8),
            ordinal: 7,
        };
        assert_eq!(id.to_string(), "evt_0000000001a3f2b8_7");
        assert_eq!(EventId::parse(&id.to_string()), Some(id));
        assert_eq!(EventId::parse("evt_1a3f2b8_7"), None);
        assert_eq!(EventId::parse("msg_0000000001a3f2b8_7"), None);
    }

    #[test]
    fn serializes_and_keys_by_user() {
        let e = event();
        assert_eq!(Event::from_bytes(&e.to_bytes()).unwrap(), e);
        assert_eq!(e.ordering_key(), "user_id=42");
        assert_eq!(e.missing_param().unwrap().column, "learning_plan_id");
        // What earlier versions stored still reads.
        let json = serde_json::to_vec(&e).unwrap();
        assert_eq!(Event::from_bytes(&json).unwrap(), e);
    }
}
