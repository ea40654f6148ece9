//! Standard Webhooks signatures: `webhook-signature: v1,<base64 HMAC-SHA256>` over
//! `"{webhook-id}.{webhook-timestamp}.{body}"` (<https://www.standardwebhooks.com/>).
//!
//! A secret written `whsec_<base64>` (the form Standard Webhooks libraries generate and expect)
//! is keyed with the decoded bytes; any other secret with its own bytes, so an operator can paste
//! whatever shared secret the receiver uses.

use std::fmt;

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::{DecodeError, Engine};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

const WHSEC_PREFIX: &str = "whsec_";

/// Receivers' dashboards sometimes show the key without its `=` padding; accept both.
const SECRET_BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// An endpoint's signing key, ready to sign. `Debug` shows nothing of the key.
#[derive(Clone)]
pub struct SigningKey {
    /// The keyed HMAC state, cloned for each signature.
    mac: Hmac<Sha256>,
}

/// Why a secret cannot be used. Never contains any part of the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigningKeyError {
    #[error("the secret is empty; set the secret the receiver verifies with, or remove the key to send unsigned requests")]
    Empty,
    #[error("the secret starts with `whsec_` but the rest is not valid base64 ({problem}); write `whsec_` followed by the base64 key the receiver gave you, or a secret without the `whsec_` prefix to sign with its text as is")]
    BadBase64 { problem: String },
}

impl SigningKey {
    /// Parses a secret as written in the configuration.
    pub fn parse(secret: &str) -> Result<SigningKey, SigningKeyError> {
        let key = match secret.strip_prefix(WHSEC_PREFIX) {
            Some(encoded) => {
                SECRET_BASE64
                    .decode(encoded)
                    .map_err(|e| SigningKeyError::BadBase64 {
                        problem: describe(&e),
                    })?
            }
            None => secret.as_bytes().to_vec(),
        };
        if key.is_empty() {
            return Err(SigningKeyError::Empty);
        }
        // HMAC takes keys of any length; the error case is unreachable but costs nothing.
        let mac = Hmac::<Sha256>::new_from_slice(&key).map_err(|_| SigningKeyError::Empty)?;
        Ok(SigningKey { mac })
    }

    /// The `webhook-signature` header value for one request.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut mac = self.mac.clone();
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningKey(***)")
    }
}

/// `DecodeError`'s own text quotes the offending byte, which is part of the secret: say only
/// where the problem is.
fn describe(e: &DecodeError) -> String {
    match e {
        DecodeError::InvalidByte(offset, _) => {
            format!(
                "invalid character at position {}",
                offset + WHSEC_PREFIX.len() + 1
            )
        }
        DecodeError::InvalidLength(_) => "wrong number of characters".to_owned(),
        DecodeError::InvalidLastSymbol { offset, .. } => format!(
            "invalid last character at position {}",
            offset + WHSEC_PREFIX.len() + 1
        ),
        DecodeError::InvalidPadding => "bad `=` padding".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The signing test vector of the Standard Webhooks reference libraries
    /// (standard-webhooks/standard-webhooks, libraries/go/webhook_test.go, `TestWebhookSign`),
    /// also checked with Python's `hmac`.
    #[test]
    fn standard_webhooks_test_vector() {
        let key = SigningKey::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert_eq!(
            key.sign(
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1614265330,
                br#"{"test": 2432232314}"#
            ),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn raw_secret_is_its_bytes() {
        // Python: base64(hmac.new(b"my raw secret", b"evt_…_7.1700000000.user_id=42", sha256))
        let key = SigningKey::parse("my raw secret").unwrap();
        assert_eq!(
            key.sign("evt_0000000001a3f2b8_7", 1_700_000_000, b"user_id=42"),
            "v1,64cirnhSzHvg6UvffHCstwUhN3jRrbE8VReIFdLhg54="
        );
        // Without the prefix, a base64-looking secret is not decoded.
        let raw = SigningKey::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert_ne!(
            raw.sign(
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1614265330,
                br#"{"test": 2432232314}"#
            ),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn unpadded_base64_is_accepted() {
        // "a2V5" is "key"; "a2V5MQ" is "key1" without its "==".
        let padded = SigningKey::parse("whsec_a2V5MQ==").unwrap();
        let unpadded = SigningKey::parse("whsec_a2V5MQ").unwrap();
        let raw = SigningKey::parse("key1").unwrap();
        assert_eq!(padded.sign("i", 1, b"b"), raw.sign("i", 1, b"b"));
        assert_eq!(unpadded.sign("i", 1, b"b"), raw.sign("i", 1, b"b"));
    }

    #[test]
    fn bad_secrets_say_how_to_fix_without_echoing() {
        let err = SigningKey::parse("whsec_abc!defg").unwrap_err();
        assert_eq!(
            err,
            SigningKeyError::BadBase64 {
                problem: "invalid character at position 10".into()
            }
        );
        let text = err.to_string();
        assert!(
            text.contains("write `whsec_` followed by the base64 key"),
            "{text}"
        );
        assert!(!text.contains("abc"), "{text}");
        assert_eq!(SigningKey::parse("").unwrap_err(), SigningKeyError::Empty);
        assert_eq!(
            SigningKey::parse("whsec_").unwrap_err(),
            SigningKeyError::Empty
        );
    }

    #[test]
    fn debug_hides_the_key() {
        let key = SigningKey::parse("hunter2").unwrap();
        assert_eq!(format!("{key:?}"), "SigningKey(***)");
    }
}
