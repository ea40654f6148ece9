//! `teardown`: drop the bridge's replication slot (and, on request, its publication) so an
//! abandoned slot cannot make PostgreSQL keep WAL until its disk fills.
//!
//! It refuses while webhooks are still owed (the outbox is not empty) unless forced: those
//! events are safe in the state directory, but once the slot is gone nothing new is captured and
//! a re-created slot starts from "now".

use std::io::Write;

use crate::config::Config;
use crate::pg::admin::Admin;
use crate::pg::dsn::ConnectParams;
use crate::pg::replication::quote_ident;
use crate::store::{Store, StoreError};
use crate::Error;

#[derive(Debug, Clone, Copy, Default)]
pub struct TeardownOptions {
    /// Drop the slot even if the outbox still holds undelivered events.
    pub force: bool,
    /// Also drop the publication.
    pub drop_publication: bool,
}

/// Runs teardown, printing what it does to `out`.
pub async fn run(config: &Config, opts: TeardownOptions, out: &mut dyn Write) -> Result<(), Error> {
    // A bridge that never ran here has no state directory: nothing is owed from it, and
    // teardown should not create one.
    let opened = if config.state.dir.exists() {
        Some(Store::open(&config.state.dir))
    } else {
        None
    };
    let pending = match opened {
        None => None,
        Some(Ok(store)) => Some(store.pending_counts()),
        Some(Err(StoreError::Locked { .. })) => {
            return Err(Error::definite(
                "the bridge is running: its state directory is in use",
                Some("stop `fuse-cdc-bridge run` first, then tear down".to_string()),
            ))
        }
        Some(Err(e)) => return Err(e.into()),
    };
    let owed: u64 = pending.iter().flat_map(|p| p.values()).sum();
    if owed > 0 && !opts.force {
        let per_endpoint: Vec<String> = pending
            .iter()
            .flatten()
            .map(|(endpoint, n)| format!("{endpoint}: {n}"))
            .collect();
        return Err(Error::definite(
            format!(
                "{owed} webhook(s) are still owed ({}); the slot was left in place",
                per_endpoint.join(", ")
            ),
            Some("let `run` deliver them first (see `status`), or pass --force to drop the slot anyway".into()),
        ));
    }

    let params = ConnectParams::parse(config.postgres.url.expose())?;
    let admin = Admin::connect(&params).await?;
    let slot_name = &config.postgres.slot;
    match admin.slot(slot_name).await? {
        Some(slot) => {
            if let Some(pid) = slot.active_pid {
                return Err(Error::definite(
                    format!("replication slot {slot_name:?} is in use by process {pid}"),
                    Some("stop the consumer reading it (another bridge?) first".to_string()),
                ));
            }
            writeln!(out, "run: SELECT pg_drop_replication_slot('{slot_name}');")
                .map_err(|e| Error::io("writing to stdout", e))?;
            admin.drop_slot(slot_name).await?;
            if owed > 0 {
                writeln!(out, "note: {owed} undelivered webhook(s) stay in the state directory; `run` would deliver them after `setup` re-creates the slot")
                    .map_err(|e| Error::io("writing to stdout", e))?;
            }
        }
        None => writeln!(out, "ok: replication slot {slot_name:?} does not exist")
            .map_err(|e| Error::io("writing to stdout", e))?,
    }
    if opts.drop_publication {
        let publication = &config.postgres.publication;
        if admin.publication_exists(publication).await? {
            let sql = format!("DROP PUBLICATION {};", quote_ident(publication));
            writeln!(out, "run: {sql}").map_err(|e| Error::io("writing to stdout", e))?;
            admin.execute(&sql).await?;
        } else {
            writeln!(out, "ok: publication {publication:?} does not exist")
                .map_err(|e| Error::io("writing to stdout", e))?;
        }
    }
    writeln!(out, "teardown: done").map_err(|e| Error::io("writing to stdout", e))?;
    Ok(())
}
