//! Unit tests of connection-string parsing.

use super::*;

fn p(s: &str) -> ConnectParams {
    match ConnectParams::parse(s) {
        Ok(p) => p,
        Err(e) => panic!("{s:?}: {e}"),
    }
}

#[test]
fn url_with_everything() {
    let c = p(
        "postgres://bridge:s3cr%40t%2Bx@db.internal:6543/fuse%20db?sslmode=verify-full\
               &sslrootcert=/etc/ssl/ca.pem&application_name=my%20app&connect_timeout=10",
    );
    assert_eq!(c.host, "db.internal");
    assert_eq!(c.port, 6543);
    assert_eq!(c.user, "bridge");
    assert_eq!(c.password.as_ref().map(Password::expose), Some("s3cr@t+x"));
    assert_eq!(c.dbname, "fuse db");
    assert_eq!(c.sslmode, SslMode::VerifyFull);
    assert_eq!(c.sslrootcert, Some(PathBuf::from("/etc/ssl/ca.pem")));
    assert_eq!(c.application_name.as_deref(), Some("my app"));
    assert_eq!(c.connect_timeout, Some(Duration::from_secs(10)));
}

#[test]
fn url_defaults_like_libpq() {
    let c = p("postgresql://alice@example.com");
    assert_eq!(c.port, 5432);
    assert_eq!(c.dbname, "alice");
    assert_eq!(c.sslmode, SslMode::Prefer);
    assert_eq!(c.password, None);
    assert_eq!(c.sslrootcert, None);
    assert_eq!(c.application_name, None);
    assert_eq!(c.application_name(), "fuse-cdc-bridge");
    assert_eq!(c.connect_timeout, None);
}

#[test]
fn url_plus_is_not_a_space_and_later_wins() {
    let c = p("postgres://u@h/d?application_name=a+b&sslmode=disable&sslmode=require");
    assert_eq!(c.application_name.as_deref(), Some("a+b"));
    assert_eq!(c.sslmode, SslMode::Require);
}

#[test]
fn url_ipv6_host() {
    let c = p("postgres://u@[::1]:5433/d");
    assert_eq!(c.host, "::1");
    assert_eq!(c.addr(), "[::1]:5433");
}

#[test]
fn url_query_may_set_user_and_password() {
    let c = p("postgres://h/d?user=bob&password=p%26q");
    assert_eq!(c.user, "bob");
    assert_eq!(c.password.as_ref().map(Password::expose), Some("p&q"));
}

#[test]
fn key_value_quoting() {
    let c = p(
        r"host=10.0.0.5 port = 5433 user=bob password='it\'s a \\ secret' dbname='my db' sslmode=require",
    );
    assert_eq!(c.host, "10.0.0.5");
    assert_eq!(c.port, 5433);
    assert_eq!(c.user, "bob");
    assert_eq!(
        c.password.as_ref().map(Password::expose),
        Some(r"it's a \ secret")
    );
    assert_eq!(c.dbname, "my db");
    assert_eq!(c.sslmode, SslMode::Require);
    let c = p("user=x password=''");
    assert_eq!(c.password.as_ref().map(Password::expose), Some(""));
    assert_eq!(c.host, "localhost");
}

#[test]
fn unknown_parameters_are_named() {
    let e = ConnectParams::parse("postgres://u@h/d?sslcompression=1").unwrap_err();
    assert_eq!(e, DsnError::UnknownParameter("sslcompression".into()));
    assert!(e.to_string().contains("\"sslcompression\""), "{e}");
    let e = ConnectParams::parse("user=u frobnicate=yes").unwrap_err();
    assert_eq!(e, DsnError::UnknownParameter("frobnicate".into()));
}

#[test]
fn bad_values_are_named() {
    let e = ConnectParams::parse("postgres://u@h/d?sslmode=allow").unwrap_err();
    assert!(
        matches!(e, DsnError::BadValue { key: "sslmode", .. }),
        "{e:?}"
    );
    let e = ConnectParams::parse("user=u port=99999").unwrap_err();
    assert!(matches!(e, DsnError::BadValue { key: "port", .. }), "{e:?}");
    let e = ConnectParams::parse("user=u connect_timeout=soon").unwrap_err();
    assert!(
        matches!(
            e,
            DsnError::BadValue {
                key: "connect_timeout",
                ..
            }
        ),
        "{e:?}"
    );
    let e = ConnectParams::parse("user=u host=/var/run/postgresql").unwrap_err();
    assert!(e.to_string().contains("unix-domain sockets"), "{e}");
    assert_eq!(
        ConnectParams::parse("host=h").unwrap_err(),
        DsnError::MissingUser
    );
    assert!(matches!(
        ConnectParams::parse("user=u password='x"),
        Err(DsnError::Syntax(_))
    ));
    assert!(matches!(
        ConnectParams::parse("user u"),
        Err(DsnError::Syntax(_))
    ));
    assert!(matches!(
        ConnectParams::parse("mysql://u@h/d"),
        Err(DsnError::Syntax(_))
    ));
}

#[test]
fn connect_timeout_zero_means_default() {
    assert_eq!(p("user=u connect_timeout=0").connect_timeout, None);
}

#[test]
fn password_never_shows() {
    let c = p("postgres://bridge:hunter2@h/d?sslmode=verify-ca");
    let dbg = format!("{c:?}");
    assert!(!dbg.contains("hunter2"), "{dbg}");
    assert!(dbg.contains("password: Some(\"***\")"), "{dbg}");
    assert_eq!(format!("{:?}", c.password), "Some(***)");
    assert_eq!(
        c.password.as_ref().map(|p| p.to_string()).as_deref(),
        Some("***")
    );
    assert_eq!(
        c.redacted_url(),
        "postgres://bridge:***@h:5432/d?sslmode=verify-ca"
    );
}

#[test]
fn redacted_url_round_trips_everything_but_the_password() {
    let s = "postgres://a%20b:pw@h:1/d%2Fx?sslmode=disable&sslrootcert=/c%20a.pem\
             &application_name=n&connect_timeout=5";
    let c = p(s);
    let back = p(&c.redacted_url());
    assert_eq!(back.password.as_ref().map(Password::expose), Some("***"));
    assert_eq!(
        ConnectParams {
            password: c.password.clone(),
            ..back
        },
        c
    );
}

#[test]
fn tokio_postgres_config() {
    let c = p("postgres://u:pw@h:7/d?sslmode=verify-full&connect_timeout=4");
    let t = c.to_tokio_postgres();
    assert_eq!(t.get_user(), Some("u"));
    assert_eq!(t.get_password(), Some(&b"pw"[..]));
    assert_eq!(t.get_dbname(), Some("d"));
    assert_eq!(t.get_ports(), &[7]);
    assert_eq!(t.get_application_name(), Some("fuse-cdc-bridge"));
    assert_eq!(t.get_connect_timeout(), Some(&Duration::from_secs(4)));
    assert_eq!(t.get_ssl_mode(), tokio_postgres::config::SslMode::Require);
}
