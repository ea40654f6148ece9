//! The webhooks the generator's transactions should cause, and when each transaction committed:
//! matching an arrival against them gives its latency and tells an expected webhook from one that
//! should not have been sent.

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use super::endpoints::DemoEndpoint;
use crate::config::EventType;

/// A webhook one transaction should cause, parameters in the rule's order.
#[derive(Debug, Clone)]
pub struct Expected {
    pub event_type: EventType,
    pub params: Vec<(String, String)>,
}

impl Expected {
    pub fn new(event_type: EventType, params: &[(&str, String)]) -> Expected {
        Expected {
            event_type,
            params: params
                .iter()
                .map(|(n, v)| (n.to_string(), v.clone()))
                .collect(),
        }
    }
}

type Key = (String, EventType, String);

/// Per endpoint, the commit instants of expected webhooks not yet arrived.
#[derive(Default)]
pub struct Expectations {
    waiting: HashMap<Key, VecDeque<Instant>>,
    outstanding: usize,
}

impl Expectations {
    /// `commit_at` is taken just before COMMIT is sent, so no arrival can precede it.
    pub fn committing(
        &mut self,
        endpoints: &[DemoEndpoint],
        expected: &[Expected],
        commit_at: Instant,
    ) {
        for e in expected {
            for endpoint in endpoints.iter().filter(|ep| ep.wants(e.event_type)) {
                let key = (endpoint.name.to_string(), e.event_type, key(&e.params));
                self.waiting.entry(key).or_default().push_back(commit_at);
                self.outstanding += 1;
            }
        }
    }

    /// The commit instant of the matching expected webhook, which is now taken; `None` when no
    /// such webhook was expected (or it already arrived once).
    pub fn arrived(
        &mut self,
        endpoint: &str,
        event_type: EventType,
        params: &[(String, String)],
    ) -> Option<Instant> {
        let key = (endpoint.to_string(), event_type, key(params));
        let queue = self.waiting.get_mut(&key)?;
        let at = queue.pop_front()?;
        if queue.is_empty() {
            self.waiting.remove(&key);
        }
        self.outstanding -= 1;
        Some(at)
    }

    /// Expected webhooks that have not arrived.
    pub fn outstanding(&self) -> usize {
        self.outstanding
    }
}

/// JSON objects may come back in another order than the form's: compare sorted pairs.
fn key(params: &[(String, String)]) -> String {
    let mut pairs: Vec<String> = params.iter().map(|(n, v)| format!("{n}={v}")).collect();
    pairs.sort();
    pairs.join("&")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo::endpoints::demo_endpoints;

    #[test]
    fn each_expected_webhook_matches_once_per_subscribed_endpoint() {
        let endpoints = demo_endpoints();
        let mut x = Expectations::default();
        let t = Instant::now();
        let created = Expected::new(EventType::UserCreated, &[("user_id", "7".into())]);
        let plan = Expected::new(
            EventType::LearningPlanCreated,
            &[("learning_plan_id", "3".into())],
        );
        x.committing(&endpoints, &[created.clone(), plan], t);
        assert_eq!(x.outstanding(), 3);
        assert_eq!(
            x.arrived("hr-system", EventType::UserCreated, &created.params),
            Some(t)
        );
        assert_eq!(
            x.arrived("hr-system", EventType::UserCreated, &created.params),
            None
        );
        assert_eq!(
            x.arrived(
                "hr-system",
                EventType::LearningPlanCreated,
                &[("learning_plan_id".into(), "3".into())]
            ),
            None
        );
        assert_eq!(
            x.arrived(
                "lms",
                EventType::LearningPlanCreated,
                &[("learning_plan_id".into(), "3".into())]
            ),
            Some(t)
        );
        assert_eq!(x.outstanding(), 1);
    }

    #[test]
    fn parameter_order_does_not_matter() {
        let endpoints = demo_endpoints();
        let mut x = Expectations::default();
        let t = Instant::now();
        let done = Expected::new(
            EventType::LearningPlanCompleted,
            &[("user_id", "1".into()), ("learning_plan_id", "2".into())],
        );
        x.committing(&endpoints, &[done], t);
        let reversed = vec![
            ("learning_plan_id".to_string(), "2".to_string()),
            ("user_id".to_string(), "1".to_string()),
        ];
        assert_eq!(
            x.arrived("lms", EventType::LearningPlanCompleted, &reversed),
            Some(t)
        );
    }
}
