//! The connection layer against a real PostgreSQL: the ephemeral cluster itself, every auth
//! method, TLS modes, errors an operator will meet, and CopyBoth on a real replication slot.

mod support;

use std::net::TcpStream;

use fuse_cdc_bridge::ephemeral::StopMode;

#[test]
fn ephemeral_cluster_starts_stops_restarts_and_cleans_up() {
    let mut c = support::cluster();
    assert!(c.is_running());
    assert_eq!(c.psql("select 1").unwrap(), "1\n");
    assert_eq!(c.psql("show wal_level").unwrap(), "logical\n");
    assert_eq!(c.psql("show wal_sender_timeout").unwrap(), "3s\n");
    assert_eq!(
        c.superuser_url(),
        format!(
            "postgres://postgres@127.0.0.1:{}/postgres?sslmode=disable",
            c.port()
        )
    );
    assert_eq!(
        c.url("a b", Some("p@ss:/"), "db"),
        format!(
            "postgres://a%20b:p%40ss%3A%2F@127.0.0.1:{}/db?sslmode=disable",
            c.port()
        )
    );

    c.stop(StopMode::Fast).unwrap();
    assert!(!c.is_running());
    assert!(c.psql("select 1").is_err());
    c.start_again().unwrap();
    assert_eq!(c.psql("select 2").unwrap(), "2\n");
    let err = c
        .psql("select * from no_such_table")
        .unwrap_err()
        .to_string();
    assert!(err.contains("no_such_table"), "{err}");

    let port = c.port();
    let data = c.data_dir();
    assert!(data.join("PG_VERSION").is_file());
    drop(c);
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "server outlived the Cluster"
    );
    assert!(!data.exists(), "data dir not removed");
}

use std::time::Duration;

use fuse_cdc_bridge::ephemeral::{Cluster, ClusterOptions};
use fuse_cdc_bridge::pg::dsn::ConnectParams;
use fuse_cdc_bridge::pg::wire::{connect_sql, Connection, CopyEvent, StartupOptions, WireError};

fn params(url: &str) -> ConnectParams {
    match ConnectParams::parse(url) {
        Ok(p) => p,
        Err(e) => panic!("{url}: {e}"),
    }
}

async fn connect(url: &str, replication: bool) -> Result<Connection, WireError> {
    let opts = StartupOptions {
        replication,
        params: vec![
            ("DateStyle".into(), "ISO".into()),
            ("TimeZone".into(), "UTC".into()),
            ("extra_float_digits".into(), "3".into()),
            ("client_encoding".into(), "UTF8".into()),
        ],
    };
    Connection::connect(&params(url), &opts).await
}

async fn must_connect(url: &str, replication: bool) -> Connection {
    match connect(url, replication).await {
        Ok(c) => c,
        Err(e) => panic!("{url}: {e} (hint: {:?})", e.hint()),
    }
}

async fn one(conn: &mut Connection, sql: &str) -> String {
    let rows = conn.simple_query(sql).await.unwrap();
    assert_eq!(rows.len(), 1, "{sql}");
    rows[0].values[0].clone().unwrap_or_default()
}

fn psql1(c: &Cluster, sql: &str) -> String {
    c.psql(sql).unwrap().trim().to_string()
}

const METHOD_USERS: [(&str, &str, Option<&str>); 4] = [
    ("trust_u", "trust", None),
    ("clear_u", "password", Some("clear pw")),
    ("md5_u", "md5", Some("md5 p@ss:/")),
    ("scram_u", "scram-sha-256", Some("scram pw ü")),
];

fn cluster_with_method_users() -> Cluster {
    let c = support::cluster_with(ClusterOptions {
        extra_conf: vec![("log_connections".into(), "on".into())],
        ..Default::default()
    });
    c.psql(
        "create role trust_u login replication; \
         create role clear_u login replication password 'clear pw'; \
         set password_encryption = 'md5'; \
         create role md5_u login replication password 'md5 p@ss:/'; \
         set password_encryption = 'scram-sha-256'; \
         create role scram_u login replication password 'scram pw ü'; \
         create role norepl_u login password 'x';",
    )
    .unwrap();
    let mut hba = Vec::new();
    for (user, method, _) in METHOD_USERS {
        hba.push(format!("host all {user} 127.0.0.1/32 {method}"));
        hba.push(format!("host replication {user} 127.0.0.1/32 {method}"));
    }
    hba.push("host all norepl_u 127.0.0.1/32 scram-sha-256".into());
    hba.push("host replication norepl_u 127.0.0.1/32 scram-sha-256".into());
    hba.push("host all gss_u 127.0.0.1/32 gss".into());
    c.set_hba(&hba).unwrap();
    c
}

#[tokio::test]
async fn every_auth_method_connects_for_sql_and_replication() {
    let c = cluster_with_method_users();
    // Proves md5_u really stores an md5 hash, so the md5 exchange is what gets tested.
    assert_eq!(
        c.psql(
            "select rolname || ' ' || left(rolpassword, 14) from pg_authid \
             where rolname in ('clear_u', 'md5_u', 'scram_u') order by rolname"
        )
        .unwrap()
        .lines()
        .map(|l| if l.starts_with("md5_u md5") {
            "md5_u md5"
        } else {
            l
        })
        .collect::<Vec<_>>(),
        [
            "clear_u SCRAM-SHA-256$",
            "md5_u md5",
            "scram_u SCRAM-SHA-256$"
        ]
    );
    let systemid = psql1(&c, "select system_identifier from pg_control_system()");
    assert!(systemid.len() > 10, "{systemid}");

    for (user, method, password) in METHOD_USERS {
        let url = c.url(user, password, "postgres");

        let mut repl = must_connect(&url, true).await;
        let rows = repl.simple_query("IDENTIFY_SYSTEM").await.unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].get("systemid"), Some(systemid.as_str()), "{user}");
        assert_eq!(rows[0].get("timeline"), Some("1"));
        assert_eq!(rows[0].get("dbname"), Some("postgres"));
        assert!(rows[0].get("xlogpos").is_some_and(|l| l.contains('/')));
        repl.close().await;

        let mut sql = must_connect(&url, false).await;
        let rows = sql
            .simple_query("select current_user as u, 1 + 1 as two, null::text as n")
            .await
            .unwrap();
        assert_eq!(rows[0].get("u"), Some(user));
        assert_eq!(rows[0].get("two"), Some("2"));
        assert_eq!(rows[0].get("n"), None);
        assert_eq!(rows[0].values[2], None);
        assert_eq!(
            *rows[0].columns,
            vec!["u".to_string(), "two".to_string(), "n".to_string()]
        );
        let pid = one(&mut sql, "select pg_backend_pid()").await;
        assert_eq!(sql.backend_pid().map(|p| p.to_string()), Some(pid));
        assert_eq!(sql.parameter("TimeZone"), Some("UTC"));
        assert_eq!(sql.parameter("DateStyle"), Some("ISO, MDY"));
        assert_eq!(
            one(
                &mut sql,
                "select application_name from pg_stat_activity where pid = pg_backend_pid()"
            )
            .await,
            "fuse-cdc-bridge"
        );
        assert_eq!(one(&mut sql, "show extra_float_digits").await, "3");
        sql.close().await;

        let client = connect_sql(&params(&url)).await.unwrap();
        let row = client
            .query_one("select current_user::text", &[])
            .await
            .unwrap();
        assert_eq!(row.get::<_, String>(0), user);

        if method != "trust" {
            let line = format!("connection authenticated: identity=\"{user}\" method={method} ");
            assert!(
                c.server_log().contains(&line),
                "no {line:?} in the server log"
            );
        }
    }
}

#[tokio::test]
async fn auth_failures_are_definite_and_explained() {
    let c = cluster_with_method_users();

    for user in ["scram_u", "md5_u", "clear_u"] {
        let e = connect(&c.url(user, Some("wrong"), "postgres"), false)
            .await
            .unwrap_err();
        assert_eq!(e.code(), Some("28P01"), "{e}");
        let msg = e.to_string();
        assert!(
            msg.contains(&format!(
                "password authentication failed for user \"{user}\""
            )),
            "{msg}"
        );
        assert!(!e.is_transient());
        assert_eq!(
            e.hint().as_deref(),
            Some("check the password in [postgres].url")
        );
    }

    let e = connect(&c.url("scram_u", None, "postgres"), true)
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            WireError::PasswordMissing {
                method: "SCRAM-SHA-256",
                ..
            }
        ),
        "{e:?}"
    );
    assert!(!e.is_transient());
    assert!(
        e.hint().unwrap().contains("add the password"),
        "{:?}",
        e.hint()
    );

    let e = connect(&c.url("nobody", None, "postgres"), false)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some("28000"), "{e}");
    assert!(e.to_string().contains("no pg_hba.conf entry"), "{e}");
    assert!(!e.is_transient());
    assert!(e.hint().unwrap().contains("pg_hba.conf"));

    let e = connect(&c.url("trust_u", None, "no_such_db"), false)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some("3D000"), "{e}");
    assert!(
        e.to_string().contains("\"no_such_db\" does not exist"),
        "{e}"
    );
    assert_eq!(
        e.hint().as_deref(),
        Some("check the database name in [postgres].url")
    );

    let e = connect(&c.url("norepl_u", Some("x"), "postgres"), true)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some("42501"), "{e}");
    assert!(e.hint().unwrap().contains("REPLICATION"));

    let e = connect(&c.url("gss_u", None, "postgres"), false)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, WireError::UnsupportedAuth { method } if method == "GSSAPI"),
        "{e:?}"
    );
    assert!(e.to_string().contains("GSSAPI"));
    assert!(!e.is_transient());

    let e = connect_sql(&params(&c.url("scram_u", Some("wrong"), "postgres")))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some("28P01"), "{e}");
    assert!(
        e.to_string().contains("password authentication failed"),
        "{e}"
    );
    assert!(!e.is_transient());
    assert_eq!(
        e.hint().as_deref(),
        Some("check the password in [postgres].url")
    );

    // No ssl on this server: require refuses to go on, prefer falls back to plaintext.
    let url = c.url("trust_u", None, "postgres");
    let e = connect(&format!("{url}&sslmode=require"), false)
        .await
        .unwrap_err();
    assert!(matches!(e, WireError::SslRefused { .. }), "{e:?}");
    assert!(e.to_string().contains("does not support SSL"), "{e}");
    assert!(!e.is_transient());
    let mut conn = must_connect(&format!("{url}&sslmode=prefer"), false).await;
    let ssl = "select ssl from pg_stat_ssl where pid = pg_backend_pid()";
    assert_eq!(one(&mut conn, ssl).await, "f");

    // A failed query leaves the connection usable.
    let e = conn.simple_query("select 1/0").await.unwrap_err();
    assert_eq!(e.code(), Some("22012"));
    assert!(
        e.to_string().starts_with("ERROR 22012: division by zero"),
        "{e}"
    );
    assert_eq!(one(&mut conn, "select 'still here'").await, "still here");
}

#[tokio::test]
async fn network_failures_name_the_target_and_are_transient() {
    let e = connect(
        "postgres://u@no-such-host.invalid:5432/db?sslmode=disable",
        false,
    )
    .await
    .unwrap_err();
    assert!(matches!(e, WireError::Resolve { .. }), "{e:?}");
    assert!(e.to_string().contains("\"no-such-host.invalid\""), "{e}");
    assert!(e.hint().unwrap().contains("no-such-host.invalid"));

    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("postgres://u@127.0.0.1:{port}/db?sslmode=disable");
    let e = connect(&url, true).await.unwrap_err();
    assert!(
        matches!(&e, WireError::Connect { source, .. }
        if source.kind() == std::io::ErrorKind::ConnectionRefused),
        "{e:?}"
    );
    assert!(e.to_string().contains(&format!("127.0.0.1:{port}")), "{e}");
    assert!(e.is_transient());
    let hint = e.hint().unwrap();
    assert!(
        hint.contains(&format!("is PostgreSQL running on 127.0.0.1:{port}")),
        "{hint}"
    );

    let e = connect_sql(&params(&url)).await.unwrap_err();
    assert!(e.is_transient(), "{e}");
    assert!(e.hint().unwrap().contains("is PostgreSQL running"), "{e}");

    // Accepts TCP but never speaks: the connect timeout bounds the whole startup.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    let started = std::time::Instant::now();
    let url = format!("postgres://u@127.0.0.1:{port}/db?sslmode=prefer&connect_timeout=1");
    let e = connect(&url, false).await.unwrap_err();
    assert!(matches!(e, WireError::Timeout { .. }), "{e:?}");
    assert!(e.is_transient());
    assert!(started.elapsed() < Duration::from_secs(5));
    drop(silent);
}

fn tls_cluster(cert: (String, String)) -> Cluster {
    let c = support::cluster_with(ClusterOptions {
        ssl: Some(cert),
        ..Default::default()
    });
    c.psql("create role scram_u login replication password 'tls pw'")
        .unwrap();
    // hostssl only: a plaintext connection finds no matching line.
    c.set_hba(&[
        "hostssl all scram_u 127.0.0.1/32 scram-sha-256".into(),
        "hostssl all all 127.0.0.1/32 trust".into(),
        "hostssl replication all 127.0.0.1/32 trust".into(),
    ])
    .unwrap();
    c
}

const SSL_IN_USE: &str = "select ssl from pg_stat_ssl where pid = pg_backend_pid()";

#[tokio::test]
async fn tls_modes_against_a_certificate_for_localhost() {
    let ca = support::Ca::new("test CA");
    let other_ca = support::Ca::new("some other CA");
    let c = tls_cluster(ca.server_cert(&["localhost", "127.0.0.1"]));
    let dir = tempfile::tempdir().unwrap();
    let ca_file = ca.write(dir.path());
    let other_dir = tempfile::tempdir().unwrap();
    let other_ca_file = other_ca.write(other_dir.path());
    let port = c.port();
    let url = |host: &str, rest: &str| format!("postgres://postgres@{host}:{port}/postgres?{rest}");

    for u in [
        url(
            "localhost",
            &format!("sslmode=verify-full&sslrootcert={}", ca_file.display()),
        ),
        url(
            "127.0.0.1",
            &format!("sslmode=verify-full&sslrootcert={}", ca_file.display()),
        ),
        url(
            "localhost",
            &format!("sslmode=verify-ca&sslrootcert={}", ca_file.display()),
        ),
        url("localhost", "sslmode=require"),
        url("localhost", "sslmode=prefer"),
    ] {
        let mut conn = must_connect(&u, false).await;
        assert_eq!(one(&mut conn, SSL_IN_USE).await, "t", "{u}");
        conn.close().await;
    }
    let verify_full = url(
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={}", ca_file.display()),
    );
    let mut repl = must_connect(&verify_full, true).await;
    let rows = repl.simple_query("IDENTIFY_SYSTEM").await.unwrap();
    assert_eq!(rows[0].get("dbname"), Some("postgres"));

    let client = connect_sql(&params(&verify_full)).await.unwrap();
    let row = client.query_one(SSL_IN_USE, &[]).await.unwrap();
    assert!(row.get::<_, bool>(0));

    // SCRAM over TLS: the server offers SCRAM-SHA-256-PLUS; we must still get in without it.
    let scram = format!("postgres://scram_u:tls%20pw@localhost:{port}/postgres?sslmode=require");
    let mut conn = must_connect(&scram, false).await;
    assert_eq!(one(&mut conn, "select current_user").await, "scram_u");

    let e = connect(&url("127.0.0.1", "sslmode=disable"), false)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some("28000"), "{e}");
    assert!(e.to_string().contains("no encryption"), "{e}");
    assert!(!e.is_transient());

    let untrusted = url(
        "localhost",
        &format!("sslmode=verify-ca&sslrootcert={}", other_ca_file.display()),
    );
    let e = connect(&untrusted, false).await.unwrap_err();
    assert!(matches!(e, WireError::Tls { .. }), "{e:?}");
    assert!(e.to_string().contains("UnknownIssuer"), "{e}");
    assert!(!e.is_transient());
    assert!(
        e.hint().unwrap().contains("set sslrootcert to the CA"),
        "{:?}",
        e.hint()
    );
    let e = connect_sql(&params(&untrusted)).await.unwrap_err();
    assert!(!e.is_transient(), "{e}");
    assert!(
        e.hint().unwrap().contains("set sslrootcert to the CA"),
        "{e}: {:?}",
        e.hint()
    );

    let missing = url(
        "localhost",
        "sslmode=verify-full&sslrootcert=/no/such/ca.pem",
    );
    let e = connect(&missing, false).await.unwrap_err();
    assert!(matches!(e, WireError::TlsConfig(_)), "{e:?}");
    assert!(e.to_string().contains("/no/such/ca.pem"), "{e}");
    assert!(!e.is_transient());
}

#[tokio::test]
async fn verify_full_rejects_a_certificate_for_another_host() {
    let ca = support::Ca::new("test CA");
    let c = tls_cluster(ca.server_cert(&["db.example.com"]));
    let dir = tempfile::tempdir().unwrap();
    let ca_file = ca.write(dir.path());
    let port = c.port();
    let url = |mode: &str| {
        format!(
            "postgres://postgres@localhost:{port}/postgres?sslmode={mode}&sslrootcert={}",
            ca_file.display()
        )
    };

    let e = connect(&url("verify-full"), true).await.unwrap_err();
    assert!(matches!(e, WireError::Tls { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains("certificate not valid for name \"localhost\""),
        "{msg}"
    );
    assert!(msg.contains("db.example.com"), "{msg}");
    assert!(!e.is_transient());
    assert_eq!(
        e.hint().as_deref(),
        Some(
            "the server certificate is not valid for host localhost; fix the host in the URL \
             or use sslmode=verify-ca"
        )
    );
    let e = connect_sql(&params(&url("verify-full"))).await.unwrap_err();
    assert!(!e.is_transient(), "{e}");
    assert!(
        e.hint().unwrap().contains("not valid for host localhost"),
        "{e}"
    );

    let mut conn = must_connect(&url("verify-ca"), false).await;
    assert_eq!(one(&mut conn, SSL_IN_USE).await, "t");
    let client = connect_sql(&params(&url("verify-ca"))).await.unwrap();
    assert!(client
        .query_one(SSL_IN_USE, &[])
        .await
        .unwrap()
        .get::<_, bool>(0));
}

/// The pgoutput message inside an XLogData frame: 'w', start, end, time (1 + 3 * 8 bytes).
fn pgoutput_of(frame: &[u8]) -> Option<&[u8]> {
    (frame.first() == Some(&b'w')).then(|| &frame[25..])
}

#[tokio::test]
async fn copy_both_streams_a_real_replication_slot() {
    let c = support::cluster();
    c.psql(
        "create table t (id int primary key, v text); \
         create publication p for table t;",
    )
    .unwrap();
    // Its own call: psql -c runs one transaction, and a slot cannot follow writes in one.
    c.psql("select pg_create_logical_replication_slot('x', 'pgoutput')")
        .unwrap();
    let mut conn = must_connect(&c.url("postgres", None, "postgres"), true).await;

    let e = conn
        .start_copy_both(
            "START_REPLICATION SLOT nope LOGICAL 0/0 (proto_version '1', publication_names 'p')",
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some("42704"), "{e}");
    assert!(e.to_string().contains("\"nope\" does not exist"), "{e}");

    conn.start_copy_both(
        "START_REPLICATION SLOT x LOGICAL 0/0 (proto_version '1', publication_names 'p')",
    )
    .await
    .unwrap();
    assert_eq!(
        psql1(
            &c,
            "select active from pg_replication_slots where slot_name = 'x'"
        ),
        "t"
    );
    // Inserted while recv_copy is waiting, so the timer below interrupts real reads.
    let url = c.url("postgres", None, "postgres");
    let writer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut w = must_connect(&url, false).await;
        w.simple_query("insert into t values (1, 'hello-wire')")
            .await
            .unwrap();
    });

    // A 1 ms timer keeps interrupting recv_copy: frames must still arrive whole and in order.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut kinds = Vec::new();
    let mut interrupted = 0;
    while !kinds.contains(&b'C') {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no commit; got {kinds:?}"
        );
        let ev = tokio::select! {
            ev = conn.recv_copy() => ev.unwrap(),
            _ = tokio::time::sleep(Duration::from_millis(1)) => { interrupted += 1; continue }
        };
        let CopyEvent::Data(frame) = ev else {
            panic!("server ended the copy")
        };
        assert!(
            matches!(frame[0], b'w' | b'k'),
            "frame starts with {:?}",
            frame[0]
        );
        if let Some(msg) = pgoutput_of(&frame) {
            kinds.push(msg[0]);
            if msg[0] == b'I' {
                let text = String::from_utf8_lossy(msg);
                assert!(text.contains("hello-wire"), "{text}");
            }
        }
    }
    assert_eq!(kinds, b"BRIC", "pgoutput messages");
    writer.await.unwrap();
    assert!(
        interrupted > 0,
        "the timer never fired, so cancel-safety was not exercised"
    );

    // Standby status update ('r': written, flushed, applied, clock, no reply), then end the copy.
    let mut status = vec![b'r'];
    for _ in 0..3 {
        status.extend_from_slice(&0u64.to_be_bytes());
    }
    status.extend_from_slice(&0i64.to_be_bytes());
    status.push(0);
    conn.send_copy_data(&status).await.unwrap();
    conn.send_copy_done().await.unwrap();
    loop {
        match tokio::time::timeout(Duration::from_secs(10), conn.recv_copy())
            .await
            .unwrap()
            .unwrap()
        {
            CopyEvent::Done => break,
            CopyEvent::Data(_) => {}
        }
    }
    conn.wait_ready().await.unwrap();
    let rows = conn.simple_query("IDENTIFY_SYSTEM").await.unwrap();
    assert_eq!(rows[0].get("dbname"), Some("postgres"));
    let pid = conn.backend_pid().unwrap();
    conn.close().await;
    let gone = format!("select count(*) from pg_stat_replication where pid = {pid}");
    for _ in 0..50 {
        if psql1(&c, &gone) == "0" {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("the walsender outlived close()");
}
