//! The dispatcher on its own: a store filled by hand, a real receiver on loopback, and a window
//! far smaller than the backlog.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{watch, Notify};

use fuse_cdc_bridge::capture::Progress;
use fuse_cdc_bridge::config::{Config, EventType};
use fuse_cdc_bridge::dispatch::{Dispatcher, Wakeups};
use fuse_cdc_bridge::event::{Event, EventId, EventParam};
use fuse_cdc_bridge::receiver::{Received, Receiver, Reply, Responder};
use fuse_cdc_bridge::store::{Checkpoint, Outgoing, SlotBinding, Store};
use fuse_cdc_bridge::Lsn;

fn event(user: u32) -> Event {
    Event {
        event_type: EventType::UserUpdated,
        params: vec![EventParam {
            name: "user_id".into(),
            value: Some(user.to_string()),
            integer: true,
            column: "id".into(),
        }],
        commit_time: 0,
        table: "public.users".into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_window_still_delivers_everything_in_order_and_a_failing_user_blocks_no_one() {
    const USERS: u32 = 30;
    const PER_USER: u32 = 10;
    let failing_until = Instant::now() + Duration::from_millis(1500);
    let responder: Responder = Arc::new(move |r: &Received| {
        if r.body == b"user_id=1" && Instant::now() < failing_until {
            Reply::status(503)
        } else {
            Reply::status(200)
        }
    });
    let hooks = Receiver::start(responder).await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let checkpoint = Checkpoint {
        binding: SlotBinding {
            system_id: "1".into(),
            slot_name: "s".into(),
            bound_at: Lsn(0),
        },
        lsn: Lsn(0),
    };
    // User 1's events come first in the outbox, so the window starts full of them, all blocked behind the failing head.
    let mut lsn = 0x100;
    for user in std::iter::repeat_n(1, PER_USER as usize)
        .chain((2..=USERS).flat_map(|u| std::iter::repeat_n(u, PER_USER as usize)))
    {
        let e = event(user);
        lsn += 0x10;
        store
            .commit(
                &checkpoint,
                Lsn(lsn),
                &[Outgoing {
                    payload: e.to_bytes(),
                    key: e.ordering_key(),
                    endpoints: vec!["hr".to_string()].into(),
                }],
            )
            .unwrap();
    }

    let text = format!(
        "[postgres]\nurl = \"postgres://u@127.0.0.1/db\"\n[state]\ndir = \"/x\"\n[[endpoints]]\nname = \"hr\"\nurl = \"{}\"\nconcurrency = 4\nbackoff = {{ initial = \"100ms\", max = \"200ms\" }}\n",
        hooks.url("/")
    );
    let config = Config::parse_str(&text, &|_| None).unwrap();
    let dispatcher = Dispatcher::new(config.endpoints[0].clone(), store.clone())
        .unwrap()
        .with_window(PER_USER as usize);
    let (_progress_tx, progress_rx) = watch::channel(Progress::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let wake = Wakeups {
        committed: progress_rx,
        rescan: Arc::new(Notify::new()),
    };
    let task = tokio::spawn(dispatcher.run(wake, stop_rx));

    let total = (USERS * PER_USER) as usize;
    let deadline = Instant::now() + Duration::from_secs(30);
    while store.pending_total() > 0 {
        assert!(Instant::now() < deadline, "{} left", store.pending_total());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop_tx.send(true).unwrap();
    task.await.unwrap().unwrap();

    let got = hooks.received();
    let delivered: Vec<&Received> = got
        .iter()
        .filter(|r| !(r.body == b"user_id=1" && r.at < failing_until))
        .collect();
    assert_eq!(delivered.len(), total);
    let mut per_user: BTreeMap<String, Vec<EventId>> = BTreeMap::new();
    for r in &delivered {
        let id = EventId::parse(r.header("webhook-id").unwrap()).unwrap();
        per_user
            .entry(String::from_utf8(r.body.clone()).unwrap())
            .or_default()
            .push(id);
    }
    assert_eq!(per_user.len(), USERS as usize);
    for (user, ids) in &per_user {
        assert_eq!(ids.len(), PER_USER as usize, "{user}");
        assert!(
            ids.windows(2).all(|w| w[0] < w[1]),
            "{user} out of order: {ids:?}"
        );
    }
    // Everyone else was served while user 1's head kept failing, though user 1 filled the window.
    let others_done = delivered
        .iter()
        .filter(|r| r.body != b"user_id=1")
        .map(|r| r.at)
        .max()
        .unwrap();
    assert!(others_done < failing_until, "other users waited for user 1");
}
