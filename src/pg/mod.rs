//! Everything that speaks to PostgreSQL.
//!
//! `dsn` and `tls` are shared by both kinds of connection: the walsender connection we frame
//! ourselves (`wire`, `replication`; tokio-postgres has no replication mode) and the ordinary SQL
//! connection of `admin` (tokio-postgres).

pub mod admin;
pub mod dsn;
pub mod replication;
pub mod tls;
pub mod wire;
