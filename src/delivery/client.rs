//! One HTTP client per endpoint, and one attempt at sending an event to it.
//!
//! Each endpoint gets its own client so its connections are reused across events (keep-alive,
//! a pool as large as its concurrency), its timeout applies to each whole request (connect,
//! send, response and body), and one slow receiver cannot hold another's connections. TLS is
//! rustls with the ring provider and the system's CA certificates, as on the Postgres side.
//! Proxies come from the usual `HTTPS_PROXY` / `HTTP_PROXY` / `NO_PROXY` variables.
//!
//! The client is hyper's pooled HTTP/1 client (`hyper_util`'s legacy client) set up the way
//! reqwest sets it up, used directly: reqwest's per-request layers (redirect and retry
//! policies, url re-parsing, merging default headers into a fresh map, boxed bodies) cost about
//! a quarter of delivery's CPU (BENCHMARKS.md). reqwest itself is still used when a proxy from
//! the environment applies to the url, or the url carries credentials: it implements both.

use std::error::Error as StdError;
use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{
    HeaderMap, HeaderName, HeaderValue, ACCEPT, CONTENT_TYPE, LOCATION, RETRY_AFTER,
    USER_AGENT as USER_AGENT_HEADER,
};
use hyper::{Method, Request, Uri};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::proxy::matcher::Matcher;
use hyper_util::rt::{TokioExecutor, TokioTimer};
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

/// reqwest's defaults for what it sets on every connection and pool; the direct client uses
/// the same so that switching between the two changes nothing on the wire.
const KEEPALIVE: Duration = Duration::from_secs(15);
const KEEPALIVE_RETRIES: u32 = 3;
const TCP_USER_TIMEOUT: Duration = Duration::from_secs(30);
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

type DirectClient = hyper_util::client::legacy::Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// How requests go out.
enum Transport {
    /// hyper's pooled client, to `uri` (the endpoint's url, parsed once).
    Direct { http: DirectClient, uri: Uri },
    /// reqwest: a proxy applies, or the url carries credentials (sent as basic auth).
    Reqwest {
        http: reqwest::Client,
        url: url::Url,
    },
}

/// Header names and values that are the same on every request, built once.
struct Fixed {
    webhook_id: HeaderName,
    webhook_timestamp: HeaderName,
    webhook_event_type: HeaderName,
    webhook_signature: HeaderName,
    user_agent: HeaderValue,
    accept: HeaderValue,
}

impl Fixed {
    fn new() -> Fixed {
        Fixed {
            webhook_id: HeaderName::from_static("webhook-id"),
            webhook_timestamp: HeaderName::from_static("webhook-timestamp"),
            webhook_event_type: HeaderName::from_static("webhook-event-type"),
            webhook_signature: HeaderName::from_static("webhook-signature"),
            user_agent: HeaderValue::from_static(USER_AGENT),
            // reqwest's default, kept so receivers see the same request either way.
            accept: HeaderValue::from_static("*/*"),
        }
    }
}

/// Sends events to one endpoint. Cheap to share (`Arc`) between the dispatcher's tasks: every
/// method takes `&self`.
pub struct EndpointClient {
    name: String,
    format: PayloadFormat,
    key: Option<SigningKey>,
    timeout: Duration,
    transport: Transport,
    fixed: Fixed,
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
        let https = config.url.scheme() == "https";
        let transport = match direct_uri(&config.url) {
            Some(uri) => Transport::Direct {
                http: direct_client(tls_config(&endpoint, https)?, config.concurrency),
                uri,
            },
            None => Transport::Reqwest {
                http: client_builder(&endpoint, https)?
                    .timeout(config.timeout)
                    .pool_max_idle_per_host(config.concurrency)
                    .build()
                    .map_err(|e| DeliveryError::Client {
                        endpoint: endpoint.clone(),
                        detail: describe_chain(&e),
                    })?,
                url: config.url.clone(),
            },
        };
        Ok(EndpointClient {
            name: endpoint,
            format: config.format,
            key,
            timeout: config.timeout,
            transport,
            fixed: Fixed::new(),
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
        let signature = self.key.as_ref().map(|key| key.sign(&id, timestamp, &body));
        let (uri, http) = match &self.transport {
            Transport::Direct { http, uri } => (uri, http),
            Transport::Reqwest { http, url } => {
                let mut request = http
                    .post(url.clone())
                    .header(CONTENT_TYPE, content_type)
                    .header("webhook-id", id.as_str())
                    .header("webhook-timestamp", timestamp.to_string())
                    .header("webhook-event-type", event.event_type.as_str());
                if let Some(signature) = signature {
                    request = request.header("webhook-signature", signature);
                }
                return self.via_reqwest(request.body(body)).await;
            }
        };
        // The whole attempt, body included, has one deadline, as reqwest's timeout.
        let deadline = tokio::time::Instant::now() + self.timeout;
        let mut request = Request::new(Full::new(Bytes::from(body)));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = uri.clone();
        let headers = request.headers_mut();
        // In reqwest's order: the request's own headers, then its defaults.
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        match HeaderValue::try_from(id) {
            Ok(value) => headers.insert(self.fixed.webhook_id.clone(), value),
            Err(e) => return cannot_build(&e),
        };
        headers.insert(
            self.fixed.webhook_timestamp.clone(),
            HeaderValue::from(timestamp),
        );
        headers.insert(
            self.fixed.webhook_event_type.clone(),
            HeaderValue::from_static(event.event_type.as_str()),
        );
        if let Some(signature) = signature {
            match HeaderValue::try_from(signature) {
                Ok(value) => headers.insert(self.fixed.webhook_signature.clone(), value),
                Err(e) => return cannot_build(&e),
            };
        }
        headers.insert(ACCEPT, self.fixed.accept.clone());
        headers.insert(USER_AGENT_HEADER, self.fixed.user_agent.clone());
        let response = match tokio::time::timeout_at(deadline, http.request(request)).await {
            Ok(Ok(response)) => response,
            Ok(Err(e)) => return self.direct_failure(&e),
            Err(_elapsed) => return self.no_response(),
        };
        let status = response.status().as_u16();
        let retry_after = header_text(response.headers(), RETRY_AFTER);
        let location = header_text(response.headers(), LOCATION);
        let body = read_incoming(response.into_body(), deadline, self.timeout).await;
        judge(status, retry_after, location, body)
    }

    async fn via_reqwest(&self, request: reqwest::RequestBuilder) -> Attempt {
        let response = match request.send().await {
            Ok(response) => response,
            Err(e) => return self.transport_failure(&e),
        };
        let status = response.status().as_u16();
        let retry_after = header_text(response.headers(), RETRY_AFTER);
        let location = header_text(response.headers(), LOCATION);
        let body = read_body(response, self.timeout).await;
        judge(status, retry_after, location, body)
    }

    /// [`EndpointClient::transport_failure`] for the direct client, in the same words: reqwest's
    /// errors are this error wrapped, and their descriptions skip the wrapper.
    fn direct_failure(&self, e: &hyper_util::client::legacy::Error) -> Attempt {
        let error = if timed_out(e) {
            return self.no_response();
        } else if e.is_connect() {
            format!(
                "cannot connect: {}",
                describe_causes(Some(e), "connection failed")
            )
        } else {
            format!(
                "request failed: {}",
                describe_causes(Some(e), "request error")
            )
        };
        Attempt::Retry {
            status: None,
            error,
            retry_after: None,
        }
    }

    fn no_response(&self) -> Attempt {
        Attempt::Retry {
            status: None,
            error: format!(
                "no response within {:?} (the endpoint's timeout)",
                self.timeout
            ),
            retry_after: None,
        }
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
            return self.no_response();
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

/// A request that cannot be built (a header value reqwest would refuse too): trying again will
/// not help.
fn cannot_build(e: &dyn StdError) -> Attempt {
    Attempt::Reject {
        status: None,
        error: format!("cannot build the request: {e}"),
    }
}

/// The url as the direct client sends to it, or `None` when reqwest must: a proxy from the
/// environment applies (decided as reqwest decides, with the same matcher), the url carries
/// credentials (reqwest turns them into basic auth), or it is not a plain http(s) url hyper
/// accepts (reqwest then reports why on each attempt).
fn direct_uri(url: &url::Url) -> Option<Uri> {
    if !matches!(url.scheme(), "http" | "https")
        || !url.username().is_empty()
        || url.password().is_some()
    {
        return None;
    }
    let uri: Uri = url.as_str().parse().ok()?;
    if Matcher::from_system().intercept(&uri).is_some() {
        return None;
    }
    Some(uri)
}

/// hyper's pooled client with reqwest's connection settings (see the constants above).
fn direct_client(tls: ClientConfig, concurrency: usize) -> DirectClient {
    let mut http = HttpConnector::new();
    // The https connector around it does TLS; this one must accept https urls.
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_keepalive(Some(KEEPALIVE));
    http.set_keepalive_interval(Some(KEEPALIVE));
    http.set_keepalive_retries(Some(KEEPALIVE_RETRIES));
    http.set_tcp_user_timeout(Some(TCP_USER_TIMEOUT));
    let connector = HttpsConnector::from((http, Arc::new(tls)));
    hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .pool_max_idle_per_host(concurrency)
        .build(connector)
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

/// What a response means for the event, from either client.
fn judge(
    status: u16,
    retry_after: Option<String>,
    location: Option<String>,
    body: Body,
) -> Attempt {
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

/// The start of a response body, and whether reading it failed.
struct Body {
    start: Vec<u8>,
    truncated: bool,
    error: Option<String>,
    /// Bytes read so far, kept or not.
    read: usize,
}

impl Body {
    fn new() -> Body {
        Body {
            start: Vec::new(),
            truncated: false,
            error: None,
            read: 0,
        }
    }

    /// Keeps what fits of `chunk`; false once past [`DRAIN_LIMIT`] (stop reading).
    fn take(&mut self, chunk: &[u8]) -> bool {
        self.read += chunk.len();
        let room = KEEP_BYTES.saturating_sub(self.start.len());
        self.start
            .extend_from_slice(&chunk[..room.min(chunk.len())]);
        self.truncated |= chunk.len() > room;
        self.read <= DRAIN_LIMIT
    }
}

async fn read_body(mut response: reqwest::Response, timeout: Duration) -> Body {
    let mut body = Body::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if !body.take(&chunk) {
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

/// The direct client's [`read_body`]: the same limits and the same words for failures (reqwest
/// reports a broken body as its own "request or response body error" around hyper's).
async fn read_incoming(
    mut incoming: Incoming,
    deadline: tokio::time::Instant,
    timeout: Duration,
) -> Body {
    let mut body = Body::new();
    loop {
        match tokio::time::timeout_at(deadline, incoming.frame()).await {
            Ok(Some(Ok(frame))) => {
                // Trailers carry no body bytes.
                let Ok(chunk) = frame.into_data() else {
                    continue;
                };
                if !body.take(&chunk) {
                    break;
                }
            }
            Ok(None) => break,
            Ok(Some(Err(e))) if !timed_out(&e) => {
                body.error = Some(format!(
                    "request or response body error: {}",
                    describe_causes(Some(&e), "bad response body")
                ));
                break;
            }
            Ok(Some(Err(_))) | Err(_) => {
                body.error = Some(format!(
                    "no complete response within {timeout:?} (the endpoint's timeout)"
                ));
                break;
            }
        }
    }
    body
}

fn header_text(headers: &HeaderMap, name: HeaderName) -> Option<String> {
    let value = headers.get(name)?;
    Some(String::from_utf8_lossy(value.as_bytes()).into_owned())
}

/// Whether `e` or one of its causes is a timeout, as reqwest's `Error::is_timeout` decides.
fn timed_out(e: &(dyn StdError + 'static)) -> bool {
    let mut cause = Some(e);
    while let Some(c) = cause {
        if c.downcast_ref::<hyper::Error>()
            .is_some_and(|h| h.is_timeout())
            || c.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
        {
            return true;
        }
        cause = c.source();
    }
    false
}

/// The causes of a reqwest error, outermost first, without reqwest's own outer text (which
/// quotes the url, and urls can carry credentials).
pub(crate) fn describe_chain(e: &reqwest::Error) -> String {
    describe_causes(e.source(), kind(e))
}

/// `first` and its causes, outermost first, each said once; `fallback` when there are none.
/// Cut to [`ERROR_BYTES`].
fn describe_causes(first: Option<&(dyn StdError + 'static)>, fallback: &str) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cause = first;
    while let Some(c) = cause {
        let text = c.to_string();
        // hyper and hyper-util often repeat their cause's text in their own.
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        cause = c.source();
    }
    if parts.is_empty() {
        parts.push(fallback.to_owned());
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
