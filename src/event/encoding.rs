//! The stored form of an event: a version byte, then fields in a fixed order with
//! LEB128 lengths. About a third of the JSON it replaces, and the outbox writes one per event
//! and endpoint (BENCHMARKS.md: sled's throughput grows as values shrink).
//!
//! Layout (version 1): `0x01`, event type (index in [`EventType::ALL`]), commit time
//! (i64, big-endian), table, parameter count, then per parameter: name, flags (bit 0: has a
//! value, bit 1: integer column), the value when present, column. Strings are a length then
//! UTF-8 bytes. JSON (what earlier builds stored) starts with `{` and is read as before.

use crate::config::EventType;

use super::{Event, EventParam};

const VERSION: u8 = 1;
const HAS_VALUE: u8 = 1;
const INTEGER: u8 = 2;

/// A stored event that cannot be read back.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("a stored event in JSON is damaged: {0}")]
    Json(#[from] serde_json::Error),
    #[error("a stored event is damaged: {0}")]
    Binary(&'static str),
}

pub fn encode(event: &Event) -> Vec<u8> {
    let strings: usize = event
        .params
        .iter()
        .map(|p| p.name.len() + p.column.len() + p.value.as_ref().map_or(0, String::len) + 8)
        .sum();
    let mut out = Vec::with_capacity(16 + event.table.len() + strings);
    out.push(VERSION);
    let index = EventType::ALL
        .iter()
        .position(|t| *t == event.event_type)
        .unwrap_or(0);
    out.push(index as u8);
    out.extend_from_slice(&event.commit_time.to_be_bytes());
    put_str(&mut out, &event.table);
    put_len(&mut out, event.params.len());
    for p in &event.params {
        put_str(&mut out, &p.name);
        let mut flags = 0;
        if p.value.is_some() {
            flags |= HAS_VALUE;
        }
        if p.integer {
            flags |= INTEGER;
        }
        out.push(flags);
        if let Some(value) = &p.value {
            put_str(&mut out, value);
        }
        put_str(&mut out, &p.column);
    }
    out
}

pub fn decode(bytes: &[u8]) -> Result<Event, DecodeError> {
    match bytes.first() {
        Some(b'{') => Ok(serde_json::from_slice(bytes)?),
        Some(&VERSION) => Reader(&bytes[1..]).event(),
        Some(_) => Err(DecodeError::Binary("unknown format version")),
        None => Err(DecodeError::Binary("empty")),
    }
}

fn put_len(out: &mut Vec<u8>, mut n: usize) {
    loop {
        let byte = (n & 0x7F) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_len(out, s.len());
    out.extend_from_slice(s.as_bytes());
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn event(mut self) -> Result<Event, DecodeError> {
        let index = self.byte()?;
        let event_type = *EventType::ALL
            .get(usize::from(index))
            .ok_or(DecodeError::Binary("unknown event type"))?;
        let commit_time = i64::from_be_bytes(
            self.take(8)?
                .try_into()
                .map_err(|_| DecodeError::Binary("truncated"))?,
        );
        let table = self.string()?;
        let count = self.len()?;
        // Each parameter takes at least three bytes: a count beyond that is damage, not a
        // reason to reserve memory.
        if count > self.0.len() / 3 {
            return Err(DecodeError::Binary("parameter count beyond the data"));
        }
        let mut params = Vec::with_capacity(count);
        for _ in 0..count {
            let name = self.string()?;
            let flags = self.byte()?;
            let value = if flags & HAS_VALUE != 0 {
                Some(self.string()?)
            } else {
                None
            };
            let column = self.string()?;
            params.push(EventParam {
                name,
                value,
                integer: flags & INTEGER != 0,
                column,
            });
        }
        if !self.0.is_empty() {
            return Err(DecodeError::Binary("trailing bytes"));
        }
        Ok(Event {
            event_type,
            params,
            commit_time,
            table,
        })
    }

    fn take(&mut self, n: usize) -> Result<&[u8], DecodeError> {
        if self.0.len() < n {
            return Err(DecodeError::Binary("truncated"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn byte(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    fn len(&mut self) -> Result<usize, DecodeError> {
        let mut n: usize = 0;
        for shift in (0..64).step_by(7) {
            let byte = self.byte()?;
            n |= usize::from(byte & 0x7F)
                .checked_shl(shift)
                .ok_or(DecodeError::Binary("length overflows"))?;
            if byte & 0x80 == 0 {
                return Ok(n);
            }
        }
        Err(DecodeError::Binary("length overflows"))
    }

    fn string(&mut self) -> Result<String, DecodeError> {
        let n = self.len()?;
        let bytes = self.take(n)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| DecodeError::Binary("text is not UTF-8"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(value: Option<&str>) -> Event {
        Event {
            event_type: EventType::ScormCompleted,
            params: vec![
                EventParam {
                    name: "user_id".into(),
                    value: Some("7".into()),
                    integer: true,
                    column: "user_id".into(),
                },
                EventParam {
                    name: "note".into(),
                    value: value.map(str::to_string),
                    integer: false,
                    column: "note".into(),
                },
            ],
            commit_time: -5,
            table: "public.scorm_attempts".into(),
        }
    }

    #[test]
    fn round_trips_every_type_and_long_values() {
        let long = "ü".repeat(300);
        for t in EventType::ALL {
            for v in [None, Some(""), Some("x"), Some(long.as_str())] {
                let mut e = event(v);
                e.event_type = t;
                let bytes = encode(&e);
                assert_eq!(bytes[0], VERSION);
                assert_eq!(decode(&bytes).unwrap(), e);
            }
        }
    }

    #[test]
    fn is_much_smaller_than_json() {
        let e = event(Some("done"));
        assert!(encode(&e).len() * 2 < serde_json::to_vec(&e).unwrap().len());
    }

    #[test]
    fn damage_is_an_error_never_a_panic() {
        let bytes = encode(&event(Some("abc")));
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut extra = bytes.clone();
        extra.push(0);
        assert!(decode(&extra).is_err());
        assert!(decode(&[VERSION, 99]).is_err());
        assert!(decode(&[7]).is_err());
        assert!(
            decode(&[VERSION, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F]).is_err()
        );
        let mut bad_utf8 = encode(&event(Some("a")));
        let at = bad_utf8.len() - 1;
        bad_utf8[at] = 0xFF;
        assert!(decode(&bad_utf8).is_err());
    }
}
