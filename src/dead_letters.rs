//! The `dead-letters` command: list, retry or purge the events endpoints refused or that ran out
//! of attempts, filtered by endpoint, event type and id. While `run` holds the state directory
//! the command goes through its admin routes ([`crate::status::Access`]), which call these same
//! functions.

use serde::{Deserialize, Serialize};

use crate::config::EventType;
use crate::event::{Event, EventId};
use crate::store::{DeadLetter, OutboxEntry, Store};
use crate::Error;

/// Which dead letters an action applies to. An empty filter matches everything; retry and purge
/// refuse to act on everything unless asked to (`--all`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    pub endpoint: Option<String>,
    pub event_type: Option<EventType>,
    pub id: Option<EventId>,
}

impl Filter {
    pub fn is_empty(&self) -> bool {
        self.endpoint.is_none() && self.event_type.is_none() && self.id.is_none()
    }

    fn matches(&self, entry: &OutboxEntry<DeadLetter>, event: Option<&Event>) -> bool {
        self.endpoint.as_ref().is_none_or(|e| *e == entry.endpoint)
            && self.id.is_none_or(|id| id == entry.id)
            && self
                .event_type
                .is_none_or(|t| event.is_some_and(|e| e.event_type == t))
    }
}

/// One dead letter as the operator sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listed {
    pub endpoint: String,
    pub id: String,
    /// The event type, or `None` when the stored payload could not be read.
    pub event_type: Option<String>,
    pub params: Vec<(String, Option<String>)>,
    pub attempts: u32,
    pub last_status: Option<u16>,
    pub reason: String,
    /// Unix milliseconds.
    pub dead_at: u64,
}

pub fn list(store: &Store, filter: &Filter) -> Result<Vec<Listed>, Error> {
    let mut out = Vec::new();
    for entry in store.dead_letters() {
        let entry = entry?;
        let event = Event::from_bytes(&entry.payload).ok();
        if !filter.matches(&entry, event.as_ref()) {
            continue;
        }
        out.push(Listed {
            endpoint: entry.endpoint.clone(),
            id: entry.id.to_string(),
            event_type: event.as_ref().map(|e| e.event_type.as_str().to_string()),
            params: event
                .map(|e| e.params.into_iter().map(|p| (p.name, p.value)).collect())
                .unwrap_or_default(),
            attempts: entry.state.attempts,
            last_status: entry.state.last_status,
            reason: entry.state.reason,
            dead_at: entry.state.dead_at,
        });
    }
    Ok(out)
}

/// What retry or purge should act on: refuses an empty filter without `all`.
fn selected(store: &Store, filter: &Filter, all: bool) -> Result<Vec<(String, EventId)>, Error> {
    if filter.is_empty() && !all {
        return Err(Error::definite(
            "this would act on every dead letter",
            Some("narrow it with --endpoint, --event-type or --id, or pass --all".to_string()),
        ));
    }
    Ok(list(store, filter)?
        .into_iter()
        .filter_map(|l| Some((l.endpoint, EventId::parse(&l.id)?)))
        .collect())
}

/// Puts the selected dead letters back in the outbox (same event ids); returns how many.
pub fn retry(store: &Store, filter: &Filter, all: bool) -> Result<usize, Error> {
    let mut n = 0;
    for (endpoint, id) in selected(store, filter, all)? {
        if store.retry_dead_letter(&endpoint, id)? {
            n += 1;
        }
    }
    Ok(n)
}

/// Deletes the selected dead letters for good; returns how many.
pub fn purge(store: &Store, filter: &Filter, all: bool) -> Result<usize, Error> {
    let mut n = 0;
    for (endpoint, id) in selected(store, filter, all)? {
        if store.purge_dead_letter(&endpoint, id)? {
            n += 1;
        }
    }
    Ok(n)
}

/// A readable table, one dead letter per line.
pub fn render_table(letters: &[Listed]) -> String {
    let mut out = format!(
        "{:<16} {:<28} {:<26} {:>8} {:>6}  {}\n",
        "ENDPOINT", "ID", "EVENT TYPE", "ATTEMPTS", "STATUS", "REASON"
    );
    for l in letters {
        out.push_str(&format!(
            "{:<16} {:<28} {:<26} {:>8} {:>6}  {}\n",
            l.endpoint,
            l.id,
            l.event_type.as_deref().unwrap_or("?"),
            l.attempts,
            l.last_status
                .map(|s| s.to_string())
                .unwrap_or_else(|| "-".into()),
            l.reason
        ));
    }
    out.push_str(&format!("{} dead letter(s)\n", letters.len()));
    out
}
