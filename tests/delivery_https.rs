//! `EndpointClient` against a real HTTPS receiver on loopback (tokio-rustls + hyper): a request
//! arrives intact through TLS and the connection is reused; a certificate for another name or
//! from an unknown CA is refused before any request is sent.
//!
//! The client trusts the system's CA certificates, loaded once per process from wherever
//! rustls-native-certs looks: `SSL_CERT_FILE` names a PEM file of them. So this file is its own
//! test binary, and every test first calls [`trust_test_ca`], which (once, before any client is
//! built) writes the test CA to a file and points `SSL_CERT_FILE` at it. Tests in this binary
//! share that one CA; a test that needs an untrusted one makes another.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Once, OnceLock};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rustls::ServerConfig;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use fuse_cdc_bridge::config::PayloadFormat;
use fuse_cdc_bridge::delivery::{Attempt, EndpointClient};

mod support;

use support::webhooks::*;
use support::Ca;

/// The CA every client in this process trusts (and only it).
fn test_ca() -> &'static Ca {
    static CA: OnceLock<Ca> = OnceLock::new();
    CA.get_or_init(|| Ca::new("fuse-cdc-bridge https test CA"))
}

/// Makes the test CA the only one the client trusts, and keeps proxies out of the way so
/// requests go through the direct client. Must run before the first `EndpointClient::new`.
fn trust_test_ca() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        let dir: PathBuf = tempfile::tempdir().unwrap().keep();
        let file = test_ca().write(&dir);
        // Every test calls this first, so no other thread of ours reads the environment yet.
        std::env::set_var("SSL_CERT_FILE", &file);
        // rustls-native-certs would add every certificate of these directories too.
        std::env::remove_var("SSL_CERT_DIR");
        for proxy in [
            "ALL_PROXY",
            "all_proxy",
            "HTTPS_PROXY",
            "https_proxy",
            "HTTP_PROXY",
            "http_proxy",
        ] {
            std::env::remove_var(proxy);
        }
    });
}

/// An HTTPS receiver on 127.0.0.1 that answers every request with `status`.
struct Receiver {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<Recorded>>>,
    /// TCP connections accepted.
    connections: Arc<AtomicUsize>,
    /// TLS handshakes completed.
    handshakes: Arc<AtomicUsize>,
    /// Why handshakes failed, as the server saw it.
    handshake_errors: Arc<Mutex<Vec<String>>>,
}

impl Receiver {
    /// `cert` is `(certificate PEM, key PEM)`, as [`Ca::server_cert`] makes them.
    async fn start(cert: (String, String), status: u16) -> Receiver {
        let acceptor = TlsAcceptor::from(Arc::new(server_config(&cert)));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let handshakes = Arc::new(AtomicUsize::new(0));
        let handshake_errors = Arc::new(Mutex::new(Vec::new()));
        let (recorded, accepted, shaken, failed) = (
            requests.clone(),
            connections.clone(),
            handshakes.clone(),
            handshake_errors.clone(),
        );
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                accepted.fetch_add(1, Ordering::SeqCst);
                let (acceptor, recorded, shaken, failed) = (
                    acceptor.clone(),
                    recorded.clone(),
                    shaken.clone(),
                    failed.clone(),
                );
                tokio::spawn(async move {
                    let tls = match acceptor.accept(stream).await {
                        Ok(tls) => tls,
                        Err(e) => {
                            failed.lock().unwrap().push(e.to_string());
                            return;
                        }
                    };
                    shaken.fetch_add(1, Ordering::SeqCst);
                    let service = service_fn(move |req| {
                        let recorded = recorded.clone();
                        async move {
                            let request = record(req).await;
                            recorded.lock().unwrap().push(request);
                            Ok::<_, Infallible>(
                                Response::builder()
                                    .status(status)
                                    .body(Full::new(Bytes::from_static(b"ok")))
                                    .unwrap(),
                            )
                        }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        Receiver {
            addr,
            requests,
            connections,
            handshakes,
            handshake_errors,
        }
    }

    /// `https://{host}:{port}{path}`.
    fn url(&self, host: &str, path: &str) -> url::Url {
        url::Url::parse(&format!("https://{host}:{}{path}", self.addr.port())).unwrap()
    }

    fn take(&self) -> Vec<Recorded> {
        std::mem::take(&mut *self.requests.lock().unwrap())
    }

    /// Waits (briefly) for the server side of failed handshakes to be recorded: the client may
    /// report its failure before the server has read the alert.
    async fn handshake_errors(&self, count: usize) -> Vec<String> {
        for _ in 0..100 {
            if self.handshake_errors.lock().unwrap().len() >= count {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.handshake_errors.lock().unwrap().clone()
    }
}

fn server_config((cert, key): &(String, String)) -> ServerConfig {
    let certs = rustls_pemfile::certs(&mut cert.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = rustls_pemfile::private_key(&mut key.as_bytes())
        .unwrap()
        .unwrap();
    ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap()
}

async fn record(req: Request<Incoming>) -> Recorded {
    let (parts, body) = req.into_parts();
    Recorded {
        method: parts.method.to_string(),
        path: parts.uri.to_string(),
        headers: parts.headers,
        body: body.collect().await.unwrap().to_bytes(),
    }
}

const JSON_BODY: &str = r#"{"type":"event_attendance.updated","timestamp":"2024-05-06T07:08:09.123456Z","data":{"user_id":42,"event_id":7,"occurrence_id":9,"status":"not attended & gone"}}"#;

#[tokio::test]
async fn signed_form_event_over_https_reuses_the_connection() {
    trust_test_ca();
    let receiver = Receiver::start(test_ca().server_cert(&["127.0.0.1"]), 200).await;
    let config = endpoint(
        receiver.url("127.0.0.1", "/hooks/fuse?tenant=a"),
        PayloadFormat::Form,
        Some(SECRET),
    );
    let client = EndpointClient::new(&config).unwrap();

    let before = unix_now();
    let report = client.send(&id(7), &attendance()).await;
    let after = unix_now();
    assert_eq!(report.attempt, Attempt::Delivered { status: 200 });

    let requests = receiver.take();
    assert_eq!(requests.len(), 1);
    let r = &requests[0];
    assert_signed_form_request(r, before, after);
    // What reqwest sends too, and no credentials: the same request over either client.
    assert_eq!(header(r, "accept"), "*/*");
    assert_eq!(
        header(r, "host"),
        format!("127.0.0.1:{}", receiver.addr.port())
    );
    assert!(r.headers.get("authorization").is_none());

    // The second event goes over the same TLS connection: one TCP accept, one handshake.
    let report = client.send(&id(8), &attendance()).await;
    assert_eq!(report.attempt, Attempt::Delivered { status: 200 });
    let requests = receiver.take();
    assert_eq!(requests.len(), 1);
    assert_eq!(header(&requests[0], "webhook-id"), "evt_0000000001a3f2b8_8");
    assert_eq!(receiver.connections.load(Ordering::SeqCst), 1);
    assert_eq!(receiver.handshakes.load(Ordering::SeqCst), 1);
    assert!(receiver.handshake_errors.lock().unwrap().is_empty());
}

#[tokio::test]
async fn json_event_over_https_to_a_dns_name() {
    trust_test_ca();
    // A name, not an address: the certificate is checked against the DNS name (and SNI sent).
    let receiver = Receiver::start(test_ca().server_cert(&["localhost"]), 202).await;
    let config = endpoint(
        receiver.url("localhost", "/json"),
        PayloadFormat::Json,
        None,
    );
    let client = EndpointClient::new(&config).unwrap();

    let report = client.send(&id(0), &attendance()).await;
    assert_eq!(report.attempt, Attempt::Delivered { status: 202 });

    let requests = receiver.take();
    assert_eq!(requests.len(), 1);
    let r = &requests[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "/json");
    assert_eq!(std::str::from_utf8(&r.body).unwrap(), JSON_BODY);
    assert_eq!(header(r, "content-type"), "application/json");
    assert_eq!(header(r, "content-length"), JSON_BODY.len().to_string());
    assert_eq!(header(r, "webhook-id"), "evt_0000000001a3f2b8_0");
    assert_eq!(header(r, "webhook-event-type"), "event_attendance.updated");
    assert_eq!(
        header(r, "user-agent"),
        format!("fuse-cdc-bridge/{}", env!("CARGO_PKG_VERSION"))
    );
    assert!(r.headers.get("webhook-signature").is_none());
    assert_eq!(receiver.handshakes.load(Ordering::SeqCst), 1);
}

/// The attempt is a retryable transport failure with no status, and its error; panics
/// otherwise.
fn transport_error(attempt: &Attempt) -> &str {
    match attempt {
        Attempt::Retry {
            status: None,
            error,
            retry_after: None,
        } => error,
        other => panic!("not a transport failure: {other:?}"),
    }
}

#[tokio::test]
async fn certificate_for_another_name_is_refused() {
    trust_test_ca();
    // Signed by the trusted CA, but for another name than the url's.
    let receiver = Receiver::start(test_ca().server_cert(&["example.invalid"]), 200).await;

    let by_address = EndpointClient::new(&endpoint(
        receiver.url("127.0.0.1", "/"),
        PayloadFormat::Form,
        Some(SECRET),
    ))
    .unwrap();
    let attempt = by_address.send(&id(1), &attendance()).await.attempt;
    assert_eq!(
        transport_error(&attempt),
        "cannot connect: client error (Connect): invalid peer certificate: certificate not \
         valid for name \"127.0.0.1\"; certificate is only valid for DnsName(\"example.invalid\")"
    );

    let by_name = EndpointClient::new(&endpoint(
        receiver.url("localhost", "/"),
        PayloadFormat::Form,
        Some(SECRET),
    ))
    .unwrap();
    let attempt = by_name.send(&id(2), &attendance()).await.attempt;
    assert_eq!(
        transport_error(&attempt),
        "cannot connect: client error (Connect): invalid peer certificate: certificate not \
         valid for name \"localhost\"; certificate is only valid for DnsName(\"example.invalid\")"
    );

    // Nothing was sent: both handshakes failed, on the client's alert.
    assert_eq!(receiver.take().len(), 0);
    assert_eq!(receiver.handshakes.load(Ordering::SeqCst), 0);
    assert_eq!(
        receiver.handshake_errors(2).await,
        vec!["received fatal alert: BadCertificate"; 2]
    );
}

#[tokio::test]
async fn certificate_from_an_unknown_ca_is_refused() {
    trust_test_ca();
    let stranger = Ca::new("some other CA");
    let receiver = Receiver::start(stranger.server_cert(&["127.0.0.1", "localhost"]), 200).await;
    let client = EndpointClient::new(&endpoint(
        receiver.url("127.0.0.1", "/"),
        PayloadFormat::Json,
        Some(SECRET),
    ))
    .unwrap();

    let attempt = client.send(&id(1), &attendance()).await.attempt;
    assert_eq!(
        transport_error(&attempt),
        "cannot connect: client error (Connect): invalid peer certificate: UnknownIssuer"
    );
    // A second attempt does not get through either (no pooled connection to slip through).
    let attempt = client.send(&id(2), &attendance()).await.attempt;
    assert_eq!(
        transport_error(&attempt),
        "cannot connect: client error (Connect): invalid peer certificate: UnknownIssuer"
    );
    assert_eq!(receiver.take().len(), 0);
    assert_eq!(receiver.handshakes.load(Ordering::SeqCst), 0);
    assert_eq!(receiver.connections.load(Ordering::SeqCst), 2);
    assert_eq!(
        receiver.handshake_errors(2).await,
        vec!["received fatal alert: UnknownCA"; 2]
    );
}

/// A url with credentials goes through reqwest (basic auth): it trusts the same CA, refuses
/// the same certificates, and reports them in the same words as the direct client.
#[tokio::test]
async fn url_with_credentials_goes_through_reqwest_with_the_same_trust() {
    trust_test_ca();
    let receiver = Receiver::start(test_ca().server_cert(&["127.0.0.1"]), 200).await;
    let mut url = receiver.url("127.0.0.1", "/auth");
    url.set_username("hook").unwrap();
    url.set_password(Some("s3cret")).unwrap();
    let client = EndpointClient::new(&endpoint(url, PayloadFormat::Form, Some(SECRET))).unwrap();
    let report = client.send(&id(3), &attendance()).await;
    assert_eq!(report.attempt, Attempt::Delivered { status: 200 });
    let requests = receiver.take();
    assert_eq!(requests.len(), 1);
    let r = &requests[0];
    assert_eq!(r.path, "/auth");
    assert_eq!(std::str::from_utf8(&r.body).unwrap(), FORM_BODY);
    assert_eq!(
        header(r, "authorization"),
        format!("Basic {}", STANDARD.encode("hook:s3cret"))
    );
    assert_eq!(
        header(r, "content-type"),
        "application/x-www-form-urlencoded"
    );
    assert_eq!(header(r, "webhook-id"), "evt_0000000001a3f2b8_3");
    assert_eq!(header(r, "webhook-event-type"), "event_attendance.updated");
    assert_eq!(
        header(r, "user-agent"),
        format!("fuse-cdc-bridge/{}", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(
        header(r, "webhook-signature"),
        expected_signature(
            SECRET,
            "evt_0000000001a3f2b8_3",
            header(r, "webhook-timestamp"),
            &r.body
        )
    );

    let wrong_name = Receiver::start(test_ca().server_cert(&["example.invalid"]), 200).await;
    let mut url = wrong_name.url("127.0.0.1", "/auth");
    url.set_username("hook").unwrap();
    url.set_password(Some("s3cret")).unwrap();
    let client = EndpointClient::new(&endpoint(url, PayloadFormat::Form, None)).unwrap();
    let attempt = client.send(&id(4), &attendance()).await.attempt;
    let error = transport_error(&attempt);
    assert_eq!(
        error,
        "cannot connect: client error (Connect): invalid peer certificate: certificate not \
         valid for name \"127.0.0.1\"; certificate is only valid for DnsName(\"example.invalid\")"
    );
    assert!(!error.contains("s3cret"), "{error}");
    assert_eq!(wrong_name.take().len(), 0);
}
