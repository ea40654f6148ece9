//! Key layouts. Event ids are encoded as commit LSN (8 bytes) then ordinal (4 bytes), both
//! big-endian, so sled's byte order is commit order. Endpoint names are length-prefixed so one
//! name can never be a prefix of another's keys.
//!
//! - `meta/checkpoint` → JSON checkpoint
//! - `meta/staged` → commit LSN (8 bytes) and a count (4 bytes): the transaction whose first
//!   entries are stored ahead of its commit, and how many
//! - `out/` + len + endpoint + id → delivery state (a compact fresh form, or JSON and `\n`; see
//!   `outbox`), then the event payload (`event::encoding`)
//! - `dead/` + len + endpoint + id → dead letter JSON, `\n`, event payload
//! - `run/` + len + endpoint + first id → several fresh entries of the endpoint (`runs`)
//! - `done/` + len + endpoint + sequence number (8 bytes) → ids taken out of runs (`runs`)

use crate::event::EventId;
use crate::lsn::Lsn;

pub const CHECKPOINT: &[u8] = b"meta/checkpoint";
pub const STAGED: &[u8] = b"meta/staged";
pub const OUTBOX: &[u8] = b"out/";
pub const DEAD: &[u8] = b"dead/";
pub const RUN: &[u8] = b"run/";
pub const DONE: &[u8] = b"done/";

/// Bytes of an event id in keys and runs.
pub const ID_LEN: usize = 12;

/// The prefix of all of `endpoint`'s keys under `area` (`OUTBOX` or `DEAD`).
pub fn endpoint_prefix(area: &[u8], endpoint: &str) -> Vec<u8> {
    let name = endpoint.as_bytes();
    // Config validation keeps names short; a longer one is cut, never wrapped around.
    let len = name.len().min(usize::from(u16::MAX));
    let mut key = Vec::with_capacity(area.len() + 2 + len + ID_LEN);
    key.extend_from_slice(area);
    key.extend_from_slice(&(len as u16).to_be_bytes());
    key.extend_from_slice(&name[..len]);
    key
}

pub fn entry(area: &[u8], endpoint: &str, id: EventId) -> Vec<u8> {
    let mut key = endpoint_prefix(area, endpoint);
    key.extend_from_slice(&id_bytes(id));
    key
}

pub fn outbox(endpoint: &str, id: EventId) -> Vec<u8> {
    entry(OUTBOX, endpoint, id)
}

pub fn dead(endpoint: &str, id: EventId) -> Vec<u8> {
    entry(DEAD, endpoint, id)
}

pub fn run(endpoint: &str, first: EventId) -> Vec<u8> {
    entry(RUN, endpoint, first)
}

pub fn done(endpoint: &str, seq: u64) -> Vec<u8> {
    let mut key = endpoint_prefix(DONE, endpoint);
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

/// Splits an `out/`, `dead/` or `run/` key into endpoint and id.
pub fn parse_entry(area: &[u8], key: &[u8]) -> Option<(String, EventId)> {
    let (name, id) = split(area, key)?;
    if id.len() != ID_LEN {
        return None;
    }
    Some((name.to_string(), parse_id(id)?))
}

/// Splits a `done/` key into endpoint and sequence number.
pub fn parse_done(key: &[u8]) -> Option<(String, u64)> {
    let (name, seq) = split(DONE, key)?;
    Some((name.to_string(), u64::from_be_bytes(seq.try_into().ok()?)))
}

/// An id as keys (and runs) hold it: commit LSN then ordinal, big-endian.
pub fn id_bytes(id: EventId) -> [u8; ID_LEN] {
    let mut bytes = [0; ID_LEN];
    bytes[..8].copy_from_slice(&id.commit_lsn.0.to_be_bytes());
    bytes[8..].copy_from_slice(&id.ordinal.to_be_bytes());
    bytes
}

/// Reads [`id_bytes`] back.
pub fn parse_id(bytes: &[u8]) -> Option<EventId> {
    if bytes.len() != ID_LEN {
        return None;
    }
    Some(EventId {
        commit_lsn: Lsn(u64::from_be_bytes(bytes[..8].try_into().ok()?)),
        ordinal: u32::from_be_bytes(bytes[8..].try_into().ok()?),
    })
}

fn split<'k>(area: &[u8], key: &'k [u8]) -> Option<(&'k str, &'k [u8])> {
    let rest = key.strip_prefix(area)?;
    let len = usize::from(u16::from_be_bytes(rest.get(..2)?.try_into().ok()?));
    let name = std::str::from_utf8(rest.get(2..2 + len)?).ok()?;
    Some((name, rest.get(2 + len..)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_keys_round_trip_and_sort_by_commit() {
        let a = EventId {
            commit_lsn: Lsn(0xFF),
            ordinal: 2,
        };
        let b = EventId {
            commit_lsn: Lsn(0x1_0000),
            ordinal: 0,
        };
        let ka = outbox("hr", a);
        let kb = outbox("hr", b);
        assert!(ka < kb);
        assert_eq!(parse_entry(OUTBOX, &ka), Some(("hr".to_string(), a)));
        assert_eq!(parse_entry(DEAD, &ka), None);
        // "hr" is not a prefix of "hr2"'s keys.
        assert!(!outbox("hr2", a).starts_with(&endpoint_prefix(OUTBOX, "hr")));
        assert_eq!(parse_entry(RUN, &run("hr", b)), Some(("hr".to_string(), b)));
        assert!(done("hr", 1) < done("hr", 256));
        assert_eq!(parse_done(&done("hr", 7)), Some(("hr".to_string(), 7)));
        assert_eq!(parse_done(&run("hr", a)), None);
        assert_eq!(parse_id(&id_bytes(b)), Some(b));
        assert_eq!(parse_id(&[0; 11]), None);
    }
}
