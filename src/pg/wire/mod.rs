//! Our own framed PostgreSQL connection, for the walsender (tokio-postgres has no replication
//! mode): startup with TLS and authentication, simple queries, and CopyBoth.
//!
//! [`connect_sql`] gives the ordinary tokio-postgres client with the same parameters and TLS
//! rules, for admin work.

mod error;
mod frame;
mod sql;
mod startup;
mod stream;

use std::collections::HashMap;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use postgres_protocol::message::{backend::Message, frontend};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::pg::dsn::ConnectParams;
pub use error::{DbError, WireError};
use frame::Backend;
pub use sql::connect_sql;
use stream::Stream;

/// What to put in the StartupMessage besides user and database.
#[derive(Debug, Clone, Default)]
pub struct StartupOptions {
    /// Sends `replication=database`: a walsender that also runs SQL in the named database.
    pub replication: bool,
    /// Extra startup parameters (e.g. `DateStyle=ISO`); they override ours of the same name.
    pub params: Vec<(String, String)>,
}

/// One row of a simple query's result, all values as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimpleRow {
    pub columns: Arc<Vec<String>>,
    pub values: Vec<Option<String>>,
}

impl SimpleRow {
    /// The value of the column named `name`; `None` for NULL or a column that does not exist.
    pub fn get(&self, name: &str) -> Option<&str> {
        let i = self.columns.iter().position(|c| c == name)?;
        self.values.get(i)?.as_deref()
    }
}

/// What arrives during CopyBoth.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CopyEvent {
    Data(Bytes),
    /// The server ended its side of the copy (CopyDone).
    Done,
}

/// Free room the read buffer gets before each read.
const READ_CHUNK: usize = 64 * 1024;

/// An open, authenticated connection, ready for queries.
pub struct Connection {
    stream: Stream,
    /// Kept across calls so an interrupted read (select! against a timer) loses nothing.
    read_buf: BytesMut,
    write_buf: BytesMut,
    addr: String,
    backend_pid: Option<i32>,
    parameters: HashMap<String, String>,
}

impl Connection {
    /// Connects, negotiates TLS per `sslmode`, authenticates, and waits for ReadyForQuery.
    /// The whole exchange is bounded by `connect_timeout` (default 30 s).
    pub async fn connect(
        params: &ConnectParams,
        opts: &StartupOptions,
    ) -> Result<Connection, WireError> {
        startup::connect(params, opts).await
    }

    pub fn backend_pid(&self) -> Option<i32> {
        self.backend_pid
    }

    /// A run-time parameter the server reported (ParameterStatus), e.g. `server_version`.
    pub fn parameter(&self, name: &str) -> Option<&str> {
        self.parameters.get(name).map(String::as_str)
    }

    /// Runs `sql` with the simple query protocol (the only one a walsender speaks) and returns
    /// the rows of all its result sets. On a server error the connection stays usable.
    pub async fn simple_query(&mut self, sql: &str) -> Result<Vec<SimpleRow>, WireError> {
        self.send_query(sql).await?;
        let mut rows = Vec::new();
        let mut columns = Arc::new(Vec::new());
        let mut failure = None;
        loop {
            match self.read_message().await? {
                Backend::RowDescription(c) => columns = Arc::new(c),
                Backend::DataRow(values) => rows.push(SimpleRow {
                    columns: columns.clone(),
                    values,
                }),
                Backend::Error(e) => failure = Some(WireError::Server(Box::new(e))),
                Backend::Other(Message::ReadyForQuery(_)) => break,
                Backend::Other(Message::CopyInResponse(_)) => {
                    frontend::copy_fail("COPY FROM STDIN is not supported", &mut self.write_buf)
                        .map_err(|e| self.io(e))?;
                    self.flush().await?;
                }
                Backend::Other(
                    Message::CommandComplete(_)
                    | Message::EmptyQueryResponse
                    | Message::CopyOutResponse(_)
                    | Message::CopyDone,
                )
                | Backend::CopyData(_)
                | Backend::CopyDone => {}
                Backend::CopyBothResponse => {
                    return Err(self.protocol("the query started COPY BOTH; use start_copy_both"))
                }
                other => return Err(self.unexpected(&other)),
            }
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(rows),
        }
    }

    /// Sends `sql` (e.g. `START_REPLICATION …`) and waits for CopyBothResponse.
    pub async fn start_copy_both(&mut self, sql: &str) -> Result<(), WireError> {
        self.send_query(sql).await?;
        let mut failure = None;
        loop {
            match self.read_message().await? {
                Backend::CopyBothResponse => return Ok(()),
                Backend::Error(e) => failure = Some(WireError::Server(Box::new(e))),
                // The server is ready for another query: the command failed or was no COPY.
                Backend::Other(Message::ReadyForQuery(_)) => {
                    return Err(failure
                        .unwrap_or_else(|| self.protocol("the query did not start COPY BOTH")))
                }
                Backend::RowDescription(_)
                | Backend::DataRow(_)
                | Backend::Other(Message::CommandComplete(_) | Message::EmptyQueryResponse) => {}
                other => return Err(self.unexpected(&other)),
            }
        }
    }

    /// The next CopyData or CopyDone. Cancel-safe: partial frames stay in the read buffer.
    pub async fn recv_copy(&mut self) -> Result<CopyEvent, WireError> {
        match self.read_message().await? {
            Backend::CopyData(b) => Ok(CopyEvent::Data(b)),
            Backend::CopyDone => Ok(CopyEvent::Done),
            // A walsender that shuts down may end the command without a CopyDone of its own
            // first: that is still an orderly end of the stream, not a protocol violation.
            Backend::Other(Message::CommandComplete(_))
            | Backend::Other(Message::ReadyForQuery(_)) => Ok(CopyEvent::Done),
            Backend::Error(e) => Err(WireError::Server(Box::new(e))),
            other => Err(self.unexpected(&other)),
        }
    }

    /// Whether a whole CopyData message is already buffered, so that [`Connection::recv_copy`]
    /// returns without waiting for the network. Lets a reader batch work while the stream runs
    /// ahead of it.
    pub fn has_copy_data(&self) -> bool {
        let buf = &self.read_buf[..];
        if buf.len() < 5 || buf[0] != b'd' {
            return false;
        }
        let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
        buf.len() > len
    }

    pub async fn send_copy_data(&mut self, payload: &[u8]) -> Result<(), WireError> {
        let data = frontend::CopyData::new(payload).map_err(|e| self.io(e))?;
        data.write(&mut self.write_buf);
        self.flush().await
    }

    pub async fn send_copy_done(&mut self) -> Result<(), WireError> {
        frontend::copy_done(&mut self.write_buf);
        self.flush().await
    }

    /// After the copy has ended on both sides: reads up to ReadyForQuery, dropping any rows and
    /// copy data left in flight, and returns the first server error among them.
    pub async fn wait_ready(&mut self) -> Result<(), WireError> {
        let mut failure = None;
        loop {
            match self.read_message().await? {
                Backend::Other(Message::ReadyForQuery(_)) => break,
                Backend::Error(e) => failure = failure.or(Some(WireError::Server(Box::new(e)))),
                _ => {}
            }
        }
        failure.map_or(Ok(()), Err)
    }

    /// Says goodbye (Terminate) and closes the socket; errors do not matter any more.
    pub async fn close(mut self) {
        frontend::terminate(&mut self.write_buf);
        let _ = self.flush().await;
        let _ = self.stream.shutdown().await;
    }

    async fn send_query(&mut self, sql: &str) -> Result<(), WireError> {
        frontend::query(sql, &mut self.write_buf).map_err(|e| self.io(e))?;
        self.flush().await
    }

    async fn flush(&mut self) -> Result<(), WireError> {
        let r = async {
            self.stream.write_all(&self.write_buf).await?;
            self.stream.flush().await
        }
        .await;
        self.write_buf.clear();
        r.map_err(|e| self.io(e))
    }

    /// The next message that is not a notice or a parameter report (those are handled here).
    async fn read_message(&mut self) -> Result<Backend, WireError> {
        loop {
            while let Some(m) = frame::parse(&mut self.read_buf).map_err(|d| self.protocol(&d))? {
                match m {
                    Backend::Notice(n) => tracing::info!(server = %self.addr, "PostgreSQL: {n}"),
                    Backend::ParameterStatus { name, value } => {
                        self.parameters.insert(name, value);
                    }
                    Backend::Other(Message::NotificationResponse(_)) => {}
                    other => return Ok(other),
                }
            }
            // Large reads: a busy replication stream then costs few syscalls, and a reader can
            // see whole runs of messages waiting (`has_copy_data`).
            if self.read_buf.capacity() - self.read_buf.len() < READ_CHUNK / 2 {
                self.read_buf.reserve(READ_CHUNK);
            }
            let n = self
                .stream
                .read_buf(&mut self.read_buf)
                .await
                .map_err(|e| self.io(e))?;
            if n == 0 {
                return Err(WireError::Closed {
                    addr: self.addr.clone(),
                });
            }
        }
    }

    fn io(&self, source: std::io::Error) -> WireError {
        WireError::Io {
            addr: self.addr.clone(),
            source,
        }
    }

    fn protocol(&self, detail: &str) -> WireError {
        WireError::Protocol {
            addr: self.addr.clone(),
            detail: detail.to_string(),
        }
    }

    fn unexpected(&self, m: &Backend) -> WireError {
        self.protocol(&format!("unexpected message {}", m.name()))
    }
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("addr", &self.addr)
            .field("backend_pid", &self.backend_pid)
            .field("tls", &matches!(self.stream, Stream::Tls(_)))
            .finish()
    }
}
