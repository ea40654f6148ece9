//! What the delivery tests share: an endpoint, an event, a recorded request, and an independent
//! Standard Webhooks signature check.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::Bytes;
use hmac::{Hmac, KeyInit, Mac};
use hyper::header::HeaderMap;
use sha2::Sha256;

use fuse_cdc_bridge::config::{BackoffConfig, EndpointConfig, EventType, PayloadFormat, Secret};
use fuse_cdc_bridge::event::{Event, EventId, EventParam};
use fuse_cdc_bridge::Lsn;

pub const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
/// 2024-05-06T07:08:09.123456Z in PostgreSQL microseconds.
pub const COMMIT_TIME: i64 = 1_714_979_289_123_456 - 946_684_800_000_000;

/// A request as a test receiver saw it.
#[derive(Debug)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

pub fn endpoint(url: url::Url, format: PayloadFormat, secret: Option<&str>) -> EndpointConfig {
    EndpointConfig {
        name: "hr-system".into(),
        url,
        events: EventType::ALL.to_vec(),
        format,
        secret: secret.map(Secret::new),
        timeout: Duration::from_secs(5),
        concurrency: 4,
        max_attempts: 20,
        max_age: Duration::from_secs(3 * 86400),
        backoff: BackoffConfig {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(600),
        },
    }
}

pub fn param(name: &str, value: Option<&str>, integer: bool) -> EventParam {
    EventParam {
        name: name.into(),
        value: value.map(Into::into),
        integer,
        column: name.into(),
    }
}

pub fn attendance() -> Event {
    Event {
        event_type: EventType::EventAttendanceUpdated,
        params: vec![
            param("user_id", Some("42"), true),
            param("event_id", Some("7"), true),
            param("occurrence_id", Some("9"), true),
            param("status", Some("not attended & gone"), false),
        ],
        commit_time: COMMIT_TIME,
        table: "public.event_attendances".into(),
    }
}

pub fn id(ordinal: u32) -> EventId {
    EventId {
        commit_lsn: Lsn(0x01A3_F2B8),
        ordinal,
    }
}

pub fn header<'a>(r: &'a Recorded, name: &str) -> &'a str {
    r.headers
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .unwrap()
}

pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Standard Webhooks verification written from the spec, independent of the crate's signing.
pub fn expected_signature(secret: &str, id: &str, timestamp: &str, body: &[u8]) -> String {
    let key = STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap())
        .unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

/// The form body of [`attendance`].
pub const FORM_BODY: &str = "user_id=42&event_id=7&occurrence_id=9&status=not+attended+%26+gone";

/// Checks the exact request `attendance()` as `id(7)` makes to `/hooks/fuse?tenant=a` in form
/// format, signed with [`SECRET`], sent between `before` and `after` (unix seconds): method,
/// path, body, every header the wire contract names, and the signature.
pub fn assert_signed_form_request(r: &Recorded, before: i64, after: i64) {
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "/hooks/fuse?tenant=a");
    assert_eq!(std::str::from_utf8(&r.body).unwrap(), FORM_BODY);
    assert_eq!(
        header(r, "content-type"),
        "application/x-www-form-urlencoded"
    );
    assert_eq!(header(r, "content-length"), FORM_BODY.len().to_string());
    assert_eq!(header(r, "webhook-id"), "evt_0000000001a3f2b8_7");
    assert_eq!(header(r, "webhook-event-type"), "event_attendance.updated");
    assert_eq!(
        header(r, "user-agent"),
        format!("fuse-cdc-bridge/{}", env!("CARGO_PKG_VERSION"))
    );
    let timestamp = header(r, "webhook-timestamp");
    let ts: i64 = timestamp.parse().unwrap();
    assert!(
        (before..=after).contains(&ts),
        "{ts} not in {before}..={after}"
    );
    assert_eq!(
        header(r, "webhook-signature"),
        expected_signature(SECRET, "evt_0000000001a3f2b8_7", timestamp, &r.body)
    );
}
