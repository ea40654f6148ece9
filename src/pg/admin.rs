//! Ordinary SQL over tokio-postgres: prerequisites, the publication and the slot.
//!
//! Uses the same connection string as the replication connection, without `replication=database`.

use crate::config::TableName;
use crate::lsn::Lsn;
use crate::pg::dsn::ConnectParams;
use crate::pg::replication::quote_ident;
use crate::pg::wire::WireError;

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error(transparent)]
    Connect(#[from] WireError),
    #[error("query failed: {}", with_cause(.0))]
    Query(#[source] tokio_postgres::Error),
    #[error("the connection to PostgreSQL closed during the check (a restart, or the network)")]
    ConnectionLost,
    #[error("wal_level is {actual:?}, but logical replication needs \"logical\"")]
    WalLevel { actual: String },
    #[error("the server returned an unreadable {what}: {value:?}")]
    Unreadable { what: &'static str, value: String },
    #[error("replication slot {name:?} uses plugin {plugin:?}, not pgoutput")]
    WrongPlugin { name: String, plugin: String },
    #[error("replication slot {name:?} belongs to database {found:?}, not {expected:?}")]
    WrongDatabase {
        name: String,
        found: String,
        expected: String,
    },
}

impl AdminError {
    pub fn is_transient(&self) -> bool {
        match self {
            AdminError::Connect(e) => e.is_transient(),
            AdminError::Query(e) => e.is_closed() || e.code().is_none(),
            AdminError::ConnectionLost => true,
            _ => false,
        }
    }

    pub fn hint(&self) -> Option<String> {
        match self {
            AdminError::Connect(e) => e.hint(),
            AdminError::WalLevel { .. } => Some(
                "run ALTER SYSTEM SET wal_level = logical; then restart PostgreSQL".into(),
            ),
            AdminError::WrongPlugin { name, .. } | AdminError::WrongDatabase { name, .. } => Some(format!(
                "the slot {name:?} was made for something else: configure another [postgres].slot, or drop it with SELECT pg_drop_replication_slot('{name}') if it is abandoned"
            )),
            AdminError::Query(e) => e
                .as_db_error()
                .and_then(|db| db.hint().map(str::to_string)),
            AdminError::Unreadable { .. } => None,
            AdminError::ConnectionLost => {
                Some("the bridge checks again with backoff; nothing to do unless it persists".into())
            }
        }
    }
}

/// A row of `pg_replication_slots`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotInfo {
    pub name: String,
    pub plugin: Option<String>,
    pub database: Option<String>,
    pub temporary: bool,
    pub active_pid: Option<i32>,
    pub confirmed_flush_lsn: Option<Lsn>,
    pub restart_lsn: Option<Lsn>,
    /// `reserved`, `extended`, `unreserved` or `lost` (PostgreSQL 13+).
    pub wal_status: Option<String>,
    /// WAL the server keeps for this slot: current WAL position minus `restart_lsn`.
    pub retained_bytes: Option<i64>,
}

/// Server settings the prerequisites depend on, and how much of the replication capacity is used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSettings {
    /// `server_version_num`, e.g. 150004.
    pub version_num: i32,
    /// `server_version`, e.g. "15.4 (Debian 15.4-1)".
    pub version: String,
    pub wal_level: String,
    pub server_encoding: String,
    pub max_replication_slots: i32,
    pub max_wal_senders: i32,
    /// Rows of `pg_replication_slots`, whatever their kind.
    pub slots_used: i32,
    /// Rows of `pg_stat_replication`: walsenders streaming now.
    pub wal_senders_used: i32,
    pub database: String,
}

/// The session's role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleInfo {
    pub name: String,
    pub superuser: bool,
    pub replication: bool,
}

/// What the bridge needs to know about one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableInfo {
    /// `relreplident`: `d` default, `n` nothing, `f` full, `i` index.
    pub replica_identity: char,
    /// Live columns, in table order.
    pub columns: Vec<String>,
    /// The session's role may SELECT from it.
    pub can_select: bool,
    /// The session's role has USAGE on its schema.
    pub schema_usage: bool,
}

/// A row of `pg_publication`: which operations it publishes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicationInfo {
    pub all_tables: bool,
    pub insert: bool,
    pub update: bool,
    pub delete: bool,
    pub truncate: bool,
}

/// An ordinary SQL connection.
pub struct Admin {
    client: tokio_postgres::Client,
}

impl Admin {
    /// Whether the connection has ended (answers read from it afterwards are failures, not
    /// facts about the database).
    pub fn is_closed(&self) -> bool {
        self.client.is_closed()
    }

    pub async fn connect(params: &ConnectParams) -> Result<Admin, AdminError> {
        let client = crate::pg::wire::connect_sql(params).await?;
        Ok(Admin { client })
    }

    pub fn client(&self) -> &tokio_postgres::Client {
        &self.client
    }

    async fn scalar(&self, sql: &str) -> Result<String, AdminError> {
        let row = self
            .client
            .query_one(sql, &[])
            .await
            .map_err(AdminError::Query)?;
        row.try_get::<_, String>(0).map_err(AdminError::Query)
    }

    pub async fn current_database(&self) -> Result<String, AdminError> {
        self.scalar("SELECT current_database()::text").await
    }

    pub async fn wal_level(&self) -> Result<String, AdminError> {
        self.scalar("SELECT current_setting('wal_level')").await
    }

    /// Fails with a definite error unless `wal_level = logical`.
    pub async fn check_wal_level(&self) -> Result<(), AdminError> {
        let actual = self.wal_level().await?;
        if actual == "logical" {
            Ok(())
        } else {
            Err(AdminError::WalLevel { actual })
        }
    }

    pub async fn server_settings(&self) -> Result<ServerSettings, AdminError> {
        let r = self
            .client
            .query_one(
                "SELECT current_setting('server_version_num')::int, \
                        current_setting('server_version'), current_setting('wal_level'), \
                        current_setting('server_encoding'), \
                        current_setting('max_replication_slots')::int, \
                        current_setting('max_wal_senders')::int, \
                        (SELECT count(*) FROM pg_replication_slots)::int, \
                        (SELECT count(*) FROM pg_stat_replication)::int, \
                        current_database()::text",
                &[],
            )
            .await
            .map_err(AdminError::Query)?;
        Ok(ServerSettings {
            version_num: get(&r, 0)?,
            version: get(&r, 1)?,
            wal_level: get(&r, 2)?,
            server_encoding: get(&r, 3)?,
            max_replication_slots: get(&r, 4)?,
            max_wal_senders: get(&r, 5)?,
            slots_used: get(&r, 6)?,
            wal_senders_used: get(&r, 7)?,
            database: get(&r, 8)?,
        })
    }

    pub async fn current_role(&self) -> Result<RoleInfo, AdminError> {
        let r = self
            .client
            .query_one(
                "SELECT rolname::text, rolsuper, rolreplication FROM pg_roles \
                 WHERE rolname = current_user",
                &[],
            )
            .await
            .map_err(AdminError::Query)?;
        Ok(RoleInfo {
            name: get(&r, 0)?,
            superuser: get(&r, 1)?,
            replication: get(&r, 2)?,
        })
    }

    /// The table named exactly `table` (no case folding), or `None` when there is no such
    /// ordinary or partitioned table.
    pub async fn table_info(&self, table: &TableName) -> Result<Option<TableInfo>, AdminError> {
        let rows = self
            .client
            .query(
                "SELECT c.relreplident::text, \
                        has_table_privilege(c.oid, 'SELECT'), \
                        has_schema_privilege(n.oid, 'USAGE'), \
                        ARRAY(SELECT a.attname::text FROM pg_attribute a \
                              WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped \
                              ORDER BY a.attnum) \
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')",
                &[&table.schema, &table.name],
            )
            .await
            .map_err(AdminError::Query)?;
        let Some(r) = rows.first() else {
            return Ok(None);
        };
        let ident: String = get(r, 0)?;
        Ok(Some(TableInfo {
            replica_identity: ident.chars().next().unwrap_or('d'),
            can_select: get(r, 1)?,
            schema_usage: get(r, 2)?,
            columns: get(r, 3)?,
        }))
    }

    pub async fn publication_info(
        &self,
        name: &str,
    ) -> Result<Option<PublicationInfo>, AdminError> {
        let rows = self
            .client
            .query(
                "SELECT puballtables, pubinsert, pubupdate, pubdelete, pubtruncate \
                 FROM pg_publication WHERE pubname = $1",
                &[&name],
            )
            .await
            .map_err(AdminError::Query)?;
        let Some(r) = rows.first() else {
            return Ok(None);
        };
        Ok(Some(PublicationInfo {
            all_tables: get(r, 0)?,
            insert: get(r, 1)?,
            update: get(r, 2)?,
            delete: get(r, 3)?,
            truncate: get(r, 4)?,
        }))
    }

    /// Runs `sql` (one or more statements, simple query protocol, outside a transaction block).
    pub async fn execute(&self, sql: &str) -> Result<(), AdminError> {
        self.client
            .batch_execute(sql)
            .await
            .map_err(AdminError::Query)
    }

    pub async fn current_wal_lsn(&self) -> Result<Lsn, AdminError> {
        let text = self.scalar("SELECT pg_current_wal_lsn()::text").await?;
        parse_lsn("pg_current_wal_lsn", &text)
    }

    pub async fn publication_exists(&self, name: &str) -> Result<bool, AdminError> {
        let rows = self
            .client
            .query("SELECT 1 FROM pg_publication WHERE pubname = $1", &[&name])
            .await
            .map_err(AdminError::Query)?;
        Ok(!rows.is_empty())
    }

    /// The tables a publication covers.
    pub async fn publication_tables(&self, name: &str) -> Result<Vec<TableName>, AdminError> {
        let rows = self
            .client
            .query(
                "SELECT schemaname::text, tablename::text FROM pg_publication_tables \
                 WHERE pubname = $1 ORDER BY 1, 2",
                &[&name],
            )
            .await
            .map_err(AdminError::Query)?;
        rows.iter()
            .map(|r| {
                Ok(TableName {
                    schema: get(r, 0)?,
                    name: get(r, 1)?,
                })
            })
            .collect()
    }

    /// The statements that make publication `name` cover `tables` (empty when it already does).
    pub async fn publication_fixes(
        &self,
        name: &str,
        tables: &[TableName],
    ) -> Result<Vec<String>, AdminError> {
        if !self.publication_exists(name).await? {
            let list: Vec<String> = tables.iter().map(quoted_table).collect();
            return Ok(vec![format!(
                "CREATE PUBLICATION {} FOR TABLE {}",
                quote_ident(name),
                list.join(", ")
            )]);
        }
        let covered = self.publication_tables(name).await?;
        let missing: Vec<String> = tables
            .iter()
            .filter(|t| !covered.contains(t))
            .map(quoted_table)
            .collect();
        if missing.is_empty() {
            return Ok(vec![]);
        }
        Ok(vec![format!(
            "ALTER PUBLICATION {} ADD TABLE {}",
            quote_ident(name),
            missing.join(", ")
        )])
    }

    /// Creates or extends the publication so it covers `tables`; returns the statements run.
    pub async fn ensure_publication(
        &self,
        name: &str,
        tables: &[TableName],
    ) -> Result<Vec<String>, AdminError> {
        let fixes = self.publication_fixes(name, tables).await?;
        for sql in &fixes {
            self.client
                .batch_execute(sql)
                .await
                .map_err(AdminError::Query)?;
        }
        Ok(fixes)
    }

    pub async fn slot(&self, name: &str) -> Result<Option<SlotInfo>, AdminError> {
        let rows = self
            .client
            .query(
                "SELECT slot_name::text, plugin::text, database::text, temporary, active_pid, \
                        confirmed_flush_lsn::text, restart_lsn::text, wal_status, \
                        (pg_current_wal_lsn() - restart_lsn)::bigint \
                 FROM pg_replication_slots WHERE slot_name = $1",
                &[&name],
            )
            .await
            .map_err(AdminError::Query)?;
        let Some(r) = rows.first() else {
            return Ok(None);
        };
        let lsn = |i: usize, what: &'static str| -> Result<Option<Lsn>, AdminError> {
            get::<Option<String>>(r, i)?
                .map(|t| parse_lsn(what, &t))
                .transpose()
        };
        Ok(Some(SlotInfo {
            name: get(r, 0)?,
            plugin: get(r, 1)?,
            database: get(r, 2)?,
            temporary: get(r, 3)?,
            active_pid: get(r, 4)?,
            confirmed_flush_lsn: lsn(5, "confirmed_flush_lsn")?,
            restart_lsn: lsn(6, "restart_lsn")?,
            wal_status: get(r, 7)?,
            retained_bytes: get(r, 8)?,
        }))
    }

    /// Creates the pgoutput slot; returns its consistent point.
    pub async fn create_slot(&self, name: &str) -> Result<Lsn, AdminError> {
        let row = self
            .client
            .query_one(
                "SELECT lsn::text FROM pg_create_logical_replication_slot($1, 'pgoutput')",
                &[&name],
            )
            .await
            .map_err(AdminError::Query)?;
        parse_lsn("slot consistent point", &get::<String>(&row, 0)?)
    }

    /// Returns the slot, creating it when missing; `true` when it was created now. A slot of the
    /// same name made for another plugin or database is a definite error, never reused.
    pub async fn ensure_slot(&self, name: &str) -> Result<(SlotInfo, bool), AdminError> {
        let created = match self.slot(name).await? {
            Some(slot) => {
                self.check_slot_is_ours(&slot).await?;
                return Ok((slot, false));
            }
            None => self.create_slot(name).await.map(|_| true)?,
        };
        let slot = self
            .slot(name)
            .await?
            .ok_or_else(|| AdminError::Unreadable {
                what: "slot just created",
                value: name.to_string(),
            })?;
        Ok((slot, created))
    }

    pub async fn check_slot_is_ours(&self, slot: &SlotInfo) -> Result<(), AdminError> {
        let plugin = slot.plugin.clone().unwrap_or_else(|| "(physical)".into());
        if plugin != "pgoutput" {
            return Err(AdminError::WrongPlugin {
                name: slot.name.clone(),
                plugin,
            });
        }
        let expected = self.current_database().await?;
        let found = slot.database.clone().unwrap_or_default();
        if found != expected {
            return Err(AdminError::WrongDatabase {
                name: slot.name.clone(),
                found,
                expected,
            });
        }
        Ok(())
    }

    pub async fn drop_slot(&self, name: &str) -> Result<(), AdminError> {
        self.client
            .execute("SELECT pg_drop_replication_slot($1)", &[&name])
            .await
            .map_err(AdminError::Query)?;
        Ok(())
    }
}

/// tokio-postgres' Display says only "db error"; the operator needs the server's message.
fn with_cause(e: &tokio_postgres::Error) -> String {
    match std::error::Error::source(e) {
        Some(cause) => format!("{e}: {cause}"),
        None => e.to_string(),
    }
}

fn get<'a, T: tokio_postgres::types::FromSql<'a>>(
    row: &'a tokio_postgres::Row,
    idx: usize,
) -> Result<T, AdminError> {
    row.try_get(idx).map_err(AdminError::Query)
}

fn parse_lsn(what: &'static str, text: &str) -> Result<Lsn, AdminError> {
    text.parse().map_err(|_| AdminError::Unreadable {
        what,
        value: text.to_string(),
    })
}

/// `"schema"."table"`, safe to put in SQL.
pub fn quoted_table(table: &TableName) -> String {
    format!(
        "{}.{}",
        quote_ident(&table.schema),
        quote_ident(&table.name)
    )
}
