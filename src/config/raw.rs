//! The file exactly as written: serde structs that reject unknown keys and leave defaults and
//! value checks to `validate`, which knows the key paths.
//!
//! Integers are read as `i64` so that a negative value gets our "at least 1" message rather than
//! serde's "expected u32".

use std::fmt;

use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    pub postgres: RawPostgres,
    pub state: RawState,
    #[serde(default)]
    pub http: RawHttp,
    #[serde(default)]
    pub outbox: RawOutbox,
    #[serde(default)]
    pub endpoints: Vec<RawEndpoint>,
    /// In file order (toml's `preserve_order`), so the first bad rule is reported first.
    #[serde(default)]
    pub events: Ordered<RawRule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPostgres {
    pub url: String,
    pub slot: Option<String>,
    pub publication: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawState {
    pub dir: String,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHttp {
    pub listen: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawOutbox {
    pub max_pending: Option<i64>,
    pub flush_interval: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawEndpoint {
    pub name: String,
    pub url: String,
    pub events: Option<Vec<String>>,
    pub format: Option<String>,
    pub secret: Option<String>,
    pub timeout: Option<String>,
    pub concurrency: Option<i64>,
    pub max_attempts: Option<i64>,
    pub max_age: Option<String>,
    #[serde(default)]
    pub backoff: RawBackoff,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBackoff {
    pub initial: Option<String>,
    pub max: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRule {
    pub table: Option<String>,
    pub on: Option<Vec<String>>,
    pub changed: Option<Vec<String>>,
    pub becomes: Option<RawBecomes>,
    pub params: Option<Ordered<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBecomes {
    pub column: String,
    pub values: Vec<String>,
}

/// A table's entries in the order the deserializer yields them (file order, thanks to toml's
/// `preserve_order`): a `HashMap`/`BTreeMap` would lose the order of `params`.
pub(crate) struct Ordered<T>(pub Vec<(String, T)>);

impl<T> Default for Ordered<T> {
    fn default() -> Self {
        Ordered(Vec::new())
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Ordered<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct OrderedVisitor<T>(std::marker::PhantomData<T>);

        impl<'de, T: Deserialize<'de>> Visitor<'de> for OrderedVisitor<T> {
            type Value = Ordered<T>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a table")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut entries = Vec::new();
                while let Some((key, value)) = map.next_entry()? {
                    entries.push((key, value));
                }
                Ok(Ordered(entries))
            }
        }

        deserializer.deserialize_map(OrderedVisitor(std::marker::PhantomData))
    }
}
