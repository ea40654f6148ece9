//! Server-wide prerequisites: version, wal_level, replication capacity, encoding, the role.

use super::role_name;
use crate::pg::admin::ServerSettings;
use crate::pg::replication::quote_ident;
use crate::preflight::facts::Facts;
use crate::preflight::report::{Check, Finding};

const RESTART: &str = "restart PostgreSQL (this setting only changes at server start)";

pub(super) fn findings(facts: &Facts) -> Vec<Finding> {
    let database = match &facts.server {
        Ok(s) => format!(", database {}", s.database),
        Err(_) => String::new(),
    };
    let mut out = vec![Finding::ok(
        Check::Connection,
        format!(
            "connected to {} as {}{database}",
            facts.address,
            role_name(facts)
        ),
    )];
    match &facts.server {
        Ok(s) => {
            out.push(version(s));
            out.push(wal_level(s));
            out.extend(capacity(s, facts));
            out.push(encoding(s));
        }
        Err(e) => out.push(Finding::definite(
            Check::ServerVersion,
            format!("cannot read the server settings: {e}"),
        )),
    }
    out.push(replication_privilege(facts));
    out
}

fn version(s: &ServerSettings) -> Finding {
    if s.version_num < 100_000 {
        Finding::definite(
            Check::ServerVersion,
            format!(
                "PostgreSQL {} is too old: pgoutput logical replication needs version 10 or later",
                s.version
            ),
        )
        .manual("upgrade PostgreSQL")
    } else if s.version_num < 140_000 {
        Finding::info(
            Check::ServerVersion,
            format!(
                "PostgreSQL {}: supported; the pgoutput `messages` option needs 14 (the bridge \
                 does not rely on it)",
                s.version
            ),
        )
    } else {
        Finding::ok(Check::ServerVersion, format!("PostgreSQL {}", s.version))
    }
}

fn wal_level(s: &ServerSettings) -> Finding {
    if s.wal_level == "logical" {
        return Finding::ok(Check::WalLevel, "wal_level is logical");
    }
    Finding::definite(
        Check::WalLevel,
        format!(
            "wal_level is {}, but logical replication needs logical",
            s.wal_level
        ),
    )
    .sql("ALTER SYSTEM SET wal_level = logical;")
    .manual(RESTART)
}

/// The bridge needs one slot and one walsender, unless it already has them.
fn capacity(s: &ServerSettings, facts: &Facts) -> Vec<Finding> {
    let slot = facts.slot.as_ref().ok().and_then(Option::as_ref);
    let need_slot = i32::from(slot.is_none());
    let need_sender = i32::from(slot.and_then(|s| s.active_pid).is_none());
    vec![
        room(
            Check::MaxReplicationSlots,
            "max_replication_slots",
            s.max_replication_slots,
            s.slots_used,
            need_slot,
            "slot",
        ),
        room(
            Check::MaxWalSenders,
            "max_wal_senders",
            s.max_wal_senders,
            s.wal_senders_used,
            need_sender,
            "walsender",
        ),
    ]
}

/// `need` (0 or 1) more of `max`, of which `used` are taken; `one` names what the bridge needs.
fn room(check: Check, setting: &str, max: i32, used: i32, need: i32, one: &str) -> Finding {
    let state = format!("{setting} is {max}, {used} in use");
    if max > 0 && max - used >= need {
        return Finding::ok(check, state);
    }
    Finding::warning(check, format!("{state}: no room for the bridge's {one}"))
        .sql(format!(
            "ALTER SYSTEM SET {setting} = {};",
            (used + need).max(10)
        ))
        .manual(RESTART)
}

fn encoding(s: &ServerSettings) -> Finding {
    if s.server_encoding == "UTF8" {
        return Finding::ok(Check::ServerEncoding, "server_encoding is UTF8");
    }
    Finding::definite(
        Check::ServerEncoding,
        format!(
            "server_encoding is {}: pgoutput sends text in the database's encoding and the bridge \
             reads UTF-8",
            s.server_encoding
        ),
    )
    .manual(format!(
        "SQL cannot change a database's encoding: dump database {} and restore it into one \
         created with ENCODING 'UTF8'",
        s.database
    ))
}

fn replication_privilege(facts: &Facts) -> Finding {
    let role = match &facts.role {
        Ok(role) => role,
        Err(e) => {
            return Finding::definite(
                Check::ReplicationPrivilege,
                format!("cannot read the role's attributes: {e}"),
            )
        }
    };
    if role.superuser {
        Finding::ok(
            Check::ReplicationPrivilege,
            format!("the role {} can replicate (superuser)", role.name),
        )
    } else if role.replication {
        Finding::ok(
            Check::ReplicationPrivilege,
            format!("the role {} can replicate (REPLICATION)", role.name),
        )
    } else {
        Finding::definite(
            Check::ReplicationPrivilege,
            format!(
                "the role {} lacks REPLICATION: it can neither create nor read a replication slot",
                role.name
            ),
        )
        .sql(format!(
            "ALTER ROLE {} REPLICATION;",
            quote_ident(&role.name)
        ))
    }
}
