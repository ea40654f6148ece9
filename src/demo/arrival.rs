//! A request as the receiving system sees it: which endpoint, which event, its parameters from
//! either body format, and whether its `webhook-signature` verifies with the endpoint's secret.
//!
//! The check is written here from the Standard Webhooks scheme rather than calling the bridge's
//! signer, so a signing bug shows up as a failed check instead of agreeing with itself.

use std::fmt;

use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use sha2::Sha256;

use super::endpoints::DemoEndpoint;
use crate::config::EventType;
use crate::receiver::Received;

/// What the demo prints about one request.
pub struct Arrival {
    pub endpoint: String,
    pub format: &'static str,
    /// `Err` holds the header's text when it names no known event type.
    pub event_type: Result<EventType, String>,
    pub params: Vec<(String, String)>,
    pub signature: Signature,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signature {
    Verified,
    Invalid,
    Missing,
}

impl Signature {
    pub fn label(self) -> &'static str {
        match self {
            Signature::Verified => "verified",
            Signature::Invalid => "INVALID",
            Signature::Missing => "unsigned",
        }
    }
}

pub fn parse(received: &Received, endpoints: &[DemoEndpoint]) -> Arrival {
    let endpoint = endpoints.iter().find(|e| e.path() == received.path);
    let event_type_header = received.header("webhook-event-type").unwrap_or("");
    let json = received
        .header("content-type")
        .is_some_and(|c| c.starts_with("application/json"));
    let params = if json {
        json_params(&received.body)
    } else {
        received.form()
    };
    Arrival {
        endpoint: endpoint.map_or_else(|| received.path.clone(), |e| e.name.to_string()),
        format: if json { "json" } else { "form" },
        event_type: event_type_header
            .parse()
            .map_err(|_| event_type_header.to_string()),
        params,
        signature: verify(received, endpoint.map(|e| e.secret.as_str())),
    }
}

fn verify(received: &Received, secret: Option<&str>) -> Signature {
    let Some(header) = received.header("webhook-signature") else {
        return Signature::Missing;
    };
    let (Some(secret), Some(id), Some(timestamp)) = (
        secret,
        received.header("webhook-id"),
        received.header("webhook-timestamp"),
    ) else {
        return Signature::Invalid;
    };
    let key = match secret.strip_prefix("whsec_") {
        Some(b64) => match base64::engine::general_purpose::STANDARD.decode(b64) {
            Ok(key) => key,
            Err(_) => return Signature::Invalid,
        },
        None => secret.as_bytes().to_vec(),
    };
    // The header may carry several space-separated signatures (during key rotation): any one
    // valid `v1` signature is enough.
    let valid = header.split(' ').any(|candidate| {
        let Some(sig) = candidate
            .strip_prefix("v1,")
            .and_then(|b64| base64::engine::general_purpose::STANDARD.decode(b64).ok())
        else {
            return false;
        };
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&key) else {
            return false;
        };
        mac.update(format!("{id}.{timestamp}.").as_bytes());
        mac.update(&received.body);
        mac.verify_slice(&sig).is_ok()
    });
    if valid {
        Signature::Verified
    } else {
        Signature::Invalid
    }
}

/// `data` of a JSON body, keys in the order sent (serde_json's map would sort them), numbers and
/// strings as their text. An unreadable body gives no parameters: the line then shows none.
fn json_params(body: &[u8]) -> Vec<(String, String)> {
    #[derive(Deserialize)]
    struct Body {
        data: Ordered,
    }
    serde_json::from_slice::<Body>(body)
        .map(|b| b.data.0)
        .unwrap_or_default()
}

struct Ordered(Vec<(String, String)>);

impl<'de> Deserialize<'de> for Ordered {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Ordered;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Ordered, A::Error> {
                let mut pairs = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, serde_json::Value>()? {
                    let text = match v {
                        serde_json::Value::String(s) => s,
                        other => other.to_string(),
                    };
                    pairs.push((k, text));
                }
                Ok(Ordered(pairs))
            }
        }
        d.deserialize_map(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::SigningKey;
    use std::time::Instant;

    fn request(path: &str, content_type: &str, body: &str, secret: &str) -> Received {
        let key = SigningKey::parse(secret).unwrap();
        let sig = key.sign("evt_1", 1700000000, body.as_bytes());
        Received {
            at: Instant::now(),
            method: "POST".into(),
            path: path.into(),
            headers: vec![
                ("content-type".into(), content_type.into()),
                ("webhook-id".into(), "evt_1".into()),
                ("webhook-timestamp".into(), "1700000000".into()),
                (
                    "webhook-event-type".into(),
                    "learning_plan.completed".into(),
                ),
                ("webhook-signature".into(), sig),
            ],
            body: body.as_bytes().to_vec(),
            connection: 0,
        }
    }

    #[test]
    fn json_params_keep_their_order_and_signatures_verify() {
        let endpoints = crate::demo::endpoints::demo_endpoints();
        let body = r#"{"type":"learning_plan.completed","timestamp":"2025-01-01T00:00:00Z","data":{"user_id":3,"learning_plan_id":2}}"#;
        let r = request("/lms", "application/json", body, &endpoints[1].secret);
        let a = parse(&r, &endpoints);
        assert_eq!(a.endpoint, "lms");
        assert_eq!(a.event_type, Ok(EventType::LearningPlanCompleted));
        assert_eq!(
            a.params,
            vec![
                ("user_id".to_string(), "3".to_string()),
                ("learning_plan_id".to_string(), "2".to_string())
            ]
        );
        assert_eq!(a.signature, Signature::Verified);
    }

    #[test]
    fn a_whsec_signature_verifies_and_a_tampered_body_does_not() {
        let endpoints = crate::demo::endpoints::demo_endpoints();
        let mut r = request(
            "/hr-system",
            "application/x-www-form-urlencoded",
            "user_id=3",
            &endpoints[0].secret,
        );
        assert_eq!(parse(&r, &endpoints).signature, Signature::Verified);
        r.body = b"user_id=4".to_vec();
        assert_eq!(parse(&r, &endpoints).signature, Signature::Invalid);
    }
}
