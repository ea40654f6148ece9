//! Per-table prerequisites: the rule tables exist and are readable, the columns the rules use
//! exist, and tables whose rules compare old and new values log the whole old row.

use super::role_name;
use crate::config::{Config, Operation, Rule, TableName};
use crate::pg::admin::{quoted_table, TableInfo};
use crate::pg::replication::quote_ident;
use crate::preflight::facts::Facts;
use crate::preflight::report::{AutoFix, Check, Finding};

pub(super) fn findings(config: &Config, facts: &Facts) -> Vec<Finding> {
    let role = role_name(facts);
    let (mut access, mut columns, mut identity) = (Vec::new(), Vec::new(), Vec::new());
    for (table, info) in &facts.tables {
        let rules: Vec<&Rule> = config
            .rules()
            .iter()
            .filter(|r| r.table == *table)
            .collect();
        match info {
            Err(e) => access.push(Finding::definite(
                Check::Table,
                format!("cannot inspect the table {table}: {e}"),
            )),
            Ok(None) => access.push(missing_table(table, &rules)),
            Ok(Some(info)) => {
                access.push(readable(table, info, role));
                for rule in &rules {
                    columns.extend(rule_columns(rule, info));
                }
                identity.extend(replica_identity(table, info, &rules));
            }
        }
    }
    access.extend(columns);
    access.extend(identity);
    access
}

/// `events."user.updated"`: where a rule lives in the config file.
pub(crate) fn rule_key(rule: &Rule) -> String {
    // Every event type contains a dot, so the key is always quoted.
    format!("events.\"{}\"", rule.event_type)
}

fn missing_table(table: &TableName, rules: &[&Rule]) -> Finding {
    let keys: Vec<String> = rules.iter().map(|r| rule_key(r) + ".table").collect();
    Finding::definite(
        Check::Table,
        format!("the table {table} does not exist ({})", keys.join(", ")),
    )
    .manual(
        "point these keys at the right table (\"schema.table\", names are case-sensitive), or \
         create the table",
    )
}

fn readable(table: &TableName, info: &TableInfo, role: &str) -> Finding {
    if info.can_select && info.schema_usage {
        return Finding::ok(
            Check::Table,
            format!("the table {table} exists and {role} can read it"),
        );
    }
    let mut f = Finding::definite(
        Check::SelectPrivilege,
        format!("the role {role} cannot read the table {table}"),
    );
    if !info.schema_usage {
        f = f.sql(format!(
            "GRANT USAGE ON SCHEMA {} TO {};",
            quote_ident(&table.schema),
            quote_ident(role)
        ));
    }
    if !info.can_select {
        f = f.sql(format!(
            "GRANT SELECT ON {} TO {};",
            quoted_table(table),
            quote_ident(role)
        ));
    }
    f
}

/// Every column a rule reads, with the config key that names it.
fn used_columns(rule: &Rule) -> Vec<(String, &str)> {
    let key = rule_key(rule);
    let mut used = Vec::new();
    for column in rule.changed.iter().flatten() {
        used.push((format!("{key}.changed"), column.as_str()));
    }
    if let Some(becomes) = &rule.becomes {
        used.push((format!("{key}.becomes.column"), becomes.column.as_str()));
    }
    for param in &rule.params {
        let bare = param
            .name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        let name = if bare {
            param.name.clone()
        } else {
            format!(
                "\"{}\"",
                param.name.replace('\\', "\\\\").replace('"', "\\\"")
            )
        };
        used.push((format!("{key}.params.{name}"), param.column.as_str()));
    }
    used
}

fn rule_columns(rule: &Rule, info: &TableInfo) -> Vec<Finding> {
    let table = &rule.table;
    let missing: Vec<Finding> = used_columns(rule)
        .into_iter()
        .filter(|(_, column)| !info.columns.iter().any(|c| c == column))
        .map(|(key, column)| {
            Finding::definite(
                Check::Columns,
                format!("the table {table} has no column {column:?} ({key})"),
            )
            .manual(format!(
                "edit {key} in the config file; {table} has the columns {}",
                info.columns.join(", ")
            ))
        })
        .collect();
    if missing.is_empty() {
        return vec![Finding::ok(
            Check::Columns,
            format!(
                "{}: {table} has every column the rule reads",
                rule.event_type
            ),
        )];
    }
    missing
}

/// Rules that compare the old row with the new one on updates.
fn needs_old_values(rule: &Rule) -> bool {
    rule.on.contains(&Operation::Update) && (rule.changed.is_some() || rule.becomes.is_some())
}

fn replica_identity(table: &TableName, info: &TableInfo, rules: &[&Rule]) -> Option<Finding> {
    let needing: Vec<&Rule> = rules
        .iter()
        .copied()
        .filter(|r| needs_old_values(r))
        .collect();
    if needing.is_empty() {
        return None;
    }
    let names: Vec<String> = needing.iter().map(|r| r.event_type.to_string()).collect();
    if info.replica_identity == 'f' {
        return Some(Finding::ok(
            Check::ReplicaIdentity,
            format!(
                "the table {table} has REPLICA IDENTITY FULL ({} sees old values)",
                names.join(", ")
            ),
        ));
    }
    let identity = match info.replica_identity {
        'n' => "NOTHING",
        'i' => "USING INDEX",
        _ => "DEFAULT",
    };
    let consequences: Vec<String> = needing.iter().map(|r| consequence(r)).collect();
    Some(
        Finding::warning(
            Check::ReplicaIdentity,
            format!(
                "the table {table} has REPLICA IDENTITY {identity}, so its updates carry no old \
                 values: {}",
                consequences.join("; ")
            ),
        )
        .sql(format!(
            "ALTER TABLE {} REPLICA IDENTITY FULL;",
            quoted_table(table)
        ))
        .auto(AutoFix::WithReplicaIdentityFull),
    )
}

fn consequence(rule: &Rule) -> String {
    match &rule.becomes {
        Some(b) => format!(
            "{} cannot tell whether {} already was {} and fires on every update of such a row",
            rule.event_type,
            b.column,
            b.values.join(" or ")
        ),
        None => format!(
            "{} cannot tell which columns changed and fires on every update",
            rule.event_type
        ),
    }
}
