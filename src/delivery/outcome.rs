//! What one attempt came to, and the pure rules that decide it from the response: any 2xx is
//! delivered; 408, 429 and 5xx are worth retrying (honouring `Retry-After`); anything else is a
//! definite no and goes to dead letters.

use std::time::{Duration, SystemTime};

use reqwest::StatusCode;

/// Bytes of a response body quoted in an error, so the operator sees what the receiver said.
pub const SNIPPET_BYTES: usize = 200;

/// The result of one POST of one event to one endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// The receiver answered 2xx with a complete response.
    Delivered { status: u16 },
    /// Worth trying again later: a timeout, a connection problem, 408, 429 or 5xx.
    /// `retry_after` is what the server asked for in `Retry-After`; pass it to
    /// [`backoff_delay`](super::retry::backoff_delay).
    Retry {
        status: Option<u16>,
        error: String,
        retry_after: Option<Duration>,
    },
    /// Trying again will not help (another 4xx, a redirect, an event that cannot be encoded):
    /// dead-letter it with `error` as the reason.
    Reject { status: Option<u16>, error: String },
}

/// An attempt and how long it took, from just before the request to the end of the response
/// (or the failure).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptReport {
    pub attempt: Attempt,
    pub latency: Duration,
}

/// What the response told us, for [`classify`].
#[derive(Debug, Clone, Default)]
pub struct ResponseSummary<'a> {
    pub status: u16,
    pub retry_after: Option<&'a str>,
    pub location: Option<&'a str>,
    /// The first bytes of the body (at least [`SNIPPET_BYTES`] when there were that many).
    pub body_start: &'a [u8],
    /// Whether the body was longer than `body_start`.
    pub body_truncated: bool,
    /// Reading the body failed with this error (already free of URLs and secrets).
    pub body_error: Option<String>,
}

/// Classifies a response that arrived (status line and headers were received).
pub fn classify(response: &ResponseSummary<'_>, now: SystemTime) -> Attempt {
    let status = response.status;
    if (200..300).contains(&status) {
        return match &response.body_error {
            // The status says yes but the response broke off: a proxy or the receiver failed
            // half-way, so we cannot be sure the receiver committed. Resending is safe since
            // receivers deduplicate on webhook-id.
            Some(err) => Attempt::Retry {
                status: Some(status),
                error: format!(
                    "{} but the response was cut off: {err}",
                    status_text(status)
                ),
                retry_after: None,
            },
            None => Attempt::Delivered { status },
        };
    }
    let mut error = status_text(status);
    if (300..400).contains(&status) {
        // Redirects are not followed: a webhook URL that redirects is misconfigured (the
        // operator should configure the final URL), and POST across 301/302 is rewritten to GET
        // by many clients, so "following" would not deliver the body anyway.
        error.push_str(": redirects are not followed; set the endpoint url to the final location");
        if let Some(location) = response.location {
            error.push_str(" (Location: ");
            error.push_str(&snippet(location.as_bytes(), false));
            error.push(')');
        }
    }
    let quoted = snippet(response.body_start, response.body_truncated);
    if !quoted.is_empty() {
        error.push_str(": ");
        error.push_str(&quoted);
    }
    if is_retryable(status) {
        Attempt::Retry {
            status: Some(status),
            error,
            retry_after: response.retry_after.and_then(|v| parse_retry_after(v, now)),
        }
    } else {
        Attempt::Reject {
            status: Some(status),
            error,
        }
    }
}

/// 408 Request Timeout, 429 Too Many Requests and server errors say "not now", not "no".
pub fn is_retryable(status: u16) -> bool {
    status == 408 || status == 429 || (500..600).contains(&status)
}

/// `Retry-After` as delta-seconds or an HTTP date; a date in the past means "now". `None` when
/// the value is neither.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Too many digits for u64 is still a (very long) number; the backoff caps it.
        return Some(Duration::from_secs(value.parse().unwrap_or(u64::MAX)));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or_default())
}

/// `HTTP 503 Service Unavailable`.
fn status_text(status: u16) -> String {
    let reason = StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason());
    match reason {
        Some(reason) => format!("HTTP {status} {reason}"),
        None => format!("HTTP {status}"),
    }
}

/// At most [`SNIPPET_BYTES`] of `bytes` as one line of text: invalid UTF-8 replaced, control
/// characters (newlines included) turned into spaces, cut on a character boundary, `…` when
/// shortened.
pub fn snippet(bytes: &[u8], truncated: bool) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut out = String::with_capacity(SNIPPET_BYTES + 3);
    let mut cut = truncated;
    for c in text.trim().chars() {
        let c = if c.is_control() { ' ' } else { c };
        if out.len() + c.len_utf8() > SNIPPET_BYTES {
            cut = true;
            break;
        }
        out.push(c);
    }
    if cut {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(status: u16, body: &[u8]) -> ResponseSummary<'_> {
        ResponseSummary {
            status,
            body_start: body,
            ..Default::default()
        }
    }

    fn now() -> SystemTime {
        // Sun, 06 Nov 1994 08:49:37 GMT, the example date of RFC 9110.
        SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777)
    }

    #[test]
    fn two_hundreds_are_delivered() {
        for status in [200, 201, 202, 204, 299] {
            assert_eq!(
                classify(&response(status, b"ok"), now()),
                Attempt::Delivered { status }
            );
        }
    }

    #[test]
    fn cut_off_success_is_retried() {
        let r = ResponseSummary {
            body_error: Some("connection closed before message completed".into()),
            ..response(200, b"par")
        };
        assert_eq!(
            classify(&r, now()),
            Attempt::Retry {
                status: Some(200),
                error: "HTTP 200 OK but the response was cut off: \
                        connection closed before message completed"
                    .into(),
                retry_after: None,
            }
        );
    }

    #[test]
    fn retryable_statuses() {
        for status in [408, 429, 500, 502, 503, 504, 599] {
            assert!(matches!(
                classify(&response(status, b""), now()),
                Attempt::Retry { status: Some(s), retry_after: None, .. } if s == status
            ));
        }
        let r = ResponseSummary {
            retry_after: Some("120"),
            ..response(503, b"maintenance\n")
        };
        assert_eq!(
            classify(&r, now()),
            Attempt::Retry {
                status: Some(503),
                error: "HTTP 503 Service Unavailable: maintenance".into(),
                retry_after: Some(Duration::from_secs(120)),
            }
        );
    }

    #[test]
    fn other_statuses_are_rejected() {
        for status in [400, 401, 403, 404, 409, 410, 422, 100, 600] {
            assert!(matches!(
                classify(&response(status, b""), now()),
                Attempt::Reject { status: Some(s), .. } if s == status
            ));
        }
        assert_eq!(
            classify(&response(422, br#"{"error":"unknown user_id"}"#), now()),
            Attempt::Reject {
                status: Some(422),
                error: r#"HTTP 422 Unprocessable Entity: {"error":"unknown user_id"}"#.into(),
            }
        );
    }

    #[test]
    fn redirects_are_rejected_with_location() {
        let r = ResponseSummary {
            location: Some("https://new.example.com/hooks"),
            ..response(301, b"")
        };
        assert_eq!(
            classify(&r, now()),
            Attempt::Reject {
                status: Some(301),
                error: "HTTP 301 Moved Permanently: redirects are not followed; set the endpoint \
                        url to the final location (Location: https://new.example.com/hooks)"
                    .into(),
            }
        );
    }

    #[test]
    fn retry_after_forms() {
        let now = now();
        assert_eq!(parse_retry_after("2", now), Some(Duration::from_secs(2)));
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("99999999999999999999999", now),
            Some(Duration::from_secs(u64::MAX))
        );
        // IMF-fixdate, RFC 850 and asctime, 60 s after `now`.
        for date in [
            "Sun, 06 Nov 1994 08:50:37 GMT",
            "Sunday, 06-Nov-94 08:50:37 GMT",
            "Sun Nov  6 08:50:37 1994",
        ] {
            assert_eq!(
                parse_retry_after(date, now),
                Some(Duration::from_secs(60)),
                "{date}"
            );
        }
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        for bad in ["", "-1", "1.5", "soon", "2 s"] {
            assert_eq!(parse_retry_after(bad, now), None, "{bad:?}");
        }
    }

    #[test]
    fn snippets_are_short_single_lines() {
        assert_eq!(
            snippet(b"  line one\r\nline two\t \n", false),
            "line one  line two"
        );
        assert_eq!(snippet(b"", false), "");
        assert_eq!(snippet(b"abc", true), "abc…");
        assert_eq!(snippet(b"\xff\xfeok", false), "\u{fffd}\u{fffd}ok");
        let long = "é".repeat(150); // 300 bytes
        let s = snippet(long.as_bytes(), false);
        assert_eq!(s, format!("{}…", "é".repeat(100)));
        assert_eq!(s.len(), SNIPPET_BYTES + '…'.len_utf8());
        let exact = "x".repeat(SNIPPET_BYTES);
        assert_eq!(snippet(exact.as_bytes(), false), exact);
    }
}
