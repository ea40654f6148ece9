//! Hostile bytes from a walsender: a fake one on loopback gets the replication code streaming,
//! then sends truncated, oversized and garbage frames. The replication session and the decoder
//! must return an error (naming the problem) every time: never a panic, never a hang.

mod support;

use std::time::Duration;

use tokio::sync::watch;

use fuse_cdc_bridge::pg::dsn::ConnectParams;
use fuse_cdc_bridge::pg::replication::{ReplicationError, ReplicationSession, StreamEvent};
use fuse_cdc_bridge::pgoutput::{encode_keepalive, encode_xlog_data, DecodeError, Decoder, Item};
use fuse_cdc_bridge::Lsn;

use support::bridge::sized;
use support::walsender::{copy_data, frame, FakeWalsender, Then};

/// How a session against the fake ended.
#[derive(Debug)]
enum Ended {
    Replication(ReplicationError),
    Decode(DecodeError),
}

impl Ended {
    fn text(&self) -> String {
        match self {
            Ended::Replication(e) => e.to_string(),
            Ended::Decode(e) => e.to_string(),
        }
    }
}

/// Streams from a fake that sends `stream` then does `then`; returns the items decoded before
/// the end, and the end. Panics if it takes longer than 10 s: that is a hang.
fn drive(stream: Vec<u8>, then: Then) -> (Vec<&'static str>, Ended) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let fake = FakeWalsender::start(stream, then).await;
        let params = ConnectParams::parse(&fake.url()).unwrap();
        let session = async {
            let mut seen = Vec::new();
            let mut repl = ReplicationSession::connect(&params, "faults")
                .await
                .map_err(|e| (Vec::new(), Ended::Replication(e)))?;
            repl.identify_system()
                .await
                .map_err(|e| (Vec::new(), Ended::Replication(e)))?;
            let (_flushed_tx, flushed) = watch::channel(Lsn::ZERO);
            let mut stream = repl
                .start("s", Lsn::ZERO, "p", Duration::from_millis(100), flushed)
                .await
                .map_err(|e| (Vec::new(), Ended::Replication(e)))?;
            let mut decoder = Decoder::new();
            loop {
                match stream.next().await {
                    Ok(StreamEvent::Data { data, .. }) => match decoder.decode(&data) {
                        Ok(Some(item)) => seen.push(kind(&item)),
                        Ok(None) => {}
                        Err(e) => return Err::<(), _>((seen, Ended::Decode(e))),
                    },
                    Ok(StreamEvent::Keepalive { .. }) => seen.push("keepalive"),
                    Err(e) => return Err((seen, Ended::Replication(e))),
                }
            }
        };
        match tokio::time::timeout(Duration::from_secs(10), session).await {
            Ok(Err(ended)) => ended,
            Ok(Ok(())) => unreachable!(),
            Err(_) => panic!("the replication code hung on hostile input"),
        }
    })
}

fn kind(item: &Item) -> &'static str {
    match item {
        Item::Begin { .. } => "begin",
        Item::Relation(_) => "relation",
        Item::Change(_) => "change",
        Item::Truncate { .. } => "truncate",
        Item::Message { .. } => "message",
        Item::Commit { .. } => "commit",
    }
}

fn xlog(data: &[u8]) -> Vec<u8> {
    copy_data(&encode_xlog_data(Lsn(0x100), Lsn(0x200), 0, data))
}

fn begin(final_lsn: u64, xid: u32) -> Vec<u8> {
    let mut m = vec![b'B'];
    m.extend_from_slice(&final_lsn.to_be_bytes());
    m.extend_from_slice(&0i64.to_be_bytes());
    m.extend_from_slice(&xid.to_be_bytes());
    m
}

fn commit(commit_lsn: u64, end_lsn: u64) -> Vec<u8> {
    let mut m = vec![b'C', 0];
    m.extend_from_slice(&commit_lsn.to_be_bytes());
    m.extend_from_slice(&end_lsn.to_be_bytes());
    m.extend_from_slice(&0i64.to_be_bytes());
    m
}

/// `public.t` with text columns `names`; `declared` columns in the header.
fn relation(id: u32, names: &[&str], declared: i16) -> Vec<u8> {
    let mut m = vec![b'R'];
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(b"public\0t\0");
    m.push(b'f');
    m.extend_from_slice(&declared.to_be_bytes());
    for name in names {
        m.push(0);
        m.extend_from_slice(name.as_bytes());
        m.push(0);
        m.extend_from_slice(&25u32.to_be_bytes());
        m.extend_from_slice(&(-1i32).to_be_bytes());
    }
    m
}

/// An insert into relation `id`: `declared` columns, then `values` as text.
fn insert(id: u32, declared: i16, values: &[&[u8]]) -> Vec<u8> {
    let mut m = vec![b'I'];
    m.extend_from_slice(&id.to_be_bytes());
    m.push(b'N');
    m.extend_from_slice(&declared.to_be_bytes());
    for v in values {
        m.push(b't');
        m.extend_from_slice(&(v.len() as i32).to_be_bytes());
        m.extend_from_slice(v);
    }
    m
}

/// A valid transaction: relation, begin, one insert, commit.
fn valid_transaction() -> Vec<u8> {
    let mut s = xlog(&begin(0x180, 7));
    s.extend(xlog(&relation(16384, &["id", "name"], 2)));
    s.extend(xlog(&insert(16384, 2, &[b"1", b"ada"])));
    s.extend(xlog(&commit(0x180, 0x200)));
    s
}

/// Each case: what the fake sends, then what the error must say, and whether it is transient
/// (a reconnect may help) or definite (capture stops and says why).
fn check(
    name: &str,
    stream: Vec<u8>,
    then: Then,
    says: &str,
    transient: bool,
) -> Vec<&'static str> {
    let (seen, ended) = drive(stream, then);
    let text = ended.text();
    eprintln!("{name}: {text}");
    assert!(
        text.contains(says),
        "{name}: {text:?} does not say {says:?}"
    );
    let is_transient = match &ended {
        Ended::Replication(e) => e.is_transient(),
        Ended::Decode(_) => false,
    };
    assert_eq!(is_transient, transient, "{name}: {ended:?}");
    seen
}

#[test]
fn frames_with_impossible_lengths_are_protocol_errors() {
    check(
        "length 2",
        b"d\x00\x00\x00\x02".to_vec(),
        Then::Linger,
        "invalid length 2",
        false,
    );
    check(
        "length 2^31-1",
        b"d\x7f\xff\xff\xff".to_vec(),
        Then::Linger,
        "invalid length 2147483647",
        false,
    );
    check(
        "unknown tag",
        frame(0xFF, b"abc"),
        Then::Linger,
        "unexpected message",
        false,
    );
    check(
        "ErrorResponse mid-stream",
        frame(b'E', b"SERROR\0C58000\0Mdisk on fire\0\0"),
        Then::Linger,
        "disk on fire",
        false,
    );
}

#[test]
fn frames_cut_off_by_a_closed_connection_end_with_a_reconnectable_error() {
    // 512 MiB announced, a kilobyte sent: the reader must not allocate for the announcement.
    let mut huge = b"d".to_vec();
    huge.extend_from_slice(&(512u32 << 20).to_be_bytes());
    huge.extend(vec![b'w'; 1024]);
    check(
        "huge frame cut off",
        huge,
        Then::Close,
        "closed the connection",
        true,
    );
    let mut half = xlog(&begin(0x180, 7));
    half.truncate(half.len() / 2);
    check(
        "half a frame",
        half,
        Then::Close,
        "closed the connection",
        true,
    );
    let mut rest = valid_transaction();
    rest.extend(&xlog(&insert(16384, 2, &[b"2", b"grace"]))[..20]);
    let seen = check(
        "valid then cut off",
        rest,
        Then::Close,
        "closed the connection",
        true,
    );
    assert_eq!(seen, ["begin", "relation", "change", "commit"]);
}

#[test]
fn broken_envelopes_are_decode_errors() {
    check(
        "empty CopyData",
        copy_data(b""),
        Then::Linger,
        "empty",
        false,
    );
    check(
        "XLogData header cut",
        copy_data(b"w\x00\x00\x01\x02"),
        Then::Linger,
        "XLogData",
        false,
    );
    check(
        "unknown envelope",
        copy_data(b"x0123456789"),
        Then::Linger,
        "unknown",
        false,
    );
    check(
        "keepalive cut",
        copy_data(&encode_keepalive(Lsn(9), 0, false)[..5]),
        Then::Linger,
        "keepalive",
        false,
    );
}

#[test]
fn garbage_pgoutput_is_a_decode_error_after_the_valid_part() {
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "unknown message",
            xlog(b"Z123"),
            "unknown pgoutput message tag 'Z'",
        ),
        (
            "insert before begin",
            xlog(&insert(16384, 1, &[b"1"])),
            "Insert outside a transaction",
        ),
        (
            "commit before begin",
            xlog(&commit(0x180, 0x200)),
            "Commit outside a transaction",
        ),
        (
            "nested begin",
            [xlog(&begin(0x180, 7)), xlog(&begin(0x190, 8))].concat(),
            "Begin of xid 8 while xid 7 is still open",
        ),
        (
            "unknown relation",
            [xlog(&begin(0x180, 7)), xlog(&insert(99, 1, &[b"1"]))].concat(),
            "relation OID 99, which no Relation message has described",
        ),
        (
            "relation claims 30000 columns",
            xlog(&relation(1, &["a"], 30000)),
            "truncated column flags",
        ),
        (
            "negative column count",
            xlog(&relation(1, &[], -5)),
            "truncated column flags",
        ),
        (
            "tuple of 5 columns for 2",
            [
                xlog(&begin(0x180, 7)),
                xlog(&relation(16384, &["id", "name"], 2)),
                xlog(&insert(16384, 5, &[b"1", b"2", b"3", b"4", b"5"])),
            ]
            .concat(),
            "tuple has 5 columns, relation has 2",
        ),
        (
            "value claims a gigabyte",
            [
                xlog(&begin(0x180, 7)),
                xlog(&relation(16384, &["id"], 1)),
                xlog(&{
                    let mut m = insert(16384, 1, &[]);
                    m.extend_from_slice(b"t\x3f\xff\xff\xffabc");
                    m
                }),
            ]
            .concat(),
            "need 1073741823 bytes, 3 left",
        ),
        (
            "commit for another transaction",
            [xlog(&begin(0x180, 7)), xlog(&commit(0x999, 0xA00))].concat(),
            "Commit at LSN 0/999 does not match its Begin's final LSN 0/180",
        ),
        (
            "invalid UTF-8 name",
            xlog(b"R\x00\x00\x00\x01\xff\xfe\0t\0f\x00\x00"),
            "namespace at offset 5 is not valid UTF-8",
        ),
    ];
    for (name, stream, says) in cases {
        let mut all = valid_transaction();
        all.extend(stream);
        let seen = check(name, all, Then::Linger, says, false);
        assert_eq!(
            seen[..4],
            ["begin", "relation", "change", "commit"],
            "{name}"
        );
    }
}

/// Deterministic noise, so a failing seed can be replayed.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[test]
fn random_frames_end_in_an_error_never_a_panic_or_a_hang() {
    let seeds = sized(150u64, 3000);
    let mut endings = std::collections::BTreeMap::<&str, usize>::new();
    for seed in 0..seeds {
        // Valid framing around random envelopes and random pgoutput, or plain random bytes.
        let bytes = noise(seed, 16 + (seed as usize * 37) % 600);
        let stream = match seed % 3 {
            0 => bytes,
            1 => copy_data(&bytes),
            _ => [valid_transaction(), xlog(&bytes)].concat(),
        };
        let (_, ended) = drive(stream, Then::Close);
        let kind = match ended {
            Ended::Decode(_) => "decode error",
            Ended::Replication(ReplicationError::Decode(_)) => "envelope error",
            Ended::Replication(ref e) if e.is_transient() => "connection closed",
            Ended::Replication(_) => "protocol error",
        };
        *endings.entry(kind).or_default() += 1;
    }
    eprintln!("FIGURES random walsender frames: {seeds} sessions, endings {endings:?}");
    assert_eq!(endings.values().sum::<usize>(), seeds as usize);
    assert!(
        endings.len() >= 3,
        "the noise reached several layers: {endings:?}"
    );
}
