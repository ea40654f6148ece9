//! `EndpointClient` against a real HTTP receiver on loopback (hyper): the exact request a
//! receiver sees, how each kind of answer is classified, and connection reuse.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::Bytes;
use hmac::{Hmac, KeyInit, Mac};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use sha2::Sha256;
use tokio::net::TcpListener;

use fuse_cdc_bridge::config::PayloadFormat;
use fuse_cdc_bridge::delivery::{Attempt, DeliveryError, EndpointClient};

mod support;

use support::webhooks::*;

/// What the receiver answers to one request.
#[derive(Clone, Debug)]
enum Reply {
    Status(u16, &'static str),
    WithHeader(u16, &'static str, &'static str),
    /// Answers 200 only after this long.
    Hang(Duration),
    /// Reads the request, then closes the connection without answering.
    Close,
    /// `200` with `Content-Length: 100`, 7 bytes of body, then the connection closes.
    CutOff,
}

struct Receiver {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<Recorded>>>,
    connections: Arc<AtomicUsize>,
}

type Body = BoxBody<Bytes, io::Error>;

impl Receiver {
    /// Starts a receiver on 127.0.0.1 that answers with `script` in order, then 200.
    async fn start(script: Vec<Reply>) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let script = Arc::new(Mutex::new(VecDeque::from(script)));
        let (recorded, accepted) = (requests.clone(), connections.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                accepted.fetch_add(1, Ordering::SeqCst);
                let (recorded, script) = (recorded.clone(), script.clone());
                let service = service_fn(move |req| {
                    let (recorded, script) = (recorded.clone(), script.clone());
                    async move {
                        let request = record(req).await;
                        recorded.lock().unwrap().push(request);
                        let reply = script.lock().unwrap().pop_front();
                        answer(reply.unwrap_or(Reply::Status(200, ""))).await
                    }
                });
                tokio::spawn(async move {
                    // Errors here are the scripted failures.
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Receiver {
            addr,
            requests,
            connections,
        }
    }

    fn url(&self, path: &str) -> url::Url {
        url::Url::parse(&format!("http://{}{path}", self.addr)).unwrap()
    }

    fn take(&self) -> Vec<Recorded> {
        std::mem::take(&mut *self.requests.lock().unwrap())
    }
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

fn full(text: &'static str) -> Body {
    Full::new(Bytes::from_static(text.as_bytes()))
        .map_err(|never: Infallible| match never {})
        .boxed()
}

async fn answer(reply: Reply) -> Result<Response<Body>, io::Error> {
    let response = |status: u16, body: &'static str| {
        Response::builder().status(status).body(full(body)).unwrap()
    };
    match reply {
        Reply::Status(status, body) => Ok(response(status, body)),
        Reply::WithHeader(status, name, value) => {
            let mut r = response(status, "");
            r.headers_mut().insert(name, value.parse().unwrap());
            Ok(r)
        }
        Reply::Hang(d) => {
            tokio::time::sleep(d).await;
            Ok(response(200, ""))
        }
        Reply::Close => Err(io::Error::other("scripted close")),
        Reply::CutOff => {
            // The pause lets hyper flush the head and the first bytes before the failure
            // makes it drop the connection.
            let frames = futures_util::stream::unfold(0, |step| async move {
                match step {
                    0 => Some((Ok(Frame::data(Bytes::from_static(b"partial"))), 1)),
                    1 => {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        Some((Err(io::Error::other("scripted cut-off")), 2))
                    }
                    _ => None,
                }
            });
            let body = StreamBody::new(frames).boxed();
            Ok(Response::builder()
                .status(200)
                .header("content-length", "100")
                .body(body)
                .unwrap())
        }
    }
}

#[tokio::test]
async fn form_request_is_exact_and_signed() {
    let receiver = Receiver::start(vec![]).await;
    let config = endpoint(
        receiver.url("/hooks/fuse?tenant=a"),
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
    assert_signed_form_request(&requests[0], before, after);
}

#[tokio::test]
async fn raw_secret_signs_with_its_bytes() {
    let receiver = Receiver::start(vec![]).await;
    let secret = "plain shared secret";
    let config = endpoint(receiver.url("/"), PayloadFormat::Form, Some(secret));
    let client = EndpointClient::new(&config).unwrap();
    let report = client.send(&id(1), &attendance()).await;
    assert_eq!(report.attempt, Attempt::Delivered { status: 200 });

    let r = &receiver.take()[0];
    let timestamp = header(r, "webhook-timestamp");
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("evt_0000000001a3f2b8_1.{timestamp}.").as_bytes());
    mac.update(&r.body);
    let expected = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
    assert_eq!(header(r, "webhook-signature"), expected);
}

#[tokio::test]
async fn json_request_without_secret() {
    let receiver = Receiver::start(vec![Reply::Status(204, "")]).await;
    let config = endpoint(receiver.url("/json"), PayloadFormat::Json, None);
    let client = EndpointClient::new(&config).unwrap();

    let report = client.send(&id(0), &attendance()).await;
    assert_eq!(report.attempt, Attempt::Delivered { status: 204 });

    let r = &receiver.take()[0];
    assert_eq!(
        std::str::from_utf8(&r.body).unwrap(),
        r#"{"type":"event_attendance.updated","timestamp":"2024-05-06T07:08:09.123456Z","data":{"user_id":42,"event_id":7,"occurrence_id":9,"status":"not attended & gone"}}"#
    );
    assert_eq!(header(r, "content-type"), "application/json");
    assert_eq!(header(r, "webhook-id"), "evt_0000000001a3f2b8_0");
    assert!(r.headers.get("webhook-signature").is_none());
}

#[tokio::test]
async fn answers_are_classified() {
    let receiver = Receiver::start(vec![
        Reply::Status(503, "down for maintenance\n"),
        Reply::WithHeader(429, "retry-after", "2"),
        Reply::WithHeader(503, "retry-after", "Wed, 21 Oct 2015 07:28:00 GMT"),
        Reply::Status(408, ""),
        Reply::Status(400, "unknown user_id"),
        Reply::WithHeader(302, "location", "https://elsewhere.example/hooks"),
        Reply::Status(200, "ok"),
        Reply::Status(204, ""),
    ])
    .await;
    let config = endpoint(receiver.url("/"), PayloadFormat::Form, Some(SECRET));
    let client = EndpointClient::new(&config).unwrap();

    let mut got = Vec::new();
    for n in 0..8 {
        got.push(client.send(&id(n), &attendance()).await.attempt);
    }
    let expected = vec![
        Attempt::Retry {
            status: Some(503),
            error: "HTTP 503 Service Unavailable: down for maintenance".into(),
            retry_after: None,
        },
        Attempt::Retry {
            status: Some(429),
            error: "HTTP 429 Too Many Requests".into(),
            retry_after: Some(Duration::from_secs(2)),
        },
        // A date in the past: retry now (the backoff still applies).
        Attempt::Retry {
            status: Some(503),
            error: "HTTP 503 Service Unavailable".into(),
            retry_after: Some(Duration::ZERO),
        },
        Attempt::Retry {
            status: Some(408),
            error: "HTTP 408 Request Timeout".into(),
            retry_after: None,
        },
        Attempt::Reject {
            status: Some(400),
            error: "HTTP 400 Bad Request: unknown user_id".into(),
        },
        Attempt::Reject {
            status: Some(302),
            error: "HTTP 302 Found: redirects are not followed; set the endpoint url to the \
                    final location (Location: https://elsewhere.example/hooks)"
                .into(),
        },
        Attempt::Delivered { status: 200 },
        Attempt::Delivered { status: 204 },
    ];
    assert_eq!(got, expected);
    // The redirect was not followed: exactly the eight requests above reached the receiver.
    assert_eq!(receiver.take().len(), 8);
}

#[tokio::test]
async fn hang_past_timeout_is_retried() {
    let receiver = Receiver::start(vec![Reply::Hang(Duration::from_secs(10))]).await;
    let mut config = endpoint(receiver.url("/"), PayloadFormat::Form, None);
    config.timeout = Duration::from_millis(300);
    let client = EndpointClient::new(&config).unwrap();

    let report = client.send(&id(1), &attendance()).await;
    assert_eq!(
        report.attempt,
        Attempt::Retry {
            status: None,
            error: "no response within 300ms (the endpoint's timeout)".into(),
            retry_after: None,
        }
    );
    assert!(
        report.latency >= Duration::from_millis(300) && report.latency < Duration::from_secs(3),
        "{:?}",
        report.latency
    );
}

#[tokio::test]
async fn connection_closed_is_retried() {
    let receiver = Receiver::start(vec![Reply::Close, Reply::CutOff]).await;
    let config = endpoint(receiver.url("/"), PayloadFormat::Form, Some(SECRET));
    let client = EndpointClient::new(&config).unwrap();

    // Closed before any answer.
    let attempt = client.send(&id(1), &attendance()).await.attempt;
    let Attempt::Retry {
        status: None,
        error,
        retry_after: None,
    } = &attempt
    else {
        panic!("{attempt:?}");
    };
    assert_eq!(
        error,
        "request failed: client error (SendRequest): connection closed before message completed"
    );

    // 200 and then the body broke off: not a complete success.
    let attempt = client.send(&id(2), &attendance()).await.attempt;
    let Attempt::Retry {
        status: Some(200),
        error,
        retry_after: None,
    } = &attempt
    else {
        panic!("{attempt:?}");
    };
    assert_eq!(
        error,
        "HTTP 200 OK but the response was cut off: request or response body error: error \
         reading a body from connection: end of file before message length reached"
    );
    assert_eq!(receiver.take().len(), 2);
}

#[tokio::test]
async fn refused_connection_is_retried() {
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = url::Url::parse(&format!("http://127.0.0.1:{port}/")).unwrap();
    let client = EndpointClient::new(&endpoint(url, PayloadFormat::Form, None)).unwrap();
    let attempt = client.send(&id(1), &attendance()).await.attempt;
    let Attempt::Retry {
        status: None,
        error,
        retry_after: None,
    } = &attempt
    else {
        panic!("{attempt:?}");
    };
    assert!(error.starts_with("cannot connect: "), "{error}");
    assert!(error.contains("Connection refused"), "{error}");
}

#[tokio::test]
async fn missing_value_is_rejected_without_a_request() {
    let receiver = Receiver::start(vec![]).await;
    let client =
        EndpointClient::new(&endpoint(receiver.url("/"), PayloadFormat::Form, None)).unwrap();
    let mut event = attendance();
    event.params[2].value = None;
    event.params[2].column = "occurrence_ref".into();
    let attempt = client.send(&id(1), &event).await.attempt;
    assert_eq!(
        attempt,
        Attempt::Reject {
            status: None,
            error: "parameter `occurrence_id` has no value: column `occurrence_ref` is NULL in \
                    this change"
                .into(),
        }
    );
    assert_eq!(receiver.take().len(), 0);
    assert_eq!(receiver.connections.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn sends_reuse_one_connection() {
    // Bodies on error answers too: they are read to the end so the connection stays usable.
    let receiver = Receiver::start(vec![
        Reply::Status(200, "ok"),
        Reply::Status(503, "busy, try later"),
        Reply::Status(400, "no"),
        Reply::Status(204, ""),
    ])
    .await;
    let config = endpoint(receiver.url("/"), PayloadFormat::Json, Some(SECRET));
    let client = EndpointClient::new(&config).unwrap();
    for n in 0..6 {
        client.send(&id(n), &attendance()).await;
    }
    assert_eq!(receiver.take().len(), 6);
    assert_eq!(receiver.connections.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn bad_secret_fails_at_construction_without_echoing_it() {
    let url = url::Url::parse("http://127.0.0.1:1/").unwrap();
    let err = EndpointClient::new(&endpoint(url, PayloadFormat::Form, Some("whsec_sec!ret")))
        .unwrap_err();
    assert!(matches!(err, DeliveryError::Secret { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.starts_with(
            "endpoint `hr-system`: secret: the secret starts with `whsec_` but the rest is not \
             valid base64 (invalid character at position 10)"
        ),
        "{text}"
    );
    assert!(!text.contains("sec!ret"), "{text}");
    let client = EndpointClient::new(&endpoint(
        url::Url::parse("http://127.0.0.1:1/").unwrap(),
        PayloadFormat::Form,
        Some(SECRET),
    ))
    .unwrap();
    let shown = format!("{client:?}");
    assert!(!shown.contains("MfKQ9r8"), "{shown}");
}
