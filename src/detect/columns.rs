//! The columns a rule reads, and the definite error when a table's description lacks one.

use crate::config::{EventType, Rule};
use crate::pgoutput::Relation;
use crate::Error;

/// A rule reads a column that the table, as the stream describes it, does not have: it was
/// dropped or renamed (or left out of the publication's column list). Firing without it would
/// silently skip or mangle events, so capture stops before the transaction is confirmed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the rule for \"{event_type}\" reads column \"{column}\" of {table}, which the table no \
     longer has (dropped or renamed)"
)]
pub struct MissingColumn {
    pub event_type: EventType,
    /// `schema.table`
    pub table: String,
    pub column: String,
}

impl MissingColumn {
    /// What the operator can do about it.
    pub fn hint(&self) -> String {
        format!(
            "restore the column or change [events.\"{}\"] in the config, then restart",
            self.event_type
        )
    }
}

impl From<MissingColumn> for Error {
    fn from(e: MissingColumn) -> Error {
        let hint = e.hint();
        Error::definite(e.to_string(), hint)
    }
}

/// Whether `rule` is about `relation`'s table. Names compare exactly, as the config writes them
/// and the server sends them (no case folding).
pub(super) fn is_rule_table(rule: &Rule, relation: &Relation) -> bool {
    relation.name == rule.table.name && relation.schema() == rule.table.schema
}

/// Every column `rule` reads: `changed`, then `becomes.column`, then the parameters' columns.
fn rule_columns(rule: &Rule) -> impl Iterator<Item = &str> {
    let changed = rule.changed.iter().flatten().map(String::as_str);
    let becomes = rule.becomes.iter().map(|b| b.column.as_str());
    let params = rule.params.iter().map(|p| p.column.as_str());
    changed.chain(becomes).chain(params)
}

/// Checks that `relation` has every column `rule` reads (`rule` must be about its table).
pub(super) fn check_rule(rule: &Rule, relation: &Relation) -> Result<(), MissingColumn> {
    match rule_columns(rule).find(|c| relation.column_index(c).is_none()) {
        None => Ok(()),
        Some(column) => Err(MissingColumn {
            event_type: rule.event_type,
            table: relation.qualified_name(),
            column: column.to_owned(),
        }),
    }
}

/// Checks a (re)described relation against every rule about its table, in rule order. Added
/// columns and dropped columns no rule reads pass; the first missing rule column is the error.
pub fn check_relation(rules: &[Rule], relation: &Relation) -> Result<(), MissingColumn> {
    rules
        .iter()
        .filter(|rule| is_rule_table(rule, relation))
        .try_for_each(|rule| check_rule(rule, relation))
}
