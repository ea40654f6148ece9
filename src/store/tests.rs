use super::*;
use crate::event::EventId;

fn binding() -> SlotBinding {
    SlotBinding {
        system_id: "7312".into(),
        slot_name: "fuse_cdc_bridge".into(),
        bound_at: Lsn(100),
    }
}

fn out(payload: &str, key: &str, endpoints: &[&str]) -> Outgoing {
    Outgoing {
        payload: payload.as_bytes().to_vec(),
        key: key.into(),
        endpoints: endpoints
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .into(),
    }
}

/// A new store under `dir`, and a checkpoint (past LSN 800) to commit with.
fn fresh_store(dir: &tempfile::TempDir) -> (std::path::PathBuf, Store, Checkpoint) {
    let path = dir.path().join("state");
    let store = open_again(&path).unwrap();
    let cp = Checkpoint {
        binding: binding(),
        lsn: Lsn(900),
    };
    (path, store, cp)
}

/// Opens the store at `path`, waiting out the lock of one just dropped: sled's background
/// threads let go of the directory a moment after the last handle, and these tests reopen at
/// once (the bridge never does, in one process).
fn open_again(path: &std::path::Path) -> Result<Store, StoreError> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match Store::open(path) {
            Err(StoreError::Locked { .. }) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            other => return other,
        }
    }
}

fn id(lsn: u64, ordinal: u32) -> EventId {
    EventId {
        commit_lsn: Lsn(lsn),
        ordinal,
    }
}

fn payloads(store: &Store, endpoint: &str) -> Vec<(EventId, String)> {
    store
        .pending(endpoint, None)
        .map(|e| {
            let e = e.unwrap();
            (e.id, String::from_utf8(e.payload).unwrap())
        })
        .collect()
}

#[tokio::test]
async fn commit_fans_out_atomically_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    {
        let store = open_again(&state).unwrap();
        assert_eq!(store.checkpoint().unwrap(), None);
        let cp = Checkpoint {
            binding: binding(),
            lsn: Lsn(500),
        };
        let outgoing = vec![
            out("a", "user_id=1", &["hr", "lms"]),
            out("b", "user_id=2", &["lms"]),
        ];
        store.commit(&cp, Lsn(400), &outgoing).unwrap();
        store.flush().await.unwrap();
        assert_eq!(store.pending_total(), 3);
    }
    let store = open_again(&state).unwrap();
    assert_eq!(store.checkpoint().unwrap().unwrap().lsn, Lsn(500));
    assert_eq!(payloads(&store, "hr"), vec![(id(400, 0), "a".to_string())]);
    assert_eq!(
        payloads(&store, "lms"),
        vec![(id(400, 0), "a".to_string()), (id(400, 1), "b".to_string())]
    );
    // Counts are rebuilt from disk on open.
    let counts: Vec<(String, u64)> = store.pending_counts().into_iter().collect();
    assert_eq!(counts, vec![("hr".to_string(), 1), ("lms".to_string(), 2)]);
    let entry = store.outbox_entry("lms", id(400, 1)).unwrap().unwrap();
    assert_eq!(entry.state, DeliveryState::new("user_id=2"));
}

#[test]
fn entries_come_back_in_commit_order_and_resume_after_an_id() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_again(dir.path()).unwrap();
    let cp = Checkpoint {
        binding: binding(),
        lsn: Lsn(u64::MAX),
    };
    for lsn in [0x1_0000_0000u64, 0xFF, 0x1_0000] {
        store
            .commit(&cp, Lsn(lsn), &[out("x", "k", &["hr"])])
            .unwrap();
    }
    let lsns: Vec<u64> = payloads(&store, "hr")
        .iter()
        .map(|(id, _)| id.commit_lsn.0)
        .collect();
    assert_eq!(lsns, vec![0xFF, 0x1_0000, 0x1_0000_0000]);
    let after: Vec<u64> = store
        .pending("hr", Some(id(0xFF, 0)))
        .map(|e| e.unwrap().id.commit_lsn.0)
        .collect();
    assert_eq!(after, vec![0x1_0000, 0x1_0000_0000]);
    assert_eq!(store.pending("other", None).count(), 0);
}

#[test]
fn delivery_dead_letters_retry_and_purge() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_again(dir.path()).unwrap();
    let cp = Checkpoint {
        binding: binding(),
        lsn: Lsn(10),
    };
    store
        .commit(
            &cp,
            Lsn(10),
            &[out("a", "k1", &["hr"]), out("b", "k2", &["hr"])],
        )
        .unwrap();

    let mut state = DeliveryState::new("k1");
    state.attempts = 1;
    state.last_status = Some(503);
    store.update_state("hr", id(10, 0), &state, b"a").unwrap();
    assert_eq!(
        store.outbox_entry("hr", id(10, 0)).unwrap().unwrap().state,
        state
    );

    store.delivered("hr", id(10, 0)).unwrap();
    store.delivered("hr", id(10, 0)).unwrap(); // twice is harmless
    assert_eq!(store.pending_total(), 1);
    // An update of an entry that is gone does not bring it back.
    store.update_state("hr", id(10, 0), &state, b"a").unwrap();
    assert!(store.outbox_entry("hr", id(10, 0)).unwrap().is_none());

    let dead = DeadLetter {
        key: "k2".into(),
        attempts: 1,
        first_attempt_at: Some(5),
        dead_at: 6,
        last_status: Some(400),
        reason: "HTTP 400: bad request".into(),
    };
    store.dead_letter("hr", id(10, 1), &dead, b"b").unwrap();
    assert_eq!(store.pending_total(), 0);
    let letters: Vec<_> = store.dead_letters().map(|d| d.unwrap()).collect();
    assert_eq!(letters.len(), 1);
    assert_eq!(
        (letters[0].endpoint.as_str(), letters[0].id),
        ("hr", id(10, 1))
    );
    assert_eq!(letters[0].state, dead);
    assert_eq!(letters[0].payload, b"b");

    assert!(store.retry_dead_letter("hr", id(10, 1)).unwrap());
    assert!(!store.retry_dead_letter("hr", id(10, 1)).unwrap());
    assert_eq!(payloads(&store, "hr"), vec![(id(10, 1), "b".to_string())]);
    assert_eq!(
        store.outbox_entry("hr", id(10, 1)).unwrap().unwrap().state,
        DeliveryState::new("k2")
    );
    assert_eq!(store.dead_letters().count(), 0);

    store.dead_letter("hr", id(10, 1), &dead, b"b").unwrap();
    assert!(store.purge_dead_letter("hr", id(10, 1)).unwrap());
    assert_eq!(store.dead_letters().count(), 0);
    assert_eq!(store.pending_total(), 0);
}

#[test]
fn state_dir_is_private() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("a/b");
    let _store = open_again(&state).unwrap();
    let mode = std::fs::metadata(&state).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
}

#[test]
fn second_open_reports_lock_with_hint() {
    let dir = tempfile::tempdir().unwrap();
    let _first = Store::open(dir.path()).unwrap();
    // sled's lock is per process via flock on the same file; a second open in the same process
    // goes through a different file description, so it is refused like another process would be.
    let err = Store::open(dir.path()).unwrap_err();
    assert!(matches!(err, StoreError::Locked { .. }), "{err:?}");
    assert!(
        err.to_string().contains("in use by another process"),
        "{err}"
    );
}

#[test]
fn checkpoint_applies_only_to_its_own_slot() {
    let cp = Checkpoint {
        binding: binding(),
        lsn: Lsn(500),
    };
    assert_eq!(
        cp.check_applies("7312", "fuse_cdc_bridge", Lsn(300)),
        Ok(())
    );
    assert_eq!(
        cp.check_applies("7312", "fuse_cdc_bridge", Lsn(500)),
        Ok(())
    );
    assert!(matches!(
        cp.check_applies("9999", "fuse_cdc_bridge", Lsn(300)),
        Err(Mismatch::OtherSystem { .. })
    ));
    assert!(matches!(
        cp.check_applies("7312", "other", Lsn(300)),
        Err(Mismatch::OtherSlot { .. })
    ));
    // Re-created later: confirmed beyond anything we stored.
    assert!(matches!(
        cp.check_applies("7312", "fuse_cdc_bridge", Lsn(501)),
        Err(Mismatch::Moved { .. })
    ));
    // Before our binding point: not the slot we bound to.
    assert!(matches!(
        cp.check_applies("7312", "fuse_cdc_bridge", Lsn(99)),
        Err(Mismatch::Moved { .. })
    ));
}

#[tokio::test]
async fn staged_chunks_leave_a_mark_until_their_commit() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let cp = Checkpoint {
        binding: binding(),
        lsn: Lsn(700),
    };
    {
        let store = open_again(&state).unwrap();
        store.commit(&cp, Lsn(600), &[]).unwrap();
        let chunk = [out("a", "k1", &["hr", "lms"]), out("b", "k2", &["hr"])];
        store.stage(Lsn(800), 0, &chunk).unwrap();
        store
            .stage(Lsn(800), 2, &[out("c", "k3", &["hr"])])
            .unwrap();
        assert_eq!(store.pending_total(), 4);
        assert_eq!(
            store.checkpoint().unwrap().unwrap().lsn,
            Lsn(700),
            "staging moves no checkpoint"
        );
        // An idle advance keeps the mark: the transaction is still to come.
        let idle = Checkpoint {
            lsn: Lsn(750),
            ..cp.clone()
        };
        store.advance(&idle).unwrap();
        store.flush().await.unwrap();
    }
    // A crash before the commit: the mark says how far the transaction is stored.
    let store = open_again(&state).unwrap();
    assert_eq!(
        store.staged().unwrap(),
        Some(Staged {
            commit_lsn: Lsn(800),
            stored: 3
        })
    );
    assert_eq!(store.checkpoint().unwrap().unwrap().lsn, Lsn(750));
    assert_eq!(store.pending_total(), 4);
    // The rest comes at commit, numbered on, with the checkpoint; the mark goes.
    let done = Checkpoint {
        lsn: Lsn(900),
        ..cp.clone()
    };
    store
        .commit_from(&done, Lsn(800), 3, &[out("d", "k4", &["hr"])])
        .unwrap();
    assert_eq!(store.staged().unwrap(), None);
    assert_eq!(
        payloads(&store, "hr"),
        vec![
            (id(800, 0), "a".to_string()),
            (id(800, 1), "b".to_string()),
            (id(800, 2), "c".to_string()),
            (id(800, 3), "d".to_string())
        ]
    );
    assert_eq!(payloads(&store, "lms"), vec![(id(800, 0), "a".to_string())]);
    assert_eq!(store.checkpoint().unwrap().unwrap().lsn, Lsn(900));
    let counts: Vec<(String, u64)> = store.pending_counts().into_iter().collect();
    assert_eq!(counts, vec![("hr".to_string(), 4), ("lms".to_string(), 1)]);
}

#[tokio::test]
async fn runs_merge_with_single_entries_old_and_new() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_again(&dir.path().join("state")).unwrap();
    let cp = Checkpoint {
        binding: binding(),
        lsn: Lsn(500),
    };
    store
        .commit(&cp, Lsn(400), &[out("payload", "user_id=1", &["hr"])])
        .unwrap();
    // A commit is a run, not an entry per event.
    assert!(store
        .db
        .get(keys::outbox("hr", id(400, 0)))
        .unwrap()
        .is_none());
    let raw = store.db.get(keys::run("hr", id(400, 0))).unwrap().unwrap();
    assert_eq!(
        runs::decode_run(&raw).unwrap()[0].payload,
        b"payload".to_vec()
    );
    // Single entries as earlier builds wrote them: compact fresh (also what a dead letter put
    // back is), and a JSON state line then the payload.
    store
        .db
        .insert(
            keys::outbox("hr", id(300, 0)),
            &b"\x01\x00\x09user_id=0oldest"[..],
        )
        .unwrap();
    let old = outbox::entry_value(&DeliveryState::new("user_id=2"), b"older").unwrap();
    store
        .db
        .insert(keys::outbox("hr", id(450, 0)), old)
        .unwrap();
    let entries: Vec<_> = store.pending("hr", None).map(|e| e.unwrap()).collect();
    let got: Vec<_> = entries
        .iter()
        .map(|e| (e.id, e.state.key.as_str(), e.payload.as_slice()))
        .collect();
    assert_eq!(
        got,
        vec![
            (id(300, 0), "user_id=0", &b"oldest"[..]),
            (id(400, 0), "user_id=1", &b"payload"[..]),
            (id(450, 0), "user_id=2", &b"older"[..]),
        ]
    );
    assert!(entries.iter().all(|e| e.state.attempts == 0));
    // A damaged fresh entry is an error naming it, not a panic.
    store
        .db
        .insert(keys::outbox("hr", id(460, 0)), &b"\x01\x00\x50abc"[..])
        .unwrap();
    let last = store.pending("hr", Some(id(450, 0))).next().unwrap();
    assert!(matches!(last, Err(StoreError::Corrupt { .. })), "{last:?}");
    // So is a damaged run, at open; and one filed under another first id.
    let path = dir.path().join("state");
    let misfiled = store.db.get(keys::run("hr", id(400, 0))).unwrap().unwrap();
    store
        .db
        .insert(keys::run("hr", id(399, 0)), misfiled)
        .unwrap();
    store.flush().await.unwrap();
    drop(store);
    let reopened = open_again(&path);
    assert!(
        matches!(&reopened, Err(StoreError::Corrupt { what: "outbox run", detail }) if detail.contains("starts at")),
        "{reopened:?}"
    );
    drop(reopened);
    let raw = sled::open(path.join("sled")).unwrap();
    raw.remove(keys::run("hr", id(399, 0))).unwrap();
    raw.flush().unwrap();
    drop(raw);
    let store = open_again(&path).unwrap();
    store
        .db
        .insert(keys::run("hr", id(470, 0)), &b"\x02\x00\x00\x00\x05"[..])
        .unwrap();
    drop(store);
    let reopened = open_again(&dir.path().join("state"));
    assert!(
        matches!(
            reopened,
            Err(StoreError::Corrupt {
                what: "outbox run",
                ..
            })
        ),
        "{reopened:?}"
    );
}

/// Every outcome an entry of a run can have, across reopening: delivered (with other ids),
/// a failed attempt (out of the run, with its state), a dead letter; and a run whose entries are
/// all done leaves no key behind.
#[tokio::test]
async fn run_entries_leave_their_run_and_finished_runs_go() {
    let dir = tempfile::tempdir().unwrap();
    let (path, store, cp) = fresh_store(&dir);
    let events: Vec<Outgoing> = (0..5)
        .map(|n| out(&format!("p{n}"), &format!("user_id={n}"), &["hr", "lms"]))
        .collect();
    store.commit(&cp, Lsn(800), &events).unwrap();
    assert_eq!(store.pending_total(), 10);

    store
        .delivered_many("hr", &[id(800, 0), id(800, 3)])
        .unwrap();
    let failed = DeliveryState {
        attempts: 1,
        last_status: Some(503),
        ..DeliveryState::new("user_id=1")
    };
    store
        .update_state("hr", id(800, 1), &failed, b"p1")
        .unwrap();
    let dead = DeadLetter {
        key: "user_id=2".into(),
        attempts: 1,
        dead_at: 5,
        reason: "400".into(),
        ..DeadLetter::default()
    };
    store.dead_letter("hr", id(800, 2), &dead, b"p2").unwrap();
    let expect_hr = |store: &Store| {
        let entries: Vec<_> = store.pending("hr", None).map(|e| e.unwrap()).collect();
        let got: Vec<_> = entries.iter().map(|e| (e.id, e.state.attempts)).collect();
        assert_eq!(got, vec![(id(800, 1), 1), (id(800, 4), 0)]);
        assert_eq!(entries[0].payload, b"p1");
        assert_eq!(
            store.outbox_entry("hr", id(800, 1)).unwrap().unwrap().state,
            failed
        );
        assert_eq!(
            store
                .outbox_entry("hr", id(800, 4))
                .unwrap()
                .unwrap()
                .payload,
            b"p4"
        );
        assert!(store.outbox_entry("hr", id(800, 0)).unwrap().is_none());
        assert_eq!(
            store.pending_counts(),
            BTreeMap::from([("hr".to_string(), 2), ("lms".to_string(), 5)])
        );
        assert_eq!(store.dead_letters().count(), 1);
    };
    expect_hr(&store);
    // Deliveries are recorded a few hundred at a time: without a record (a crash) they are
    // owed again, same ids; delivery records them when it goes idle or stops.
    store.flush().await.unwrap();
    drop(store);
    let store = open_again(&path).unwrap();
    let owed: Vec<_> = store.pending("hr", None).map(|e| e.unwrap().id).collect();
    assert_eq!(owed, vec![id(800, 0), id(800, 1), id(800, 3), id(800, 4)]);
    store
        .delivered_many("hr", &[id(800, 0), id(800, 3)])
        .unwrap();
    store.record_done("hr").unwrap();
    store.flush().await.unwrap();
    drop(store);
    let store = open_again(&path).unwrap();
    expect_hr(&store);

    // The last entry owed from hr's run: the run and its records go.
    store.delivered("hr", id(800, 4)).unwrap();
    store.delivered("hr", id(800, 1)).unwrap();
    let lms: Vec<EventId> = (0..5).map(|n| id(800, n)).collect();
    store.delivered_many("lms", &lms).unwrap();
    assert_eq!(store.pending_total(), 0);
    assert!(store.pending("hr", None).next().is_none());
    let left: Vec<_> = store
        .db
        .iter()
        .keys()
        .map(|k| k.unwrap())
        .filter(|k| !k.starts_with(b"meta/") && !k.starts_with(keys::DEAD))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    store.flush().await.unwrap();
    drop(store);
    let store = open_again(&path).unwrap();
    assert_eq!(store.pending_total(), 0);
}

/// A crash between a done record and the removals it leads to: the next open finishes them.
#[tokio::test]
async fn open_finishes_runs_a_crash_left_done() {
    let dir = tempfile::tempdir().unwrap();
    let (path, store, cp) = fresh_store(&dir);
    store
        .commit(
            &cp,
            Lsn(800),
            &[out("a", "k=1", &["hr"]), out("b", "k=2", &["hr"])],
        )
        .unwrap();
    // What `delivered_many` writes before it removes anything, and a record left over.
    store
        .db
        .insert(
            keys::done("hr", 40),
            runs::record_value(&[id(800, 0), id(800, 1)]),
        )
        .unwrap();
    store
        .db
        .insert(keys::done("hr", 41), runs::record_value(&[id(700, 0)]))
        .unwrap();
    store.flush().await.unwrap();
    drop(store);
    let store = open_again(&path).unwrap();
    assert_eq!(store.pending_total(), 0);
    assert!(store.db.scan_prefix(keys::RUN).next().is_none());
    assert!(store.db.scan_prefix(keys::DONE).next().is_none());
}

#[tokio::test]
async fn a_group_writes_several_transactions_with_the_last_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_again(&dir.path().join("state")).unwrap();
    store
        .stage(Lsn(300), 0, &[out("s", "user_id=9", &["hr"])])
        .unwrap();
    assert!(store.staged().unwrap().is_some());
    let mut group = Group::default();
    group
        .add(Lsn(300), 1, &[out("t", "user_id=9", &["hr"])])
        .unwrap();
    group
        .add(Lsn(400), 0, &[out("a", "user_id=1", &["hr", "lms"])])
        .unwrap();
    group.add(Lsn(450), 0, &[]).unwrap();
    assert_eq!((group.transactions(), group.entries()), (3, 3));
    // Nothing is visible before the group is applied.
    assert_eq!(store.pending_total(), 1);
    assert_eq!(store.checkpoint().unwrap(), None);
    let cp = Checkpoint {
        binding: binding(),
        lsn: Lsn(460),
    };
    store.apply(group, &cp).unwrap();
    assert_eq!(store.checkpoint().unwrap().unwrap().lsn, Lsn(460));
    assert_eq!(store.staged().unwrap(), None);
    assert_eq!(store.pending_total(), 4);
    assert_eq!(
        payloads(&store, "hr"),
        vec![
            (id(300, 0), "s".to_string()),
            (id(300, 1), "t".to_string()),
            (id(400, 0), "a".to_string())
        ]
    );
    assert_eq!(payloads(&store, "lms"), vec![(id(400, 0), "a".to_string())]);
}

/// Deliveries are recorded once [`runs::RECORD_IDS`] of them wait (or the oldest has waited
/// [`runs::RECORD_AGE`]), without being asked: a crash sends fewer than that many again.
#[tokio::test]
async fn deliveries_are_recorded_every_few_dozen() {
    let dir = tempfile::tempdir().unwrap();
    let (path, store, cp) = fresh_store(&dir);
    let n = 300u32;
    let events: Vec<Outgoing> = (0..n)
        .map(|i| out(&format!("p{i}"), &format!("user_id={i}"), &["hr"]))
        .collect();
    store.commit(&cp, Lsn(800), &events).unwrap();
    // Every entry but the last of each run (so no run finishes), one at a time.
    let runs = runs::RUN_ENTRIES as u32;
    let delivered: Vec<u32> = (0..n)
        .filter(|i| i % runs != runs - 1 && *i != n - 1)
        .collect();
    for &i in &delivered {
        store.delivered("hr", id(800, i)).unwrap();
    }
    let owed = u64::from(n) - delivered.len() as u64;
    assert_eq!(store.pending_total(), owed);
    store.flush().await.unwrap();
    drop(store);
    let store = open_again(&path).unwrap();
    let again = store.pending_total() - owed;
    assert!(again < runs::RECORD_IDS as u64, "{again} owed again");
    assert!(store.db.scan_prefix(keys::DONE).count() >= delivered.len() / runs::RECORD_IDS);
}
