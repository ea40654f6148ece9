//! Dead letters per endpoint, for status and metrics.
//!
//! Counted by scanning keys on demand rather than kept in memory: dead letters are meant to be
//! few (an operator retries or purges them), and a scan cannot drift from what is stored.

use std::collections::BTreeMap;

use super::{keys, Store, StoreError};

impl Store {
    /// Dead letters per endpoint (only endpoints that have some).
    pub fn dead_letter_counts(&self) -> Result<BTreeMap<String, u64>, StoreError> {
        let mut counts = BTreeMap::new();
        for item in self.db.scan_prefix(keys::DEAD).keys() {
            let key = item.map_err(StoreError::Write)?;
            if let Some((endpoint, _)) = keys::parse_entry(keys::DEAD, &key) {
                *counts.entry(endpoint).or_default() += 1;
            }
        }
        Ok(counts)
    }
}
