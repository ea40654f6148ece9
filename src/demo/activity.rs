//! Fuse's side of the demo: realistic writes to the reference schema, a few per second, each in
//! its own transaction. The demo learns before each COMMIT which webhooks it should cause, and
//! after it which writes must cause none.

mod steps;

use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tokio_postgres::types::ToSql;
use tokio_postgres::Client;

use super::expect::Expected;
use crate::pg::admin::Admin;
use crate::Error;

/// What the generator tells the demo about each transaction.
pub enum Activity {
    /// Sent just before COMMIT: the webhooks this transaction should cause.
    Committing {
        at: Instant,
        expected: Vec<Expected>,
    },
    /// A committed (or rolled back) write that must cause no webhook; `kind` is a plural noun
    /// for the summary.
    Quiet { kind: &'static str, detail: String },
}

const PACE: Duration = Duration::from_millis(250);

/// Runs until `stop`; returns the number of transactions it ran. A transaction in progress when
/// `stop` comes is finished, so every expectation it announced can still be met.
pub async fn run(
    admin: Admin,
    out: mpsc::UnboundedSender<Activity>,
    mut stop: watch::Receiver<bool>,
) -> Result<u64, Error> {
    let mut fuse = Fuse {
        admin,
        out,
        ids: steps::Ids::default(),
        transactions: 0,
    };
    let mut tick = tokio::time::interval(PACE);
    for step in 0usize.. {
        tokio::select! {
            _ = tick.tick() => {}
            _ = crate::capture::stopped(&mut stop) => break,
        }
        fuse.step(step).await?;
    }
    Ok(fuse.transactions)
}

/// A connection playing Fuse, and the rows its current round works on.
struct Fuse {
    admin: Admin,
    out: mpsc::UnboundedSender<Activity>,
    ids: steps::Ids,
    transactions: u64,
}

impl Fuse {
    fn db(&self) -> &Client {
        self.admin.client()
    }

    async fn begin(&self) -> Result<(), Error> {
        self.db().batch_execute("BEGIN").await.map_err(db("BEGIN"))
    }

    async fn exec(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<(), Error> {
        self.db()
            .execute(sql, params)
            .await
            .map(|_| ())
            .map_err(db(sql))
    }

    /// Runs a `… RETURNING id`.
    async fn id(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<i64, Error> {
        let row = self.db().query_one(sql, params).await.map_err(db(sql))?;
        row.try_get(0).map_err(db(sql))
    }

    async fn commit(&mut self, expected: Vec<Expected>) -> Result<(), Error> {
        // Before COMMIT, so the demo knows what to expect before anything can arrive.
        self.tell(Activity::Committing {
            at: Instant::now(),
            expected,
        });
        self.finish("COMMIT").await
    }

    /// Ends the transaction (COMMIT or ROLLBACK), which must cause no webhook.
    async fn quiet(&mut self, end: &str, kind: &'static str, detail: String) -> Result<(), Error> {
        self.finish(end).await?;
        self.tell(Activity::Quiet { kind, detail });
        Ok(())
    }

    async fn finish(&mut self, end: &str) -> Result<(), Error> {
        self.db().batch_execute(end).await.map_err(db(end))?;
        self.transactions += 1;
        Ok(())
    }

    fn tell(&self, activity: Activity) {
        // The demo drops its side only once it no longer listens.
        let _ = self.out.send(activity);
    }
}

fn db(what: &str) -> impl FnOnce(tokio_postgres::Error) -> Error {
    let what = what.split_whitespace().collect::<Vec<_>>().join(" ");
    move |e| {
        Error::definite(
            format!("the demo's Fuse activity failed on {what:?}: {e}"),
            None,
        )
    }
}
