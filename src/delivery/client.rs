//! One HTTP client per endpoint, and one attempt at sending an event to it.
//!
//! Each endpoint gets its own `reqwest::Client` so its connections are reused across events
//! (keep-alive, a pool as large as its concurrency), its timeout applies to each whole request
//! (connect, send, response and body), and one slow receiver cannot hold another's connections.
//! TLS is rustls with the ring provider and the system's CA certificates, as on the Postgres
//! side. Proxies come from the usual `HTTPS_PROXY` / `HTTP_PROXY` / `NO_PROXY` variables.

use std::error::Error as _;
use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reqwest::header::{CONTENT_TYPE, LOCATION, RETRY_AFTER};
use reqwest::redirect::Policy;
use rustls::{ClientConfig, RootCertStore};

use super::error::DeliveryError;
use super::outcome::{classify, Attempt, AttemptReport, ResponseSummary, SNIPPET_BYTES};
use super::payload;
use super::signing::SigningKey;
use crate::config::{EndpointConfig, PayloadFormat};
use crate::event::{Event, EventId};

const USER_AGENT: &str = concat!("fuse-cdc-bridge/", env!("CARGO_PKG_VERSION"));

/// Response bodies are read to the end (so the connection can be reused) up to this size;
/// beyond it the connection is dropped rather than download a receiver's error page forever.
const DRAIN_LIMIT: usize = 64 * 1024;
/// Of the body, this much is kept for the error snippet: enough for [`SNIPPET_BYTES`] of text
/// after trimming, and to know that there was more.
const KEEP_BYTES: usize = 4 * SNIPPET_BYTES;
/// Transport error descriptions are cut to this, like body snippets.
const ERROR_BYTES: usize = 300;

/// Sends events to one endpoint. Cheap to share (`Arc`) between the dispatcher's tasks: every
/// method takes `&self`.
pub struct EndpointClient {
    name: String,
    url: url::Url,
    format: PayloadFormat,
    key: Option<SigningKey>,
    timeout: Duration,
    http: reqwest::Client,
}

impl fmt::Debug for EndpointClient {
    /// The url may carry credentials and the key is secret: show neither.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EndpointClient")
            .field("name", &self.name)
            .field("format", &self.format)
            .field("signed", &self.key.is_some())
            .finish_non_exhaustive()
    }
}

impl EndpointClient {
    pub fn new(config: &EndpointConfig) -> Result<EndpointClient, DeliveryError> {
        let endpoint = config.name.clone();
        let key = match &config.secret {
            Some(secret) => Some(SigningKey::parse(secret.expose()).map_err(|source| {
                DeliveryError::Secret {
                    endpoint: endpoint.clone(),
                    source,
                }
            })?),
            None => None,
        };
        let http = client_builder(&endpoint, config.url.scheme() == "https")?
            .timeout(config.timeout)
            .pool_max_idle_per_host(config.concurrency)
            .build()
            .map_err(|e| DeliveryError::Client {
                endpoint: endpoint.clone(),
                detail: describe_chain(&e),
            })?;
        Ok(EndpointClient {
            name: endpoint,
            url: config.url.clone(),
            format: config.format,
            key,
            timeout: config.timeout,
            http,
        })
    }

    /// The endpoint's name, for logs.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// One attempt to deliver `event`: builds the body, signs it with this attempt's timestamp,
    /// POSTs it and classifies the outcome. Never fails: every problem is an [`Attempt`].
    pub async fn send(&self, id: &EventId, event: &Event) -> AttemptReport {
        let started = Instant::now();
        let attempt = self.attempt(id, event).await;
        AttemptReport {
            attempt,
            latency: started.elapsed(),
        }
    }

    async fn attempt(&self, id: &EventId, event: &Event) -> Attempt {
        let (body, content_type) = match payload::body(event, self.format) {
            Ok(body) => body,
            Err(e) => {
                return Attempt::Reject {
                    status: None,
                    error: e.to_string(),
                }
            }
        };
        let id = id.to_string();
        let timestamp = unix_now();
        let mut request = self
            .http
            .post(self.url.clone())
            .header(CONTENT_TYPE, content_type)
            .header("webhook-id", id.as_str())
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-event-type", event.event_type.as_str());
        if let Some(key) = &self.key {
            request = request.header("webhook-signature", key.sign(&id, timestamp, &body));
        }
        let response = match request.body(body).send().await {
            Ok(response) => response,
            Err(e) => return self.transport_failure(&e),
        };
        let status = response.status().as_u16();
        let retry_after = header_text(&response, RETRY_AFTER);
        let location = header_text(&response, LOCATION);
        let body = read_body(response, self.timeout).await;
        let summary = ResponseSummary {
            status,
            retry_after: retry_after.as_deref(),
            location: location.as_deref(),
            body_start: &body.start,
            body_truncated: body.truncated,
            body_error: body.error,
        };
        classify(&summary, SystemTime::now())
    }

    /// No response: a timeout or a connection problem is worth retrying; a request that could
    /// not even be built (a header reqwest refuses) will not get better.
    fn transport_failure(&self, e: &reqwest::Error) -> Attempt {
        if e.is_builder() {
            return Attempt::Reject {
                status: None,
                error: format!("cannot build the request: {}", describe_chain(e)),
            };
        }
        let error = if e.is_timeout() {
            format!(
                "no response within {:?} (the endpoint's timeout)",
                self.timeout
            )
        } else if e.is_connect() {
            format!("cannot connect: {}", describe_chain(e))
        } else {
            format!("request failed: {}", describe_chain(e))
        };
        Attempt::Retry {
            status: None,
            error,
            retry_after: None,
        }
    }
}

/// A reqwest client builder as every HTTP client of ours needs it (`name` is for errors; `https`
/// whether it must verify servers with the system's CA certificates).
pub(crate) fn client_builder(
    name: &str,
    https: bool,
) -> Result<reqwest::ClientBuilder, DeliveryError> {
    let tls = tls_config(name, https)?;
    Ok(reqwest::Client::builder()
        .user_agent(USER_AGENT)
        // A receiver that redirects is misconfigured, and POST semantics across redirects are
        // murky (301/302 turn into GET in many clients): report it, don't follow it.
        .redirect(Policy::none())
        // Always preconfigured: without it reqwest would look for a process-wide rustls
        // provider and panic when there is none.
        .tls_backend_preconfigured(tls))
}

/// The start of a response body, and whether reading it failed.
struct Body {
    start: Vec<u8>,
    truncated: bool,
    error: Option<String>,
}

async fn read_body(mut response: reqwest::Response, timeout: Duration) -> Body {
    let mut body = Body {
        start: Vec::new(),
        truncated: false,
        error: None,
    };
    let mut total = 0usize;
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                total += chunk.len();
                let room = KEEP_BYTES.saturating_sub(body.start.len());
                body.start
                    .extend_from_slice(&chunk[..room.min(chunk.len())]);
                body.truncated |= chunk.len() > room;
                if total > DRAIN_LIMIT {
                    break;
                }
            }
            Ok(None) => break,
            Err(e) if e.is_timeout() => {
                body.error = Some(format!(
                    "no complete response within {timeout:?} (the endpoint's timeout)"
                ));
                break;
            }
            Err(e) => {
                body.error = Some(describe_chain(&e));
                break;
            }
        }
    }
    body
}

fn header_text(response: &reqwest::Response, name: reqwest::header::HeaderName) -> Option<String> {
    let value = response.headers().get(name)?;
    Some(String::from_utf8_lossy(value.as_bytes()).into_owned())
}

/// The causes of a reqwest error, outermost first, without reqwest's own outer text (which
/// quotes the url, and urls can carry credentials).
pub(crate) fn describe_chain(e: &reqwest::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        // hyper and hyper-util often repeat their cause's text in their own.
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        cause = c.source();
    }
    if parts.is_empty() {
        parts.push(kind(e).to_owned());
    }
    let text = parts.join(": ");
    if text.len() <= ERROR_BYTES {
        return text;
    }
    let mut cut = ERROR_BYTES;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}…", &text[..cut])
}

fn kind(e: &reqwest::Error) -> &'static str {
    if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_body() || e.is_decode() {
        "bad response body"
    } else {
        "request error"
    }
}

/// This attempt's `webhook-timestamp`. A clock before 1970 is broken; 0 will make the receiver
/// reject the signature as stale, which is the honest outcome.
fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The system's CA certificates, loaded once per process.
fn system_roots() -> &'static (Arc<RootCertStore>, Option<String>) {
    static ROOTS: OnceLock<(Arc<RootCertStore>, Option<String>)> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let found = rustls_native_certs::load_native_certs();
        let mut store = RootCertStore::empty();
        let (added, _ignored) = store.add_parsable_certificates(found.certs);
        let problem = (added == 0).then(|| match found.errors.first() {
            Some(e) => e.to_string(),
            None => "none found".to_owned(),
        });
        (Arc::new(store), problem)
    })
}

/// rustls with ring. An `http` endpoint never uses it, so missing CA certificates only matter
/// for `https`.
fn tls_config(endpoint: &str, https: bool) -> Result<ClientConfig, DeliveryError> {
    let (roots, problem) = system_roots();
    if let (true, Some(detail)) = (https, problem) {
        return Err(DeliveryError::NoRootCertificates {
            endpoint: endpoint.to_owned(),
            detail: detail.clone(),
        });
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| DeliveryError::Tls {
            endpoint: endpoint.to_owned(),
            detail: e.to_string(),
        })?
        .with_root_certificates(Arc::clone(roots))
        .with_no_client_auth();
    Ok(config)
}
