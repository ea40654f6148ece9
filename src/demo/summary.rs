//! What the demo saw, line by line as it happens and as totals at the end.

use std::collections::BTreeMap;
use std::time::Duration;

use super::arrival::Arrival;
use super::endpoints::DemoEndpoint;
use crate::config::EventType;

/// The header above the webhook lines; the latency's meaning is stated once, here.
pub fn print_header() {
    println!(
        "Latency = from the generator sending COMMIT to the webhook arriving at the receiver."
    );
    println!("Lines marked `·` are writes that must send no webhook.\n");
    println!(
        "{:>8}  {:<10} {:<5} {:<25} {:<56} signature",
        "latency", "endpoint", "body", "event", "params"
    );
}

#[derive(Default)]
pub struct Stats {
    /// (event type, endpoint) → webhooks.
    by_type: BTreeMap<(usize, String), u64>,
    latencies: Vec<Duration>,
    signatures: BTreeMap<&'static str, u64>,
    /// Arrivals the generator's transactions did not call for (or a second copy of one).
    unexpected: u64,
    quiet: BTreeMap<&'static str, u64>,
}

impl Stats {
    /// Prints the arrival's line and counts it. `latency` is `None` when it was not expected.
    pub fn arrived(&mut self, arrival: &Arrival, latency: Option<Duration>) {
        let event = match &arrival.event_type {
            Ok(t) => t.as_str().to_string(),
            Err(text) => format!("?{text}"),
        };
        let params: Vec<String> = arrival
            .params
            .iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect();
        let shown_latency = match latency {
            Some(d) => format!("{} ms", d.as_millis()),
            None => "UNEXPECTED".to_string(),
        };
        println!(
            "{shown_latency:>8}  {:<10} {:<5} {event:<25} {:<56} {}",
            arrival.endpoint,
            arrival.format,
            params.join(" "),
            arrival.signature.label()
        );
        let index = arrival
            .event_type
            .as_ref()
            .map_or(EventType::ALL.len(), |t| *t as usize);
        *self
            .by_type
            .entry((index, arrival.endpoint.clone()))
            .or_default() += 1;
        *self
            .signatures
            .entry(arrival.signature.label())
            .or_default() += 1;
        match latency {
            Some(d) => self.latencies.push(d),
            None => self.unexpected += 1,
        }
    }

    pub fn quiet(&mut self, kind: &'static str, detail: &str) {
        println!("{:>8}  {detail}", "·");
        *self.quiet.entry(kind).or_default() += 1;
    }

    pub fn print(
        &mut self,
        endpoints: &[DemoEndpoint],
        activity: Duration,
        transactions: u64,
        outstanding: usize,
    ) {
        println!(
            "\nSummary: {:.1} s of activity, {transactions} transactions.",
            activity.as_secs_f64()
        );
        self.print_table(endpoints);
        self.latencies.sort();
        match (percentile(&self.latencies, 50), percentile(&self.latencies, 99), self.latencies.last()) {
            (Some(p50), Some(p99), Some(max)) => println!(
                "  latency (COMMIT sent → arrived): p50 {} ms, p99 {} ms, max {} ms over {} webhooks",
                p50.as_millis(),
                p99.as_millis(),
                max.as_millis(),
                self.latencies.len()
            ),
            _ => println!("  latency: no webhook arrived"),
        }
        let signatures: Vec<String> = self
            .signatures
            .iter()
            .map(|(k, n)| format!("{n} {k}"))
            .collect();
        println!(
            "  signatures: {}",
            if signatures.is_empty() {
                "none".to_string()
            } else {
                signatures.join(", ")
            }
        );
        let quiet_total: u64 = self.quiet.values().sum();
        let quiet: Vec<String> = self
            .quiet
            .iter()
            .map(|(k, n)| format!("{k}: {n}"))
            .collect();
        println!(
            "  writes that correctly sent nothing: {quiet_total} ({})\n  unexpected webhooks: {}",
            quiet.join(", "),
            self.unexpected
        );
        if outstanding == 0 {
            println!("  every expected webhook arrived.");
        } else {
            println!(
                "  {outstanding} expected webhook(s) had not arrived when the demo stopped \
                 (the bridge keeps them in its outbox; here the outbox is thrown away)."
            );
        }
    }

    fn print_table(&self, endpoints: &[DemoEndpoint]) {
        print!("  {:<25}", "webhooks");
        for e in endpoints {
            print!(" {:>10}", e.name);
        }
        println!();
        let names = EventType::ALL
            .iter()
            .map(|t| t.as_str())
            .chain(["(unknown type)"]);
        for (index, name) in names.enumerate() {
            let counts: Vec<u64> = endpoints
                .iter()
                .map(|e| {
                    self.by_type
                        .get(&(index, e.name.to_string()))
                        .copied()
                        .unwrap_or(0)
                })
                .collect();
            if index == EventType::ALL.len() && counts.iter().all(|n| *n == 0) {
                continue;
            }
            print!("  {name:<25}");
            for n in counts {
                print!(" {n:>10}");
            }
            println!();
        }
    }
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[Duration], p: usize) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p * sorted.len()).div_ceil(100).max(1);
    sorted.get(rank - 1).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let ms: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&ms, 50), Some(Duration::from_millis(50)));
        assert_eq!(percentile(&ms, 99), Some(Duration::from_millis(99)));
        assert_eq!(percentile(&ms[..1], 99), Some(Duration::from_millis(1)));
        assert_eq!(percentile(&[], 50), None);
    }
}
