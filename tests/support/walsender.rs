//! A fake walsender on loopback: just enough of the protocol (trust authentication,
//! `IDENTIFY_SYSTEM`, `START_REPLICATION` → CopyBothResponse) to get a client streaming, then
//! whatever bytes a test wants to throw at it.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the fake does once it has sent everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Then {
    /// Closes the connection.
    Close,
    /// Keeps reading (and ignoring) what the client sends.
    Linger,
}

/// Serves one replication connection on a free loopback port.
pub struct FakeWalsender {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl FakeWalsender {
    /// After CopyBothResponse, writes `stream` (raw bytes: frames built with [`frame`] and
    /// friends, or anything else), then does `then`.
    pub async fn start(stream: Vec<u8>, then: Then) -> FakeWalsender {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            if let Ok((socket, _)) = listener.accept().await {
                let _ = serve(socket, stream, then).await;
            }
        });
        FakeWalsender { addr, task }
    }

    /// A URL for the client.
    pub fn url(&self) -> String {
        format!(
            "postgres://fake@{}/fake?sslmode=disable&connect_timeout=5",
            self.addr
        )
    }
}

impl Drop for FakeWalsender {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A backend message: tag, length (including itself), body.
pub fn frame(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    out.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// CopyData carrying `payload`.
pub fn copy_data(payload: &[u8]) -> Vec<u8> {
    frame(b'd', payload)
}

fn cstr(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(s.as_bytes());
    out.push(0);
}

async fn serve(mut socket: TcpStream, stream: Vec<u8>, then: Then) -> std::io::Result<()> {
    // Startup: length + protocol code + parameters; an SSLRequest first gets an 'N'.
    loop {
        let len = socket.read_u32().await? as usize;
        let mut rest = vec![0u8; len.saturating_sub(4)];
        socket.read_exact(&mut rest).await?;
        if rest.get(..4) == Some(&80877103u32.to_be_bytes()[..]) {
            socket.write_all(b"N").await?;
            continue;
        }
        break;
    }
    let mut hello = frame(b'R', &0u32.to_be_bytes());
    for (k, v) in [
        ("server_version", "16.0"),
        ("server_encoding", "UTF8"),
        ("client_encoding", "UTF8"),
        ("integer_datetimes", "on"),
    ] {
        let mut body = Vec::new();
        cstr(&mut body, k);
        cstr(&mut body, v);
        hello.extend(frame(b'S', &body));
    }
    let mut key = 4242u32.to_be_bytes().to_vec();
    key.extend_from_slice(&7u32.to_be_bytes());
    hello.extend(frame(b'K', &key));
    hello.extend(frame(b'Z', b"I"));
    socket.write_all(&hello).await?;

    loop {
        let (tag, body) = read_message(&mut socket).await?;
        if tag != b'Q' {
            continue;
        }
        let query = String::from_utf8_lossy(&body)
            .trim_end_matches('\0')
            .to_string();
        if query.starts_with("IDENTIFY_SYSTEM") {
            socket.write_all(&identify_system()).await?;
        } else if query.starts_with("START_REPLICATION") {
            // CopyBothResponse: text format, no columns.
            socket.write_all(&frame(b'W', &[0, 0, 0])).await?;
            socket.write_all(&stream).await?;
            socket.flush().await?;
            break;
        } else {
            let mut body = Vec::new();
            cstr(&mut body, "SELECT 0");
            let mut reply = frame(b'C', &body);
            reply.extend(frame(b'Z', b"I"));
            socket.write_all(&reply).await?;
        }
    }
    if then == Then::Linger {
        while read_message(&mut socket).await.is_ok() {}
    }
    Ok(())
}

async fn read_message(socket: &mut TcpStream) -> std::io::Result<(u8, Vec<u8>)> {
    let tag = socket.read_u8().await?;
    let len = socket.read_u32().await? as usize;
    let mut body = vec![0u8; len.saturating_sub(4)];
    socket.read_exact(&mut body).await?;
    Ok((tag, body))
}

fn identify_system() -> Vec<u8> {
    let names = ["systemid", "timeline", "xlogpos", "dbname"];
    let mut desc = (names.len() as u16).to_be_bytes().to_vec();
    for name in names {
        cstr(&mut desc, name);
        desc.extend_from_slice(&0u32.to_be_bytes()); // table oid
        desc.extend_from_slice(&0u16.to_be_bytes()); // column
        desc.extend_from_slice(&25u32.to_be_bytes()); // type: text
        desc.extend_from_slice(&(-1i16).to_be_bytes());
        desc.extend_from_slice(&(-1i32).to_be_bytes());
        desc.extend_from_slice(&0u16.to_be_bytes()); // text format
    }
    let mut row = (names.len() as u16).to_be_bytes().to_vec();
    for value in ["7300000000000000001", "1", "0/1000000", "fake"] {
        row.extend_from_slice(&(value.len() as i32).to_be_bytes());
        row.extend_from_slice(value.as_bytes());
    }
    let mut out = frame(b'T', &desc);
    out.extend(frame(b'D', &row));
    let mut done = Vec::new();
    cstr(&mut done, "IDENTIFY_SYSTEM");
    out.extend(frame(b'C', &done));
    out.extend(frame(b'Z', b"I"));
    out
}
