//! Relation metadata as pgoutput describes it, and the cache that keeps the latest description of
//! each relation for the rest of the session.

use std::collections::HashMap;
use std::sync::Arc;

/// A table as described by a Relation message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    /// The relation's OID, which later change messages refer to.
    pub oid: u32,
    /// The schema as sent: PostgreSQL sends an empty string for `pg_catalog`; see [`Self::schema`].
    pub namespace: String,
    /// The table name.
    pub name: String,
    /// Which old values the server sends on UPDATE and DELETE.
    pub replica_identity: ReplicaIdentity,
    /// The published columns, in tuple order (dropped and generated columns are absent).
    pub columns: Vec<Column>,
}

impl Relation {
    /// The schema name, with the wire's empty string spelled out as `pg_catalog`.
    pub fn schema(&self) -> &str {
        if self.namespace.is_empty() {
            "pg_catalog"
        } else {
            &self.namespace
        }
    }

    /// `schema.table`, as the configuration names tables.
    pub fn qualified_name(&self) -> String {
        format!("{}.{}", self.schema(), self.name)
    }

    /// The position of the column called `name`.
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }
}

/// One column of a [`Relation`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// Part of the replica identity (for REPLICA IDENTITY FULL, every column is).
    pub is_key: bool,
    /// The column name.
    pub name: String,
    /// The OID of the column's data type.
    pub type_oid: u32,
    /// The type modifier (`atttypmod`), -1 when there is none.
    pub type_modifier: i32,
}

/// `pg_class.relreplident`: what the old tuple of an UPDATE or DELETE holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReplicaIdentity {
    /// `d`: the primary key columns.
    Default,
    /// `n`: nothing.
    Nothing,
    /// `f`: every column; transition rules need this.
    Full,
    /// `i`: the columns of a chosen unique index.
    Index,
}

impl ReplicaIdentity {
    /// Parses the wire byte; `None` for a value pg_class never holds.
    pub fn from_byte(b: u8) -> Option<Self> {
        match b {
            b'd' => Some(Self::Default),
            b'n' => Some(Self::Nothing),
            b'f' => Some(Self::Full),
            b'i' => Some(Self::Index),
            _ => None,
        }
    }

    /// The wire byte.
    pub fn as_byte(self) -> u8 {
        match self {
            Self::Default => b'd',
            Self::Nothing => b'n',
            Self::Full => b'f',
            Self::Index => b'i',
        }
    }
}

/// The latest [`Relation`] for each OID seen on a replication session.
///
/// The server sends a Relation message before the first change to a table on each session and
/// again after its schema changes, so a later description replaces the earlier one. Rows decoded
/// earlier keep the `Arc` of the description they were decoded with.
#[derive(Debug, Default, Clone)]
pub struct RelationCache {
    by_oid: HashMap<u32, Arc<Relation>>,
}

impl RelationCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// Stores `relation`, replacing any earlier description of the same OID.
    pub fn insert(&mut self, relation: Relation) -> Arc<Relation> {
        let relation = Arc::new(relation);
        self.by_oid.insert(relation.oid, Arc::clone(&relation));
        relation
    }

    /// The latest description of `oid`.
    pub fn get(&self, oid: u32) -> Option<&Arc<Relation>> {
        self.by_oid.get(&oid)
    }

    /// How many relations are known.
    pub fn len(&self) -> usize {
        self.by_oid.len()
    }

    /// Whether no relation is known.
    pub fn is_empty(&self) -> bool {
        self.by_oid.is_empty()
    }

    /// Forgets everything, as a new replication session must.
    pub fn clear(&mut self) {
        self.by_oid.clear();
    }

    /// All known relations, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Relation>> {
        self.by_oid.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel(oid: u32, namespace: &str, cols: &[&str]) -> Relation {
        Relation {
            oid,
            namespace: namespace.into(),
            name: "users".into(),
            replica_identity: ReplicaIdentity::Default,
            columns: cols
                .iter()
                .map(|c| Column {
                    is_key: *c == "id",
                    name: (*c).into(),
                    type_oid: 25,
                    type_modifier: -1,
                })
                .collect(),
        }
    }

    #[test]
    fn later_relation_replaces_earlier() {
        let mut cache = RelationCache::new();
        let old = cache.insert(rel(1, "public", &["id"]));
        cache.insert(rel(2, "public", &["id"]));
        cache.insert(rel(1, "public", &["id", "email"]));
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.get(1).unwrap().columns.len(), 2);
        assert_eq!(old.columns.len(), 1, "earlier Arc is untouched");
        assert_eq!(cache.get(1).unwrap().column_index("email"), Some(1));
        assert!(cache.get(3).is_none());
        cache.clear();
        assert!(cache.is_empty());
    }

    #[test]
    fn empty_namespace_is_pg_catalog() {
        assert_eq!(rel(1, "", &[]).qualified_name(), "pg_catalog.users");
        assert_eq!(rel(1, "app", &[]).qualified_name(), "app.users");
    }

    #[test]
    fn replica_identity_bytes_round_trip() {
        for b in [b'd', b'n', b'f', b'i'] {
            assert_eq!(ReplicaIdentity::from_byte(b).unwrap().as_byte(), b);
        }
        assert_eq!(ReplicaIdentity::from_byte(b'x'), None);
    }
}
