//! Reads what the checks need from the server. The only I/O of `check`: the checks themselves
//! (`checks`) are pure functions of these facts and the config.
//!
//! A failed query does not end the inspection: it becomes that fact's `Err`, which the checks
//! report as a problem, so one missing privilege does not hide every other finding.

use crate::config::{Config, TableName};
use crate::pg::admin::{
    Admin, AdminError, PublicationInfo, RoleInfo, ServerSettings, SlotInfo, TableInfo,
};
use crate::pg::dsn::ConnectParams;

/// What the server told us; each `Err` is the failed query's message (with its hint).
#[derive(Debug, Clone)]
pub struct Facts {
    /// `host:port`, for the connection finding (never the password).
    pub address: String,
    /// The user the connection string names: the role to grant to when `role` failed.
    pub user: String,
    pub server: Result<ServerSettings, String>,
    pub role: Result<RoleInfo, String>,
    /// Every table the rules read, in `Config::tables` order; `None`: no such table.
    pub tables: Vec<(TableName, Result<Option<TableInfo>, String>)>,
    pub publication: Result<PublicationFacts, String>,
    pub slot: Result<Option<SlotInfo>, String>,
}

#[derive(Debug, Clone)]
pub struct PublicationFacts {
    /// `None`: the publication does not exist.
    pub info: Option<PublicationInfo>,
    /// The rule tables (of those that exist) it does not cover yet.
    pub missing: Vec<TableName>,
    /// `Admin::publication_fixes` for the existing rule tables.
    pub fixes: Vec<String>,
}

impl Facts {
    pub async fn gather(admin: &Admin, params: &ConnectParams, config: &Config) -> Facts {
        let mut tables = Vec::new();
        for table in config.tables() {
            let info = admin.table_info(&table).await.map_err(describe);
            tables.push((table, info));
        }
        let existing: Vec<TableName> = tables
            .iter()
            .filter(|(_, info)| matches!(info, Ok(Some(_))))
            .map(|(t, _)| t.clone())
            .collect();
        let name = &config.postgres.publication;
        Facts {
            address: params.addr(),
            user: params.user.clone(),
            server: admin.server_settings().await.map_err(describe),
            role: admin.current_role().await.map_err(describe),
            tables,
            publication: publication(admin, name, &existing).await.map_err(describe),
            slot: admin.slot(&config.postgres.slot).await.map_err(describe),
        }
    }
}

async fn publication(
    admin: &Admin,
    name: &str,
    tables: &[TableName],
) -> Result<PublicationFacts, AdminError> {
    let info = admin.publication_info(name).await?;
    let missing = match info {
        Some(_) => {
            let covered = admin.publication_tables(name).await?;
            tables
                .iter()
                .filter(|t| !covered.contains(t))
                .cloned()
                .collect()
        }
        None => tables.to_vec(),
    };
    let fixes = if tables.is_empty() {
        // CREATE PUBLICATION … FOR TABLE needs at least one table.
        Vec::new()
    } else {
        admin.publication_fixes(name, tables).await?
    };
    Ok(PublicationFacts {
        info,
        missing,
        fixes,
    })
}

fn describe(e: AdminError) -> String {
    match e.hint() {
        Some(hint) => format!("{e} ({hint})"),
        None => e.to_string(),
    }
}
