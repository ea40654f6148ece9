//! The ordinary SQL connection (tokio-postgres) with the same parameters and TLS rules as ours.

use tokio_postgres::NoTls;

use super::WireError;
use crate::pg::dsn::ConnectParams;
use crate::pg::tls::make_tls_connect;

/// Connects with tokio-postgres and spawns the connection task; the task ends when the client
/// is dropped.
pub async fn connect_sql(params: &ConnectParams) -> Result<tokio_postgres::Client, WireError> {
    let config = params.to_tokio_postgres();
    let addr = params.addr();
    let err = |source| WireError::Sql {
        addr: addr.clone(),
        source,
    };
    match make_tls_connect(params)? {
        None => {
            let (client, conn) = config.connect(NoTls).await.map_err(err)?;
            tokio::spawn(drive(conn, addr.clone()));
            Ok(client)
        }
        Some(tls) => {
            let (client, conn) = config.connect(tls).await.map_err(err)?;
            tokio::spawn(drive(conn, addr.clone()));
            Ok(client)
        }
    }
}

async fn drive<F>(conn: F, addr: String)
where
    F: std::future::Future<Output = Result<(), tokio_postgres::Error>>,
{
    if let Err(e) = conn.await {
        tracing::warn!(server = %addr, error = %e, "PostgreSQL connection ended with an error");
    }
}
