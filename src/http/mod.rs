//! The bridge's HTTP listener on `[http].listen` (default `127.0.0.1:9187`).
//!
//! - `GET /metrics`: Prometheus text format (see [`crate::metrics`]).
//! - `GET /healthz`: 200 while the process runs.
//! - `GET /readyz`: 200 when replication is streaming and its lag is under [`READY_MAX_LAG`];
//!   503 with the reason otherwise.
//! - `/admin/…`, answered only to loopback peers (403 otherwise), whatever address is listened
//!   on: `GET /admin/status`, `GET /admin/dead-letters`, `POST /admin/dead-letters/retry`,
//!   `POST /admin/dead-letters/purge`. They are how `status` and `dead-letters` reach a running
//!   bridge, which holds the state directory (sled admits one process). Filters go in the query
//!   string: `endpoint`, `event_type`, `id`, and `all=true` to act on every dead letter.

mod admin;
pub mod client;
mod routes;

pub use admin::is_local;
pub use routes::respond;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;
use tracing::{info, warn};

use crate::capture::Progress;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::status::Failures;
use crate::store::Store;
use crate::Error;

/// `/readyz` fails above this replication lag (`fuse_cdc_bridge_replication_lag_seconds`).
pub const READY_MAX_LAG: Duration = Duration::from_secs(60);

/// What the routes read and act on.
pub struct State {
    pub config: Config,
    pub store: Store,
    pub metrics: Arc<Metrics>,
    pub progress: watch::Receiver<Progress>,
    pub failures: Arc<Failures>,
    /// One per dispatcher: woken after dead letters are put back in the outbox.
    pub rescans: Vec<Arc<Notify>>,
}

impl State {
    fn wake_dispatchers(&self) {
        for rescan in &self.rescans {
            // A stored permit: a dispatcher busy right now rescans when it next waits.
            rescan.notify_one();
        }
    }
}

/// Binds the listener; a port in use is a definite error (two bridges configured alike).
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, Error> {
    let listener = TcpListener::bind(addr).await.map_err(|e| {
        Error::definite(
            format!("cannot listen on {addr} ([http].listen): {e}"),
            Some(
                "another process (another fuse-cdc-bridge?) uses that address: stop it, or set \
                 [http].listen to a free one"
                    .to_string(),
            ),
        )
    })?;
    if let Ok(local) = listener.local_addr() {
        info!(listen = %local, "http: /metrics, /healthz, /readyz; /admin for loopback peers");
    }
    Ok(listener)
}

/// Serves until the task is dropped (or aborted), which closes every connection.
pub async fn serve(listener: TcpListener, state: Arc<State>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let state = Arc::clone(&state);
                    connections.spawn(async move {
                        let service = service_fn(move |req| {
                            routes::handle(Arc::clone(&state), peer, req)
                        });
                        let _ = http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
                Err(e) => {
                    // Out of file descriptors, say: wait rather than spin.
                    warn!(error = %e, "http: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = connections.join_next() => {}
        }
    }
}
