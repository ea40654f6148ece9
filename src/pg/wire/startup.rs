//! Opening a connection: TCP, the SSLRequest dance per `sslmode`, the StartupMessage, and
//! authentication (trust, cleartext, md5, SCRAM-SHA-256).

use std::collections::HashMap;

use bytes::BytesMut;
use postgres_protocol::authentication::md5_hash;
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256, SCRAM_SHA_256};
use postgres_protocol::message::{backend::Message, frontend};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::frame::Backend;
use super::stream::Stream;
use super::{Connection, StartupOptions, WireError};
use crate::pg::dsn::{ConnectParams, SslMode, DEFAULT_CONNECT_TIMEOUT};
use crate::pg::tls;

pub(super) async fn connect(
    params: &ConnectParams,
    opts: &StartupOptions,
) -> Result<Connection, WireError> {
    // Before touching the network: a bad sslrootcert is a configuration error, not a retry.
    let tls_config = tls::client_config(params)?;
    let after = params.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT);
    let attempt = async {
        let tcp = tcp_connect(params).await?;
        let stream = negotiate_tls(params, tcp, tls_config).await?;
        let mut conn = Connection {
            stream,
            read_buf: BytesMut::with_capacity(8192),
            write_buf: BytesMut::with_capacity(8192),
            addr: params.addr(),
            backend_pid: None,
            parameters: HashMap::new(),
        };
        send_startup(&mut conn, params, opts).await?;
        authenticate(&mut conn, params).await?;
        wait_until_ready(&mut conn).await?;
        Ok::<_, WireError>(conn)
    };
    let conn = tokio::time::timeout(after, attempt)
        .await
        .map_err(|_| WireError::Timeout {
            addr: params.addr(),
            after,
        })??;
    tracing::debug!(
        server = %conn.addr,
        pid = ?conn.backend_pid,
        tls = matches!(conn.stream, Stream::Tls(_)),
        replication = opts.replication,
        "connected to PostgreSQL"
    );
    Ok(conn)
}

/// Tries every address the host resolves to (e.g. `localhost` → ::1, 127.0.0.1), like libpq.
async fn tcp_connect(params: &ConnectParams) -> Result<TcpStream, WireError> {
    let addrs = tokio::net::lookup_host((params.host.as_str(), params.port))
        .await
        .map_err(|source| WireError::Resolve {
            host: params.host.clone(),
            source,
        })?;
    let mut last = None;
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(s) => {
                // Small protocol messages (standby status) must not wait for Nagle.
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Err(e) => last = Some(e),
        }
    }
    let source = last.unwrap_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::NotFound, "the host name has no address")
    });
    Err(WireError::Connect {
        addr: params.addr(),
        source,
    })
}

async fn negotiate_tls(
    params: &ConnectParams,
    mut tcp: TcpStream,
    config: Option<std::sync::Arc<rustls::ClientConfig>>,
) -> Result<Stream, WireError> {
    let Some(config) = config else {
        return Ok(Stream::Plain(tcp));
    };
    let addr = params.addr();
    let io = |source| WireError::Io {
        addr: addr.clone(),
        source,
    };
    let mut buf = BytesMut::new();
    frontend::ssl_request(&mut buf);
    tcp.write_all(&buf).await.map_err(io)?;
    // Exactly one byte: anything buffered past it would be unauthenticated plaintext.
    let answer = tcp.read_u8().await.map_err(io)?;
    match answer {
        b'S' => {
            let name = tls::server_name(&params.host)?;
            let tls = tokio_rustls::TlsConnector::from(config)
                .connect(name, tcp)
                .await
                .map_err(|source| WireError::Tls {
                    host: params.host.clone(),
                    addr: addr.clone(),
                    source,
                })?;
            Ok(Stream::Tls(Box::new(tls)))
        }
        b'N' if params.sslmode == SslMode::Prefer => Ok(Stream::Plain(tcp)),
        b'N' => Err(WireError::SslRefused {
            addr,
            mode: params.sslmode,
        }),
        other => Err(WireError::Protocol {
            addr,
            detail: format!("unexpected answer {other:#04x} to SSLRequest"),
        }),
    }
}

async fn send_startup(
    conn: &mut Connection,
    params: &ConnectParams,
    opts: &StartupOptions,
) -> Result<(), WireError> {
    let mut startup: Vec<(String, String)> = vec![
        ("user".into(), params.user.clone()),
        ("database".into(), params.dbname.clone()),
        ("application_name".into(), params.application_name().into()),
    ];
    if opts.replication {
        startup.push(("replication".into(), "database".into()));
    }
    for (k, v) in &opts.params {
        match startup.iter_mut().find(|(name, _)| name == k) {
            Some(slot) => slot.1 = v.clone(),
            None => startup.push((k.clone(), v.clone())),
        }
    }
    frontend::startup_message(
        startup.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        &mut conn.write_buf,
    )
    .map_err(|e| conn.io(e))?;
    conn.flush().await
}

async fn authenticate(conn: &mut Connection, params: &ConnectParams) -> Result<(), WireError> {
    let mut scram: Option<ScramSha256> = None;
    loop {
        match conn.read_message().await? {
            Backend::Error(e) => return Err(WireError::Server(Box::new(e))),
            Backend::Other(Message::AuthenticationOk) => return Ok(()),
            Backend::Other(Message::AuthenticationCleartextPassword) => {
                let pw = password(params, "password")?;
                frontend::password_message(pw.as_bytes(), &mut conn.write_buf)
                    .map_err(|e| conn.io(e))?;
                conn.flush().await?;
            }
            Backend::Other(Message::AuthenticationMd5Password(body)) => {
                let pw = password(params, "md5")?;
                let hash = md5_hash(params.user.as_bytes(), pw.as_bytes(), body.salt());
                frontend::password_message(hash.as_bytes(), &mut conn.write_buf)
                    .map_err(|e| conn.io(e))?;
                conn.flush().await?;
            }
            Backend::Sasl(mechanisms) => {
                if !mechanisms.iter().any(|m| m == SCRAM_SHA_256) {
                    return Err(WireError::UnsupportedAuth {
                        method: format!("SASL ({})", mechanisms.join(", ")),
                    });
                }
                let pw = password(params, "SCRAM-SHA-256")?;
                // "n": we do not do channel binding. Never "y": over TLS the server offers
                // SCRAM-SHA-256-PLUS and would take "y" for a downgrade attack.
                let s = ScramSha256::new(pw.as_bytes(), ChannelBinding::unsupported());
                frontend::sasl_initial_response(SCRAM_SHA_256, s.message(), &mut conn.write_buf)
                    .map_err(|e| conn.io(e))?;
                conn.flush().await?;
                scram = Some(s);
            }
            Backend::Other(Message::AuthenticationSaslContinue(body)) => {
                let s = scram
                    .as_mut()
                    .ok_or_else(|| conn.protocol("SASLContinue before SASL"))?;
                s.update(body.data())
                    .map_err(|e| conn.protocol(&format!("SCRAM: {e}")))?;
                frontend::sasl_response(s.message(), &mut conn.write_buf)
                    .map_err(|e| conn.io(e))?;
                conn.flush().await?;
            }
            Backend::Other(Message::AuthenticationSaslFinal(body)) => {
                let s = scram
                    .as_mut()
                    .ok_or_else(|| conn.protocol("SASLFinal before SASL"))?;
                // Proves the server knows the password too, not only that we do.
                s.finish(body.data()).map_err(|e| {
                    conn.protocol(&format!("the server's SCRAM signature is invalid: {e}"))
                })?;
            }
            Backend::Other(m) => {
                let method = match m {
                    Message::AuthenticationGss | Message::AuthenticationGssContinue(_) => "GSSAPI",
                    Message::AuthenticationSspi => "SSPI",
                    Message::AuthenticationKerberosV5 => "Kerberos V5",
                    Message::AuthenticationScmCredential => "SCM credential",
                    other => {
                        let name = Backend::Other(other).name();
                        return Err(conn.protocol(&format!(
                            "unexpected message {name} during authentication"
                        )));
                    }
                };
                return Err(WireError::UnsupportedAuth {
                    method: method.to_string(),
                });
            }
            other => {
                return Err(conn.protocol(&format!(
                    "unexpected message {} during authentication",
                    other.name()
                )))
            }
        }
    }
}

fn password<'a>(params: &'a ConnectParams, method: &'static str) -> Result<&'a str, WireError> {
    params
        .password
        .as_ref()
        .map(|p| p.expose())
        .ok_or_else(|| WireError::PasswordMissing {
            method,
            user: params.user.clone(),
        })
}

/// After AuthenticationOk the server reports parameters and its key, then ReadyForQuery; it may
/// still refuse us here (e.g. too many connections, database does not exist).
async fn wait_until_ready(conn: &mut Connection) -> Result<(), WireError> {
    loop {
        match conn.read_message().await? {
            Backend::Other(Message::BackendKeyData(k)) => conn.backend_pid = Some(k.process_id()),
            Backend::Other(Message::ReadyForQuery(_)) => return Ok(()),
            Backend::Error(e) => return Err(WireError::Server(Box::new(e))),
            other => {
                return Err(conn.protocol(&format!(
                    "unexpected message {} before ReadyForQuery",
                    other.name()
                )))
            }
        }
    }
}
