//! `tail`: each committed change as one JSON line, read through a temporary slot of its own so it
//! never moves the bridge's slot or checkpoint.

use std::io::Write;
use std::time::Duration;

use serde_json::{json, Value as Json};
use tokio::sync::watch;
use tracing::info;

use crate::lsn::Lsn;
use crate::pg::admin::Admin;
use crate::pg::dsn::ConnectParams;
use crate::pg::replication::{ReplicationError, ReplicationSession, StreamEvent};
use crate::pgoutput::{pg_micros_to_rfc3339, Decoder, Item, Transaction, Value};
use crate::Error;

/// What `tail` reads.
#[derive(Debug, Clone)]
pub struct TailSettings {
    pub params: ConnectParams,
    pub publication: String,
    pub status_interval: Duration,
}

/// Streams JSON lines to `out` until `shutdown` turns true or the connection fails. Stdout is
/// flushed at each commit, and only then is the position confirmed on the temporary slot.
pub async fn run(
    settings: &TailSettings,
    out: &mut (dyn Write + Send),
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), Error> {
    let admin = Admin::connect(&settings.params).await?;
    admin.check_wal_level().await?;
    if !admin.publication_exists(&settings.publication).await? {
        return Err(Error::definite(
            format!("publication {:?} does not exist", settings.publication),
            Some("run `fuse-cdc-bridge setup --config FILE` (or create it: CREATE PUBLICATION … FOR TABLE …)".to_string()),
        ));
    }
    drop(admin);

    let mut session = ReplicationSession::connect(&settings.params, "fuse-cdc-bridge tail").await?;
    let slot = format!(
        "fuse_cdc_tail_{}_{:08x}",
        std::process::id(),
        rand::random::<u32>()
    );
    let start = session.create_temporary_slot(&slot).await?;
    let (flushed_tx, flushed_rx) = watch::channel(start);
    let mut stream = session
        .start(
            &slot,
            start,
            &settings.publication,
            settings.status_interval,
            flushed_rx,
        )
        .await?;
    info!(slot = %slot, from = %start, "tailing (temporary slot)");

    let mut watchdog = crate::capture::watchdog::Watchdog::new(settings.params.addr());
    let mut decoder = Decoder::new();
    let mut open: Option<Transaction> = None;
    loop {
        let event = tokio::select! {
            // A server that goes silent mid-frame would otherwise leave tail waiting forever.
            event = watchdog.next(&mut stream) => event?,
            _ = crate::capture::stopped(&mut shutdown) => {
                let _ = stream.close().await;
                return Ok(());
            }
        };
        let StreamEvent::Data { data, .. } = event else {
            continue;
        };
        let Some(item) = decoder.decode(&data).map_err(ReplicationError::from)? else {
            continue;
        };
        match &item {
            Item::Begin {
                xid,
                final_lsn,
                commit_time,
            } => {
                open = Some(Transaction {
                    xid: *xid,
                    final_lsn: *final_lsn,
                    commit_time: *commit_time,
                })
            }
            Item::Commit { end_lsn, .. } => {
                open = None;
                out.flush().map_err(|e| Error::io("writing to stdout", e))?;
                let _ = flushed_tx.send(*end_lsn);
            }
            _ => {
                if let Some(line) = line_for(open.as_ref(), &item) {
                    writeln!(out, "{line}").map_err(|e| Error::io("writing to stdout", e))?;
                }
            }
        }
    }
}

/// The JSON line for one item, or `None` for items that are not changes.
pub fn line_for(txn: Option<&Transaction>, item: &Item) -> Option<Json> {
    let mut line = match item {
        Item::Change(change) => {
            let unchanged: Vec<&str> = change
                .new
                .iter()
                .flat_map(|row| row.iter())
                .filter(|(_, v)| **v == Value::UnchangedToast)
                .map(|(name, _)| name)
                .collect();
            let mut line = json!({
                "op": change.kind.as_str(),
                "table": change.relation.qualified_name(),
                "new": change.new.as_ref().map(|r| r.to_json()),
                "old": change.old.as_ref().map(|r| r.to_json()),
            });
            if change.old_is_key_only {
                line["old_is_key_only"] = json!(true);
            }
            if !unchanged.is_empty() {
                line["unchanged_toast"] = json!(unchanged);
            }
            line
        }
        Item::Truncate {
            relations,
            cascade,
            restart_identity,
        } => json!({
            "op": "truncate",
            "tables": relations.iter().map(|r| r.qualified_name()).collect::<Vec<_>>(),
            "cascade": cascade,
            "restart_identity": restart_identity,
        }),
        Item::Message {
            transactional,
            lsn,
            prefix,
            content,
        } => json!({
            "op": "message",
            "transactional": transactional,
            "message_lsn": lsn.to_string(),
            "prefix": prefix,
            "content": String::from_utf8_lossy(content),
        }),
        Item::Begin { .. } | Item::Commit { .. } | Item::Relation(_) => return None,
    };
    if let Some(txn) = txn {
        line["xid"] = json!(txn.xid);
        line["commit_lsn"] = json!(txn.final_lsn.to_string());
        line["commit_time"] = json!(pg_micros_to_rfc3339(txn.commit_time));
    }
    Some(line)
}

/// Parses tail's `commit_lsn` back, for tests and scripts.
pub fn commit_lsn_of(line: &Json) -> Option<Lsn> {
    line.get("commit_lsn")?.as_str()?.parse().ok()
}
