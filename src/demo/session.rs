//! One demo on a running cluster: schema, receiver, the bridge, activity, the live view, the
//! drain and the summary. The bridge and the state directory are stopped and removed on every
//! path out, errors included; the caller removes the cluster.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::activity::{self, Activity};
use super::arrival;
use super::endpoints::{config_text, demo_endpoints, free_loopback_addr, DemoEndpoint};
use super::expect::Expectations;
use super::summary::{print_header, Stats};
use super::{FUSE_SCHEMA, TABLES};
use crate::capture::stopped;
use crate::config::{Config, EventType};
use crate::ephemeral::Cluster;
use crate::pg::admin::Admin;
use crate::pg::dsn::ConnectParams;
use crate::receiver::{Received, Receiver, Reply, Responder};
use crate::Error;

/// How long the bridge may take from start to streaming before the demo gives up.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// After the activity stops, how long to wait for webhooks still on their way.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// After the last expected webhook, how long to keep listening for ones that should not come.
const SETTLE: Duration = Duration::from_millis(300);

pub async fn run(
    cluster: &Cluster,
    duration: Option<Duration>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), Error> {
    let params = ConnectParams::parse(&cluster.superuser_url())?;
    let admin = Admin::connect(&params).await?;
    let mut schema = String::from(FUSE_SCHEMA);
    for table in TABLES {
        schema.push_str(&format!("ALTER TABLE {table} REPLICA IDENTITY FULL;\n"));
    }
    admin.execute(&schema).await?;
    println!("Loaded the reference Fuse schema (REPLICA IDENTITY FULL on its five tables).");

    let (arrivals_tx, arrivals) = mpsc::unbounded_channel();
    let responder: Responder = Arc::new(move |r: &Received| {
        let _ = arrivals_tx.send(r.clone());
        Reply::status(204)
    });
    let receiver = Receiver::start(responder)
        .await
        .map_err(|e| Error::io("starting the demo's webhook receiver", e))?;
    let endpoints = demo_endpoints();
    println!(
        "Webhook receiver on http://{}, standing in for:",
        receiver.addr()
    );
    for e in &endpoints {
        let events: Vec<&str> = e.events.iter().map(|t| t.as_str()).collect();
        let events = if e.events.len() == EventType::ALL.len() {
            "all six event types".to_string()
        } else {
            events.join(", ")
        };
        let secret: String = e.secret.chars().take(10).collect();
        println!(
            "  {:<10} {} body, secret {secret}…, {events}",
            e.name,
            e.format_name()
        );
    }

    let state = tempfile::Builder::new()
        .prefix("fuse-demo-state-")
        .tempdir()
        .map_err(|e| Error::io("creating the demo's state directory", e))?;
    let text = config_text(
        &cluster.superuser_url(),
        &state.path().join("sled"),
        free_loopback_addr()?,
        receiver.addr(),
        &endpoints,
    );
    let config = Config::parse_str(&text, &|_| None)?;
    let slot = config.postgres.slot.clone();
    println!(
        "Starting the bridge in-process (what `run` runs), state in {}…",
        state.path().display()
    );
    let (stop_bridge, bridge_stop) = watch::channel(false);
    let mut bridge = Some(tokio::spawn(crate::app::run(config, bridge_stop)));

    let mut view = View {
        endpoints,
        arrivals,
        expectations: Expectations::default(),
        stats: Stats::default(),
    };
    let shown = show(
        &mut view,
        &params,
        &admin,
        &slot,
        &mut bridge,
        duration,
        &mut shutdown,
    )
    .await;

    let _ = stop_bridge.send(true);
    let stopped = match bridge.take() {
        Some(task) => joined(task.await),
        // It already stopped, and `show` reported why.
        None => Ok(()),
    };
    receiver.stop();
    let state_dir = state.path().to_path_buf();
    let removed = state.close();
    println!("Stopped the bridge and the receiver.");
    match removed {
        Ok(()) => println!("Removed the bridge's state in {}.", state_dir.display()),
        Err(e) => println!("warning: could not remove {}: {e}", state_dir.display()),
    }
    shown.and(stopped)
}

/// What the live view needs.
struct View {
    endpoints: Vec<DemoEndpoint>,
    arrivals: mpsc::UnboundedReceiver<Received>,
    expectations: Expectations,
    stats: Stats,
}

impl View {
    fn activity(&mut self, activity: Activity) {
        match activity {
            Activity::Committing { at, expected } => {
                self.expectations.committing(&self.endpoints, &expected, at)
            }
            Activity::Quiet { kind, detail } => self.stats.quiet(kind, &detail),
        }
    }

    fn arrived(&mut self, received: Received) {
        let arrival = arrival::parse(&received, &self.endpoints);
        let commit_at = arrival.event_type.as_ref().ok().and_then(|t| {
            self.expectations
                .arrived(&arrival.endpoint, *t, &arrival.params)
        });
        let latency = commit_at.map(|at| received.at.saturating_duration_since(at));
        self.stats.arrived(&arrival, latency);
    }
}

/// Waits for the bridge to stream, runs the activity for `duration` (or until `shutdown`),
/// waits for the webhooks still on their way, and prints the summary.
async fn show(
    view: &mut View,
    params: &ConnectParams,
    admin: &Admin,
    slot: &str,
    bridge: &mut Option<JoinHandle<Result<(), Error>>>,
    duration: Option<Duration>,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(), Error> {
    if !wait_streaming(admin, slot, bridge, shutdown).await? {
        println!("Interrupted before the bridge was streaming: no activity generated.");
        return Ok(());
    }
    // Its own connection: it runs BEGIN … COMMIT while `admin` polls.
    let generator_admin = Admin::connect(params).await?;
    let (activity_tx, mut activity) = mpsc::unbounded_channel();
    let (stop_generator, generator_stop) = watch::channel(false);
    let generator = tokio::spawn(activity::run(generator_admin, activity_tx, generator_stop));
    match duration {
        Some(d) => println!(
            "Streaming. Generating Fuse activity for {:.0} s (Ctrl-C stops earlier).\n",
            d.as_secs_f64()
        ),
        None => println!("Streaming. Generating Fuse activity until Ctrl-C.\n"),
    }
    print_header();
    let started = Instant::now();
    let deadline = async {
        match duration {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            // Activity first: an expectation must be recorded before its webhook is matched.
            biased;
            msg = activity.recv() => match msg {
                Some(a) => view.activity(a),
                // The generator ends only on stop, and stop is not sent yet: it failed.
                None => return joined(generator.await).map(|_| ()),
            },
            Some(r) = view.arrivals.recv() => view.arrived(r),
            r = bridge_stopped(bridge) => {
                generator.abort();
                return Err(r);
            }
            _ = &mut deadline => break,
            _ = stopped(shutdown) => break,
        }
    }
    let activity_time = started.elapsed();
    let _ = stop_generator.send(true);
    let transactions = joined(generator.await)?;
    drain(view, &mut activity, bridge).await?;
    let outstanding = view.expectations.outstanding();
    view.stats
        .print(&view.endpoints, activity_time, transactions, outstanding);
    Ok(())
}

/// Lets the webhooks of the last transactions arrive.
async fn drain(
    view: &mut View,
    activity: &mut mpsc::UnboundedReceiver<Activity>,
    bridge: &mut Option<JoinHandle<Result<(), Error>>>,
) -> Result<(), Error> {
    // The generator has stopped: everything it had to say is queued.
    while let Ok(a) = activity.try_recv() {
        view.activity(a);
    }
    let give_up = tokio::time::Instant::now() + DRAIN_TIMEOUT;
    let mut settle_until: Option<tokio::time::Instant> = None;
    loop {
        if view.expectations.outstanding() == 0 && settle_until.is_none() {
            settle_until = Some(tokio::time::Instant::now() + SETTLE);
        }
        let until = settle_until.map_or(give_up, |s| s.min(give_up));
        tokio::select! {
            Some(r) = view.arrivals.recv() => view.arrived(r),
            r = bridge_stopped(bridge) => return Err(r),
            _ = tokio::time::sleep_until(until) => return Ok(()),
        }
    }
}

/// Polls until the bridge's slot has a walsender attached: from then on every commit reaches it.
/// `false` when the user stopped the demo first.
async fn wait_streaming(
    admin: &Admin,
    slot: &str,
    bridge: &mut Option<JoinHandle<Result<(), Error>>>,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<bool, Error> {
    let give_up = Instant::now() + READY_TIMEOUT;
    loop {
        if admin
            .slot(slot)
            .await?
            .is_some_and(|s| s.active_pid.is_some())
        {
            return Ok(true);
        }
        if Instant::now() > give_up {
            return Err(Error::definite(
                format!("the bridge did not start streaming from slot {slot:?} within {READY_TIMEOUT:?}"),
                Some("run with RUST_LOG=info to see what it is doing".to_string()),
            ));
        }
        tokio::select! {
            r = bridge_stopped(bridge) => return Err(r),
            _ = stopped(shutdown) => return Ok(false),
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
    }
}

/// Resolves only when the bridge stops by itself, which in the demo is always a failure; then
/// forgets the task so nobody awaits it twice.
async fn bridge_stopped(bridge: &mut Option<JoinHandle<Result<(), Error>>>) -> Error {
    let Some(task) = bridge.as_mut() else {
        return std::future::pending().await;
    };
    let result = task.await;
    *bridge = None;
    match joined(result) {
        Ok(()) => Error::definite("the bridge stopped unexpectedly", None),
        Err(e) => e,
    }
}

fn joined<T>(result: Result<Result<T, Error>, tokio::task::JoinError>) -> Result<T, Error> {
    result.map_err(|e| Error::definite(format!("a demo task failed: {e}"), None))?
}
