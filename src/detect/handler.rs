//! [`Detector`]: detection as a capture [`Handler`].

use std::sync::Arc;

use tracing::warn;

use crate::capture::Handler;
use crate::config::{Config, EventType, Operation, Rule};
use crate::event::Event;
use crate::lsn::Lsn;
use crate::pgoutput::{Item, Transaction};
use crate::store::Outgoing;
use crate::Error;

use super::columns::{check_relation, is_rule_table};
use super::evaluate::detect;

/// Turns each committed transaction's row changes into outbox entries ([`Event::to_bytes`]
/// for the endpoints subscribed to the event's type), in change order and, within a change, in
/// rule order. An event no endpoint wants keeps its ordinal (so ids do not depend on
/// subscriptions) but is stored nowhere.
///
/// Only the open transaction's events are held, never its rows, and capture takes them in chunks
/// as they pile up ([`Handler::take_ready`]), so memory stays bounded however large a
/// transaction is.
#[derive(Debug, Clone)]
pub struct Detector {
    rules: Vec<Rule>,
    /// The endpoints subscribed to each event type.
    routes: Vec<(EventType, Arc<[String]>)>,
    pending: Vec<Event>,
}

impl Detector {
    /// A detector whose events go to the endpoints `routes` lists per event type.
    pub fn new(rules: Vec<Rule>, routes: Vec<(EventType, Vec<String>)>) -> Detector {
        Detector {
            rules,
            routes: routes
                .into_iter()
                .map(|(t, endpoints)| (t, Arc::from(endpoints)))
                .collect(),
            pending: Vec::new(),
        }
    }

    /// A detector for the configuration's effective rules and endpoints' subscriptions.
    pub fn from_config(config: &Config) -> Detector {
        let routes = EventType::ALL
            .iter()
            .map(|t| {
                let endpoints = config
                    .endpoints
                    .iter()
                    .filter(|e| e.wants(*t))
                    .map(|e| e.name.clone())
                    .collect();
                (*t, endpoints)
            })
            .collect();
        Detector::new(config.rules().to_vec(), routes)
    }

    fn endpoints_for(&self, event_type: EventType) -> Arc<[String]> {
        self.routes
            .iter()
            .find(|(t, _)| *t == event_type)
            .map(|(_, endpoints)| Arc::clone(endpoints))
            .unwrap_or_else(|| Arc::from(Vec::new()))
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The gathered events as outbox entries, in order.
    fn take_all(&mut self) -> Vec<Outgoing> {
        // `take` rather than `drain`: a huge transaction's buffer is not kept for the next one.
        let events = std::mem::take(&mut self.pending);
        events
            .iter()
            .map(|event| Outgoing {
                payload: event.to_bytes(),
                key: event.ordering_key(),
                endpoints: self.endpoints_for(event.event_type),
            })
            .collect()
    }

    /// Events gathered in the open transaction and not taken yet.
    pub fn pending(&self) -> &[Event] {
        &self.pending
    }
}

impl Handler for Detector {
    fn item(&mut self, txn: &Transaction, item: &Item) -> Result<(), Error> {
        match item {
            // The server describes a table before its first change in a session and again after
            // its schema changed: the moment to notice a rule column that is gone.
            Item::Relation(relation) => check_relation(&self.rules, relation)?,
            Item::Change(change) => {
                let events = detect(&self.rules, change, txn.commit_time)?;
                self.pending.extend(events);
            }
            Item::Truncate { relations, .. } => {
                // TRUNCATE sends no rows, so delete rules cannot fire: say so rather than skip
                // silently.
                for relation in relations {
                    for rule in self
                        .rules
                        .iter()
                        .filter(|r| r.on.contains(&Operation::Delete) && is_rule_table(r, relation))
                    {
                        warn!(table = %relation.qualified_name(), event_type = %rule.event_type,
                            "TRUNCATE removed rows without per-row deletes: no delete events for them");
                    }
                }
            }
            Item::Begin { .. } | Item::Message { .. } | Item::Commit { .. } => {}
        }
        Ok(())
    }

    fn take_ready(&mut self, at_least: usize) -> Vec<Outgoing> {
        if self.pending.is_empty() || self.pending.len() < at_least {
            return Vec::new();
        }
        self.take_all()
    }

    fn commit(&mut self, _txn: &Transaction, _end_lsn: Lsn) -> Result<Vec<Outgoing>, Error> {
        Ok(self.take_all())
    }

    fn reset(&mut self) {
        self.pending = Vec::new();
    }
}
