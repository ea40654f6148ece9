//! Routing, and the public routes: metrics, liveness, readiness.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::CONTENT_TYPE;
use hyper::{Method, Request, Response, StatusCode};

use super::{admin, State, READY_MAX_LAG};

pub(super) type Reply = Response<Full<Bytes>>;

pub(super) async fn handle(
    state: Arc<State>,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Result<Reply, Infallible> {
    Ok(respond(&state, peer, &req).await)
}

/// The answer to `req` from `peer`. No route reads a body, so any body type will do.
pub async fn respond<B>(state: &Arc<State>, peer: SocketAddr, req: &Request<B>) -> Reply {
    let path = req.uri().path();
    let method = req.method();
    if path.starts_with("/admin/") {
        if !admin::is_local(peer) {
            return text(
                StatusCode::FORBIDDEN,
                "admin routes answer only to loopback clients\n",
            );
        }
        return admin::handle(state, method, path, req.uri().query()).await;
    }
    match (method.clone(), path) {
        (Method::GET, "/metrics") => metrics(state).await,
        (Method::GET, "/healthz") => text(StatusCode::OK, "ok\n"),
        (Method::GET, "/readyz") => ready(state),
        (_, "/metrics" | "/healthz" | "/readyz") => {
            text(StatusCode::METHOD_NOT_ALLOWED, "use GET\n")
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

async fn metrics(state: &Arc<State>) -> Reply {
    // The store gauges read sled: keep that off the async workers.
    let s = Arc::clone(state);
    match tokio::task::spawn_blocking(move || s.metrics.encode(&s.config, &s.store)).await {
        Ok(body) => with_body(StatusCode::OK, crate::metrics::CONTENT_TYPE, body),
        Err(_) => text(StatusCode::INTERNAL_SERVER_ERROR, "encoding failed\n"),
    }
}

fn ready(state: &State) -> Reply {
    if !state.progress.borrow().connected {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: replication is not connected\n",
        );
    }
    let lag = state.metrics.lag_seconds();
    if lag >= READY_MAX_LAG.as_secs_f64() {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!(
                "not ready: replication lag {lag:.0}s is over {}s\n",
                READY_MAX_LAG.as_secs()
            ),
        );
    }
    text(StatusCode::OK, "ready\n")
}

pub(super) fn text(status: StatusCode, body: &str) -> Reply {
    with_body(status, "text/plain; charset=utf-8", body.to_string())
}

pub(super) fn json(status: StatusCode, value: &impl serde::Serialize) -> Reply {
    match serde_json::to_string(value) {
        Ok(body) => with_body(status, "application/json", body),
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, &format!("{e}\n")),
    }
}

fn with_body(status: StatusCode, content_type: &'static str, body: String) -> Reply {
    let mut reply = Response::new(Full::new(Bytes::from(body)));
    *reply.status_mut() = status;
    reply.headers_mut().insert(
        CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    reply
}
