//! How `status` and `dead-letters` talk to a running bridge: its admin routes over loopback.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use serde::de::DeserializeOwned;

use super::admin::{selection_query, Acted, ApiError};
use crate::dead_letters::{Filter, Listed};
use crate::delivery::client::{client_builder, describe_chain};
use crate::status::Status;
use crate::Error;

/// Status may wait for the database (10 s) and read the whole outbox.
const TIMEOUT: Duration = Duration::from_secs(60);

pub struct AdminClient {
    base: String,
    http: reqwest::Client,
}

impl AdminClient {
    /// A client for the bridge listening on `listen` (`[http].listen`).
    pub fn new(listen: SocketAddr) -> Result<AdminClient, Error> {
        let http = client_builder("admin", false)
            .map_err(|e| Error::definite(e.to_string(), None))?
            .timeout(TIMEOUT)
            // Loopback must never go through an HTTP_PROXY.
            .no_proxy()
            .build()
            .map_err(|e| Error::definite(describe_chain(&e), None))?;
        Ok(AdminClient {
            base: format!("http://{}", loopback_for(listen)),
            http,
        })
    }

    pub async fn status(&self) -> Result<Status, Error> {
        self.call(reqwest::Method::GET, "/admin/status", String::new())
            .await
    }

    pub async fn dead_letters(&self, filter: &Filter) -> Result<Vec<Listed>, Error> {
        self.call(
            reqwest::Method::GET,
            "/admin/dead-letters",
            selection_query(filter, false),
        )
        .await
    }

    pub async fn retry(&self, filter: &Filter, all: bool) -> Result<usize, Error> {
        let acted: Acted = self
            .call(
                reqwest::Method::POST,
                "/admin/dead-letters/retry",
                selection_query(filter, all),
            )
            .await?;
        Ok(acted.count)
    }

    pub async fn purge(&self, filter: &Filter, all: bool) -> Result<usize, Error> {
        let acted: Acted = self
            .call(
                reqwest::Method::POST,
                "/admin/dead-letters/purge",
                selection_query(filter, all),
            )
            .await?;
        Ok(acted.count)
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        query: String,
    ) -> Result<T, Error> {
        let mut url = format!("{}{path}", self.base);
        if !query.is_empty() {
            url.push('?');
            url.push_str(&query);
        }
        let unreachable = |detail: String| {
            Error::definite(
                format!(
                    "the state directory is held by a running bridge, but its admin routes at \
                     {} did not answer: {detail}",
                    self.base
                ),
                Some(
                    "run this on the bridge's host with the bridge's configuration file (same \
                     [http].listen; admin routes answer only on loopback)"
                        .to_string(),
                ),
            )
        };
        let response = self
            .http
            .request(method, &url)
            .send()
            .await
            .map_err(|e| unreachable(describe_chain(&e)))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| unreachable(describe_chain(&e)))?;
        if status.is_success() {
            return serde_json::from_slice(&body)
                .map_err(|e| unreachable(format!("unreadable answer: {e}")));
        }
        match serde_json::from_slice::<ApiError>(&body) {
            Ok(api) => Err(Error::definite(api.error, api.hint)),
            Err(_) => Err(unreachable(format!(
                "HTTP {status}: {}",
                String::from_utf8_lossy(&body).trim()
            ))),
        }
    }
}

/// Where to reach a listener on `listen` from this host: an unspecified address (0.0.0.0, ::)
/// listens on loopback too.
fn loopback_for(listen: SocketAddr) -> SocketAddr {
    let ip = match listen.ip() {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, listen.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unspecified_listeners_are_reached_on_loopback() {
        let cases = [
            ("0.0.0.0:9187", "127.0.0.1:9187"),
            ("[::]:9187", "[::1]:9187"),
            ("127.0.0.1:9187", "127.0.0.1:9187"),
            ("10.0.0.5:80", "10.0.0.5:80"),
        ];
        for (listen, reach) in cases {
            assert_eq!(
                loopback_for(listen.parse().unwrap()).to_string(),
                reach,
                "{listen}"
            );
        }
    }
}
