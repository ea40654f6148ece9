//! Row changes with their relation attached, so values can be read by column name.

use std::fmt::Write as _;
use std::sync::Arc;

use serde_json::{Map, Value as Json};

use super::relations::Relation;
use super::tuple::Value;

/// The values of one row, with the relation description they were decoded against.
///
/// The decoder checks that there is one value per column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    relation: Arc<Relation>,
    values: Vec<Value>,
}

impl Row {
    /// Pairs `values` with `relation`; `None` if the counts differ.
    pub fn new(relation: Arc<Relation>, values: Vec<Value>) -> Option<Row> {
        (relation.columns.len() == values.len()).then_some(Row { relation, values })
    }

    /// The relation the row belongs to.
    pub fn relation(&self) -> &Arc<Relation> {
        &self.relation
    }

    /// The values in column order.
    pub fn values(&self) -> &[Value] {
        &self.values
    }

    /// The value at column position `index`.
    pub fn get_index(&self, index: usize) -> Option<&Value> {
        self.values.get(index)
    }

    /// The value of the column called `name`.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.get_index(self.relation.column_index(name)?)
    }

    /// The text of the column called `name`; `None` if absent, NULL, unchanged TOAST or binary.
    pub fn text(&self, name: &str) -> Option<&str> {
        self.get(name)?.as_text()
    }

    /// `(column name, value)` in column order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.relation
            .columns
            .iter()
            .map(|c| c.name.as_str())
            .zip(self.values.iter())
    }

    /// Number of columns.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether the relation has no columns.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// `(name, text)` per column: NULL is `None`, binary is `\x`-prefixed hex like bytea's
    /// output. Unchanged TOASTed columns are left out, since their value is unknown, not NULL.
    pub fn to_pairs(&self) -> Vec<(String, Option<String>)> {
        self.iter()
            .filter_map(|(name, v)| Some((name.to_owned(), value_text(v)?)))
            .collect()
    }

    /// A JSON object of the same pairs as [`Self::to_pairs`], NULL as `null`.
    pub fn to_json(&self) -> Json {
        let map: Map<String, Json> = self
            .to_pairs()
            .into_iter()
            .map(|(name, text)| (name, text.map_or(Json::Null, Json::String)))
            .collect();
        Json::Object(map)
    }

    /// Replaces unchanged-TOAST values with the value at the same position in `old`, when `old`
    /// has one. Counts are equal because both rows belong to one relation description.
    pub(crate) fn fill_unchanged_from(&mut self, old: &Row) {
        for (new, old) in self.values.iter_mut().zip(old.values.iter()) {
            if *new == Value::UnchangedToast && *old != Value::UnchangedToast {
                *new = old.clone();
            }
        }
    }
}

/// `None` for unchanged TOAST; `Some(None)` for NULL.
fn value_text(v: &Value) -> Option<Option<String>> {
    match v {
        Value::Null => Some(None),
        Value::UnchangedToast => None,
        Value::Text(s) => Some(Some(s.clone())),
        Value::Binary(b) => {
            let mut hex = String::with_capacity(2 + 2 * b.len());
            hex.push_str("\\x");
            for byte in b {
                // Writing to a String cannot fail.
                let _ = write!(hex, "{byte:02x}");
            }
            Some(Some(hex))
        }
    }
}

/// What happened to a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChangeKind {
    /// INSERT
    Insert,
    /// UPDATE
    Update,
    /// DELETE
    Delete,
}

impl ChangeKind {
    /// `insert`, `update` or `delete`, as the configuration spells them.
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Insert => "insert",
            ChangeKind::Update => "update",
            ChangeKind::Delete => "delete",
        }
    }
}

/// One inserted, updated or deleted row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowChange {
    /// The relation as described when the change was decoded.
    pub relation: Arc<Relation>,
    /// Insert, update or delete.
    pub kind: ChangeKind,
    /// The new row (insert and update). Unchanged TOASTed values are filled in from a full old
    /// row when there is one; otherwise they stay [`Value::UnchangedToast`].
    pub new: Option<Row>,
    /// The old row or key (delete; update when the server sent one).
    pub old: Option<Row>,
    /// `old` holds only the replica identity columns (the others read as NULL).
    pub old_is_key_only: bool,
}

impl RowChange {
    /// Whether the column called `name` changed: `Some(false)` for an unchanged TOASTed value,
    /// a comparison when the full old row is known, `None` when it cannot be told (no full old
    /// row, not an update, or no such column).
    pub fn column_changed(&self, name: &str) -> Option<bool> {
        if self.kind != ChangeKind::Update {
            return None;
        }
        let new = self.new.as_ref()?.get(name)?;
        if *new == Value::UnchangedToast {
            return Some(false);
        }
        let old = self
            .old
            .as_ref()
            .filter(|_| !self.old_is_key_only)?
            .get(name)?;
        match old {
            Value::UnchangedToast => None,
            old => Some(old != new),
        }
    }

    /// `{"schema", "table", "kind", "new", "old", "old_is_key_only"}`, rows as [`Row::to_json`].
    pub fn to_json(&self) -> Json {
        serde_json::json!({
            "schema": self.relation.schema(),
            "table": self.relation.name,
            "kind": self.kind.as_str(),
            "new": self.new.as_ref().map(Row::to_json),
            "old": self.old.as_ref().map(Row::to_json),
            "old_is_key_only": self.old_is_key_only,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pgoutput::{Column, ReplicaIdentity};

    fn users() -> Arc<Relation> {
        let col = |name: &str, is_key| Column {
            is_key,
            name: name.into(),
            type_oid: 25,
            type_modifier: -1,
        };
        Arc::new(Relation {
            oid: 16384,
            namespace: "public".into(),
            name: "users".into(),
            replica_identity: ReplicaIdentity::Full,
            columns: vec![col("id", true), col("email", false), col("bio", false)],
        })
    }

    fn text(s: &str) -> Value {
        Value::Text(s.into())
    }

    #[test]
    fn reads_by_name_and_position() {
        let row = Row::new(users(), vec![text("7"), Value::Null, Value::UnchangedToast]).unwrap();
        assert_eq!(row.text("id"), Some("7"));
        assert_eq!(row.get("email"), Some(&Value::Null));
        assert_eq!(row.get_index(2), Some(&Value::UnchangedToast));
        assert_eq!(row.get("nope"), None);
        assert_eq!(
            row.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            ["id", "email", "bio"]
        );
        assert!(Row::new(users(), vec![]).is_none());
    }

    #[test]
    fn serializes_without_unchanged_toast() {
        let row = Row::new(
            users(),
            vec![
                Value::Binary(vec![0, 0xab]),
                Value::Null,
                Value::UnchangedToast,
            ],
        )
        .unwrap();
        assert_eq!(
            row.to_pairs(),
            vec![
                ("id".into(), Some("\\x00ab".into())),
                ("email".into(), None)
            ]
        );
        assert_eq!(
            row.to_json(),
            serde_json::json!({"id": "\\x00ab", "email": null})
        );
    }

    #[test]
    fn column_changed_respects_toast_and_key_only() {
        let new = Row::new(users(), vec![text("1"), text("b@x"), Value::UnchangedToast]).unwrap();
        let old = Row::new(users(), vec![text("1"), text("a@x"), text("bio")]).unwrap();
        let mut change = RowChange {
            relation: users(),
            kind: ChangeKind::Update,
            new: Some(new),
            old: Some(old),
            old_is_key_only: false,
        };
        assert_eq!(change.column_changed("email"), Some(true));
        assert_eq!(change.column_changed("id"), Some(false));
        assert_eq!(change.column_changed("bio"), Some(false));
        assert_eq!(change.column_changed("nope"), None);
        change.old_is_key_only = true;
        assert_eq!(change.column_changed("email"), None);
        assert_eq!(change.column_changed("bio"), Some(false));
        let json = change.to_json();
        assert_eq!(json["table"], "users");
        assert_eq!(json["kind"], "update");
        assert_eq!(json["new"]["email"], "b@x");
    }
}
