//! An event's parameters: the rule's columns read from the changed row.

use std::fmt::Write as _;

use crate::config::Rule;
use crate::event::EventParam;
use crate::pgoutput::{ChangeKind, RowChange, Value};

/// `int8`, `int2`, `int4`: rendered as JSON numbers.
const INTEGER_TYPES: [u32; 3] = [20, 21, 23];

/// The rule's parameters in rule order, from the new row (the old row for a delete). A value that
/// is NULL or not known (an unchanged TOASTed value with no full old row, or a non-key column of
/// a key-only old row, which reads as NULL) is `None`: delivery dead-letters such an event naming
/// the column rather than send an empty value.
pub(super) fn params(rule: &Rule, change: &RowChange) -> Vec<EventParam> {
    let row = match change.kind {
        ChangeKind::Delete => change.old.as_ref(),
        ChangeKind::Insert | ChangeKind::Update => change.new.as_ref(),
    };
    rule.params
        .iter()
        .map(|param| {
            let column = change
                .relation
                .column_index(&param.column)
                .and_then(|i| change.relation.columns.get(i));
            EventParam {
                name: param.name.clone(),
                value: row.and_then(|r| r.get(&param.column)).and_then(text),
                integer: column.is_some_and(|c| INTEGER_TYPES.contains(&c.type_oid)),
                column: param.column.clone(),
            }
        })
        .collect()
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::Text(s) => Some(s.clone()),
        Value::Null | Value::UnchangedToast => None,
        // Only with pgoutput's `binary` option, which capture does not set; shown as bytea's
        // hex output rather than lost.
        Value::Binary(bytes) => {
            let mut hex = String::with_capacity(2 + 2 * bytes.len());
            hex.push_str("\\x");
            for byte in bytes {
                // Writing to a String cannot fail.
                let _ = write!(hex, "{byte:02x}");
            }
            Some(hex)
        }
    }
}
