//! The publication and the replication slot the bridge reads through.

use crate::config::{Config, Operation};
use crate::pg::admin::{PublicationInfo, SlotInfo};
use crate::pg::replication::{quote_ident, quote_literal};
use crate::preflight::facts::Facts;
use crate::preflight::report::{AutoFix, Check, Finding};

pub(super) fn publication(config: &Config, facts: &Facts) -> Vec<Finding> {
    let name = &config.postgres.publication;
    let p = match &facts.publication {
        Ok(p) => p,
        Err(e) => {
            return vec![Finding::definite(
                Check::Publication,
                format!("cannot inspect the publication {name}: {e}"),
            )]
        }
    };
    let with_fixes = |f: Finding| {
        p.fixes
            .iter()
            .fold(f, |f, sql| f.sql(format!("{sql};")))
            .auto(AutoFix::Always)
    };
    let Some(info) = &p.info else {
        return vec![with_fixes(Finding::warning(
            Check::Publication,
            format!(
                "the publication {name} does not exist (setup or run creates it; until then no \
                 change is captured)"
            ),
        ))];
    };
    let mut out = Vec::new();
    if p.missing.is_empty() {
        out.push(Finding::ok(
            Check::Publication,
            format!("the publication {name} covers every rule table"),
        ));
    } else {
        let list: Vec<String> = p.missing.iter().map(ToString::to_string).collect();
        out.push(with_fixes(Finding::warning(
            Check::Publication,
            format!(
                "the publication {name} does not cover {}: changes there produce no webhooks",
                list.join(", ")
            ),
        )));
    }
    out.extend(operations(config, name, info));
    out
}

/// A publication created `WITH (publish = …)` may leave out operations the rules listen to.
fn operations(config: &Config, name: &str, info: &PublicationInfo) -> Option<Finding> {
    let needs = |op: Operation| config.rules().iter().any(|r| r.on.contains(&op));
    let publish = [
        ("insert", info.insert || needs(Operation::Insert)),
        ("update", info.update || needs(Operation::Update)),
        ("delete", info.delete || needs(Operation::Delete)),
        ("truncate", info.truncate),
    ];
    let missing: Vec<&str> = [
        ("insert", info.insert, Operation::Insert),
        ("update", info.update, Operation::Update),
        ("delete", info.delete, Operation::Delete),
    ]
    .into_iter()
    .filter(|(_, published, op)| !published && needs(*op))
    .map(|(word, _, _)| word)
    .collect();
    if missing.is_empty() {
        return None;
    }
    let all: Vec<&str> = publish
        .iter()
        .filter(|(_, on)| *on)
        .map(|(w, _)| *w)
        .collect();
    Some(
        Finding::warning(
            Check::Publication,
            format!(
                "the publication {name} does not publish {}: those changes produce no webhooks",
                missing.join(", ")
            ),
        )
        .sql(format!(
            "ALTER PUBLICATION {} SET (publish = {});",
            quote_ident(name),
            quote_literal(&all.join(", "))
        ))
        .auto(AutoFix::Always),
    )
}

pub(super) fn slot(config: &Config, facts: &Facts) -> Vec<Finding> {
    let name = &config.postgres.slot;
    let create = format!(
        "SELECT pg_create_logical_replication_slot({}, 'pgoutput');",
        quote_literal(name)
    );
    let drop = format!("SELECT pg_drop_replication_slot({});", quote_literal(name));
    let slot = match &facts.slot {
        Ok(Some(slot)) => slot,
        Ok(None) => {
            return vec![Finding::warning(
                Check::Slot,
                format!(
                    "the replication slot {name} does not exist (setup or run creates it; \
                     changes committed before it exists produce no webhooks)"
                ),
            )
            .sql(create)
            .auto(AutoFix::Always)]
        }
        Err(e) => {
            return vec![Finding::definite(
                Check::Slot,
                format!("cannot inspect the replication slot {name}: {e}"),
            )]
        }
    };
    let plugin = slot.plugin.as_deref().unwrap_or("(none: a physical slot)");
    let database = slot.database.as_deref().unwrap_or("(none)");
    let ours = facts.server.as_ref().ok().map(|s| s.database.as_str());
    if plugin != "pgoutput" || ours.is_some_and(|db| db != database) {
        let what = if plugin != "pgoutput" {
            format!("uses the plugin {plugin}, not pgoutput")
        } else {
            format!(
                "belongs to the database {database}, not {}",
                ours.unwrap_or_default()
            )
        };
        return vec![Finding::definite(
            Check::Slot,
            format!("the replication slot {name} {what}: it was made for something else"),
        )
        .manual("set another [postgres].slot in the config, or, if that slot is abandoned:")
        .sql(drop)];
    }
    if slot.wal_status.as_deref() == Some("lost") {
        return vec![lost(slot, &drop, &create)];
    }
    let mut out = vec![healthy(slot, database)];
    if slot.wal_status.as_deref() == Some("unreserved") {
        out.push(
            Finding::warning(
                Check::Slot,
                format!(
                    "the replication slot {name} is about to lose WAL it needs (wal_status \
                     unreserved, past max_slot_wal_keep_size)"
                ),
            )
            .manual("start the bridge so it consumes the WAL, or raise max_slot_wal_keep_size"),
        );
    }
    if let Some(pid) = slot.active_pid {
        out.push(Finding::info(
            Check::Slot,
            format!(
                "the replication slot {name} is in use by PID {pid}: another consumer is reading \
                 it (run waits until it is free)"
            ),
        ));
    }
    out
}

fn lost(slot: &SlotInfo, drop: &str, create: &str) -> Finding {
    let since = slot
        .confirmed_flush_lsn
        .map(|l| format!(" after {l}"))
        .unwrap_or_default();
    Finding::definite(
        Check::Slot,
        format!(
            "the replication slot {} is unusable: the server removed WAL it needed (wal_status \
             lost). Dropping and re-creating it starts from now: changes committed{since} until \
             then are lost and produce no webhooks",
            slot.name
        ),
    )
    .sql(drop)
    .sql(create)
}

fn healthy(slot: &SlotInfo, database: &str) -> Finding {
    let confirmed = slot
        .confirmed_flush_lsn
        .map(|l| format!(", confirmed up to {l}"))
        .unwrap_or_default();
    let retained = slot
        .retained_bytes
        .map(|b| format!(", retaining {} of WAL", bytes(b)))
        .unwrap_or_default();
    Finding::ok(
        Check::Slot,
        format!(
            "the replication slot {} exists (pgoutput, database {database}{confirmed}{retained})",
            slot.name
        ),
    )
}

fn bytes(n: i64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} bytes");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    #[test]
    fn bytes_are_human() {
        assert_eq!(super::bytes(56), "56 bytes");
        assert_eq!(super::bytes(16 * 1024 * 1024), "16.0 MiB");
        assert_eq!(super::bytes(1536), "1.5 KiB");
    }
}
