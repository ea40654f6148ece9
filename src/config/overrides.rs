//! `[events."<type>"]` sections: each overrides the built-in rule of its event type key by key,
//! so keys a section omits keep the built-in value.

use std::collections::HashSet;

use super::error::ConfigError;
use super::keypath::{child, index};
use super::raw::RawRule;
use super::rules::{Becomes, EventType, Operation, Param, Rule, TableName};
use super::validate::Result;

/// Effective rules in `EventType::ALL` order. A rule in the file overrides its default key by
/// key: keys it omits keep the default's value.
pub(crate) fn rules(raw: Vec<(String, RawRule)>) -> Result<Vec<Rule>> {
    let mut given: Vec<(EventType, String, RawRule)> = Vec::with_capacity(raw.len());
    for (name, rule) in raw {
        let path = child("events", &name);
        let event = name.parse().map_err(|_| {
            ConfigError::invalid(
                &path,
                format!("unknown event type {name:?}"),
                format!(
                    "rules exist only for {}; rename or remove this section",
                    EventType::valid_list()
                ),
            )
        })?;
        given.push((event, path, rule));
    }
    let mut rules: Vec<Rule> = EventType::ALL
        .iter()
        .map(|t| Rule::default_for(*t))
        .collect();
    for (event, path, raw) in given {
        let rule = &mut rules[event as usize];
        override_rule(rule, &path, raw)?;
    }
    Ok(rules)
}

fn override_rule(rule: &mut Rule, path: &str, raw: RawRule) -> Result<()> {
    if let Some(table) = raw.table {
        rule.table = TableName::parse(&table).map_err(|problem| {
            ConfigError::invalid(
                &child(path, "table"),
                problem,
                "write \"schema.table\", or \"table\" for schema public, e.g. \"public.users\"",
            )
        })?;
    }
    if let Some(on) = raw.on {
        rule.on = operations(&child(path, "on"), &on)?;
    }
    if let Some(changed) = raw.changed {
        let key = child(path, "changed");
        non_empty_names(&key, &changed)?;
        // `changed = []` is how a file drops the default's column filter.
        rule.changed = if changed.is_empty() {
            None
        } else {
            Some(changed)
        };
    }
    if let Some(becomes) = raw.becomes {
        let key = child(path, "becomes");
        if becomes.column.trim().is_empty() {
            return Err(ConfigError::invalid(
                &child(&key, "column"),
                "is empty",
                "name the column whose new value is checked, e.g. \"status\"",
            ));
        }
        if becomes.values.is_empty() {
            return Err(ConfigError::invalid(
                &child(&key, "values"),
                "is empty, so the rule could never fire",
                "list the value(s) that trigger the event, e.g. [\"completed\"]",
            ));
        }
        rule.becomes = Some(Becomes {
            column: becomes.column,
            values: becomes.values,
        });
    }
    if let Some(params) = raw.params {
        let key = child(path, "params");
        if params.0.is_empty() {
            return Err(ConfigError::invalid(
                &key,
                "is empty, so the webhook would carry no parameters",
                "map each parameter to a column, e.g. `params = { user_id = \"id\" }`",
            ));
        }
        let mut built = Vec::with_capacity(params.0.len());
        for (name, column) in params.0 {
            if column.trim().is_empty() {
                return Err(ConfigError::invalid(
                    &child(&key, &name),
                    "is empty",
                    "name the column the parameter's value is read from",
                ));
            }
            built.push(Param { name, column });
        }
        rule.params = built;
    }
    Ok(())
}

fn operations(key: &str, names: &[String]) -> Result<Vec<Operation>> {
    if names.is_empty() {
        return Err(ConfigError::invalid(
            key,
            "is empty, so the rule could never fire",
            "list at least one of \"insert\", \"update\", \"delete\"",
        ));
    }
    let mut seen = HashSet::new();
    let mut ops = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let op = Operation::parse(name).ok_or_else(|| {
            ConfigError::invalid(
                &index(key, i),
                format!("{name:?} is not an operation"),
                "use \"insert\", \"update\" or \"delete\"",
            )
        })?;
        if seen.insert(op) {
            ops.push(op);
        }
    }
    Ok(ops)
}

fn non_empty_names(key: &str, names: &[String]) -> Result<()> {
    match names.iter().position(|n| n.trim().is_empty()) {
        Some(i) => Err(ConfigError::invalid(
            &index(key, i),
            "is empty",
            "write a column name",
        )),
        None => Ok(()),
    }
}
