//! The admin routes: status and dead letters, for loopback clients only.

use std::net::SocketAddr;

use hyper::{Method, StatusCode};
use serde::{Deserialize, Serialize};

use super::routes::{json, text, Reply};
use super::State;
use crate::dead_letters::{self, Filter};
use crate::event::EventId;
use crate::status::{self, Source};
use crate::Error;

/// The body of an admin route's error answer.
#[derive(Debug, Serialize, Deserialize)]
pub struct ApiError {
    pub error: String,
    pub hint: Option<String>,
}

/// How many dead letters a retry or purge acted on.
#[derive(Debug, Serialize, Deserialize)]
pub struct Acted {
    pub count: usize,
}

/// Loopback peers only: the peer's address decides, not the address listened on (a listener on
/// 0.0.0.0 also accepts remote peers). IPv4-mapped IPv6 loopback counts as loopback.
pub fn is_local(peer: SocketAddr) -> bool {
    peer.ip().to_canonical().is_loopback()
}

pub(super) async fn handle(
    state: &State,
    method: &Method,
    path: &str,
    query: Option<&str>,
) -> Reply {
    let result = match (method, path) {
        (&Method::GET, "/admin/status") => admin_status(state).await,
        (&Method::GET, "/admin/dead-letters") => parse_selection(query).and_then(|(f, _)| {
            let letters = dead_letters::list(&state.store, &f)?;
            Ok(json(StatusCode::OK, &letters))
        }),
        (&Method::POST, "/admin/dead-letters/retry") => {
            parse_selection(query).and_then(|(f, all)| {
                let count = dead_letters::retry(&state.store, &f, all)?;
                if count > 0 {
                    state.wake_dispatchers();
                }
                Ok(json(StatusCode::OK, &Acted { count }))
            })
        }
        (&Method::POST, "/admin/dead-letters/purge") => {
            parse_selection(query).and_then(|(f, all)| {
                let count = dead_letters::purge(&state.store, &f, all)?;
                Ok(json(StatusCode::OK, &Acted { count }))
            })
        }
        (
            _,
            "/admin/status"
            | "/admin/dead-letters"
            | "/admin/dead-letters/retry"
            | "/admin/dead-letters/purge",
        ) => Ok(text(StatusCode::METHOD_NOT_ALLOWED, "wrong method\n")),
        _ => Ok(text(StatusCode::NOT_FOUND, "not found\n")),
    };
    result.unwrap_or_else(|e| {
        // Our own refusals (a filter that would act on everything) are the client's to fix.
        let status = match e {
            Error::Definite { .. } => StatusCode::BAD_REQUEST,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        json(
            status,
            &ApiError {
                hint: e.hint(),
                error: e.to_string(),
            },
        )
    })
}

async fn admin_status(state: &State) -> Result<Reply, Error> {
    let connected = state.progress.borrow().connected;
    let mut doc = status::local(
        &state.config,
        &state.store,
        Source::Bridge,
        Some(connected),
        Some(&state.failures),
    )?;
    doc.database = status::database(&state.config).await;
    Ok(json(StatusCode::OK, &doc))
}

/// `endpoint`, `event_type`, `id` and `all` from a query string.
pub fn parse_selection(query: Option<&str>) -> Result<(Filter, bool), Error> {
    let bad = |message: String| Error::definite(message, None);
    let mut filter = Filter::default();
    let mut all = false;
    for (key, value) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match key.as_ref() {
            "endpoint" => filter.endpoint = Some(value.into_owned()),
            "event_type" => {
                filter.event_type = Some(
                    value
                        .parse()
                        .map_err(|e: crate::config::UnknownEventType| bad(e.to_string()))?,
                )
            }
            "id" => {
                filter.id = Some(
                    EventId::parse(&value)
                        .ok_or_else(|| bad(format!("{value:?} is not an event id")))?,
                )
            }
            "all" => {
                all = match value.as_ref() {
                    "true" | "1" => true,
                    "false" | "0" => false,
                    other => return Err(bad(format!("all={other:?}: use true or false"))),
                }
            }
            other => {
                return Err(bad(format!(
                    "unknown parameter {other:?}: use endpoint, event_type, id or all"
                )))
            }
        }
    }
    Ok((filter, all))
}

/// The query string [`parse_selection`] reads back.
pub fn selection_query(filter: &Filter, all: bool) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    if let Some(e) = &filter.endpoint {
        q.append_pair("endpoint", e);
    }
    if let Some(t) = filter.event_type {
        q.append_pair("event_type", t.as_str());
    }
    if let Some(id) = filter.id {
        q.append_pair("id", &id.to_string());
    }
    if all {
        q.append_pair("all", "true");
    }
    q.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::EventType;
    use crate::lsn::Lsn;

    #[test]
    fn only_loopback_peers_are_local() {
        for local in [
            "127.0.0.1:5000",
            "127.8.9.10:1",
            "[::1]:5000",
            "[::ffff:127.0.0.1]:80",
        ] {
            assert!(is_local(local.parse().unwrap()), "{local}");
        }
        for remote in [
            "10.0.0.5:5000",
            "192.168.1.20:443",
            "0.0.0.0:1",
            "[2001:db8::1]:5000",
            "[::ffff:10.0.0.5]:80",
        ] {
            assert!(!is_local(remote.parse().unwrap()), "{remote}");
        }
    }

    #[test]
    fn selections_round_trip_and_bad_ones_are_refused() {
        let filter = Filter {
            endpoint: Some("hr & co".into()),
            event_type: Some(EventType::UserUpdated),
            id: Some(EventId {
                commit_lsn: Lsn(0x1A3F2B8),
                ordinal: 2,
            }),
        };
        let q = selection_query(&filter, true);
        let (back, all) = parse_selection(Some(&q)).unwrap();
        assert_eq!(back, filter);
        assert!(all);
        assert_eq!(parse_selection(None).unwrap(), (Filter::default(), false));
        for bad in [
            "event_type=user.deleted",
            "id=42",
            "all=yes",
            "endpoints=hr",
        ] {
            assert!(parse_selection(Some(bad)).is_err(), "{bad}");
        }
    }
}
