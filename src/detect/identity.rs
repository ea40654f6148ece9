//! The once-per-table warning that a table's updates arrive without the old row.

use std::collections::BTreeSet;
use std::sync::Mutex;

use tracing::warn;

use crate::config::TableName;
use crate::pg::admin::quoted_table;
use crate::pgoutput::Relation;

/// Tables already warned about in this process: the condition holds for every update of the
/// table until someone fixes it, and one line says all there is to say.
static WARNED: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

/// Logs, the first time for `relation`'s table, that it needs REPLICA IDENTITY FULL and how to
/// set it. Returns whether it logged.
pub(super) fn warn_old_row_unknown(relation: &Relation) -> bool {
    let table = relation.qualified_name();
    // A panic elsewhere while holding the lock leaves a set that is still valid.
    let mut warned = WARNED.lock().unwrap_or_else(|e| e.into_inner());
    if !warned.insert(table.clone()) {
        return false;
    }
    drop(warned);
    let fix = format!(
        "ALTER TABLE {} REPLICA IDENTITY FULL;",
        quoted_table(&TableName {
            schema: relation.schema().to_owned(),
            name: relation.name.clone(),
        })
    );
    warn!(
        table = %table,
        fix = %fix,
        "table {table} needs REPLICA IDENTITY FULL to tell profile changes from bookkeeping \
         updates (and a status change from a repeat of it): its updates arrive without the old \
         row, so rules that compare old and new values fire on every matching update; fix: {fix}"
    );
    true
}
