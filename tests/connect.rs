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
