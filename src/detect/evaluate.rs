//! Whether a rule fires for a row change: table, operation, `changed` and `becomes`.

use crate::config::{Operation, Rule};
use crate::event::Event;
use crate::pgoutput::{ChangeKind, RowChange, Value};

use super::columns::{check_rule, is_rule_table, MissingColumn};
use super::identity::warn_old_row_unknown;
use super::params::params;

/// The events `change` means under `rules`, in rule order. Pure but for the once-per-table
/// warning when a rule had to fire without knowing the old row.
///
/// Errs when a rule about the change's table reads a column its relation lacks: the caller must
/// stop rather than skip events.
pub fn detect(
    rules: &[Rule],
    change: &RowChange,
    commit_time: i64,
) -> Result<Vec<Event>, MissingColumn> {
    let mut events = Vec::new();
    for rule in rules.iter().filter(|r| is_rule_table(r, &change.relation)) {
        check_rule(rule, &change.relation)?;
        if !rule.on.contains(&operation(change.kind)) {
            continue;
        }
        let verdict = changed(rule, change).and(becomes(rule, change));
        if verdict == Verdict::Unsure {
            warn_old_row_unknown(&change.relation);
        }
        if verdict != Verdict::Skip {
            events.push(Event {
                event_type: rule.event_type,
                params: params(rule, change),
                commit_time,
                table: change.relation.qualified_name(),
            });
        }
    }
    Ok(events)
}

fn operation(kind: ChangeKind) -> Operation {
    match kind {
        ChangeKind::Insert => Operation::Insert,
        ChangeKind::Update => Operation::Update,
        ChangeKind::Delete => Operation::Delete,
    }
}

/// One condition's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Fire,
    Skip,
    /// It would take the old row to tell: fire (at least once beats never) and warn.
    Unsure,
}

impl Verdict {
    /// Both conditions: a definite no wins, then doubt.
    fn and(self, other: Verdict) -> Verdict {
        match (self, other) {
            (Verdict::Skip, _) | (_, Verdict::Skip) => Verdict::Skip,
            (Verdict::Unsure, _) | (_, Verdict::Unsure) => Verdict::Unsure,
            _ => Verdict::Fire,
        }
    }

    fn from_changed(changed: Option<bool>) -> Verdict {
        match changed {
            Some(true) => Verdict::Fire,
            Some(false) => Verdict::Skip,
            None => Verdict::Unsure,
        }
    }
}

/// `changed`: for updates, at least one listed column really changed. Inserts and deletes have
/// nothing to compare, so the filter does not apply to them.
fn changed(rule: &Rule, change: &RowChange) -> Verdict {
    let Some(columns) = rule.changed.as_ref() else {
        return Verdict::Fire;
    };
    if change.kind != ChangeKind::Update {
        return Verdict::Fire;
    }
    let mut verdict = Verdict::Skip;
    for column in columns {
        match Verdict::from_changed(change.column_changed(column)) {
            Verdict::Fire => return Verdict::Fire,
            Verdict::Unsure => verdict = Verdict::Unsure,
            Verdict::Skip => {}
        }
    }
    verdict
}

/// `becomes`: the new value is one of the values and (an insert, or) the old value differed.
/// A delete has no new value; its rule ignores `becomes`.
fn becomes(rule: &Rule, change: &RowChange) -> Verdict {
    let Some(becomes) = rule.becomes.as_ref() else {
        return Verdict::Fire;
    };
    if change.kind == ChangeKind::Delete {
        return Verdict::Fire;
    }
    // NULL, and an unchanged TOASTed value we could not fill in, are never a qualifying value.
    let qualifies = match change.new.as_ref().and_then(|row| row.get(&becomes.column)) {
        Some(Value::Text(value)) => becomes.values.iter().any(|v| v == value),
        _ => false,
    };
    if !qualifies {
        return Verdict::Skip;
    }
    match change.kind {
        ChangeKind::Update => Verdict::from_changed(change.column_changed(&becomes.column)),
        ChangeKind::Insert | ChangeKind::Delete => Verdict::Fire,
    }
}
