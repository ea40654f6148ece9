//! Silence on the replication connection. A connection whose packets vanish without a reset (a
//! network partition, a peer frozen mid-frame) would leave capture waiting for hours, since TCP
//! alone notices nothing while we are only reading. A healthy walsender answers a status update
//! that asks for a reply at once, with a keepalive; so after a while of silence we ask, and a
//! connection that stays silent after asking is given up on (a transient error: capture
//! reconnects and resumes from its durable checkpoint).

use std::future::Future;
use std::time::Duration;

use crate::pg::replication::{ReplicationError, ReplicationStream, StreamEvent};
use crate::pg::wire::WireError;
use crate::Error;

/// Silence this long makes us ask for a reply. Idle servers send nothing while our status
/// updates keep them content, so this is a poll every few seconds at most.
pub(crate) const PROBE_AFTER: Duration = Duration::from_secs(5);
/// No answer this long after asking: the connection is dead. Also the limit for writing a
/// status update, which blocks for good once a peer stops reading and the socket fills up.
pub(crate) const DEAD_AFTER: Duration = Duration::from_secs(10);

pub(crate) struct Watchdog {
    addr: String,
    /// We asked for a reply and heard nothing since.
    probed: bool,
}

impl Watchdog {
    pub(crate) fn new(addr: String) -> Watchdog {
        Watchdog {
            addr,
            probed: false,
        }
    }

    /// The stream's next event, or an error once the server has been silent through a request
    /// for a reply.
    pub(crate) async fn next(
        &mut self,
        stream: &mut ReplicationStream,
    ) -> Result<StreamEvent, Error> {
        loop {
            let wait = if self.probed { DEAD_AFTER } else { PROBE_AFTER };
            // Cancelling `next` is safe while it reads (partial frames stay buffered); while it
            // writes a status update it only blocks when the peer stopped reading, and then the
            // connection is dropped below rather than used again.
            match tokio::time::timeout(wait, stream.next()).await {
                Ok(event) => {
                    self.probed = false;
                    return Ok(event?);
                }
                Err(_) if self.probed => return Err(self.dead(PROBE_AFTER + DEAD_AFTER)),
                Err(_) => {
                    self.bounded(stream.send_status(true)).await?;
                    self.probed = true;
                }
            }
        }
    }

    /// `write` within [`DEAD_AFTER`].
    pub(crate) async fn bounded<T>(
        &self,
        write: impl Future<Output = Result<T, ReplicationError>>,
    ) -> Result<T, Error> {
        match tokio::time::timeout(DEAD_AFTER, write).await {
            Ok(result) => Ok(result?),
            Err(_) => Err(self.dead(DEAD_AFTER)),
        }
    }

    fn dead(&self, after: Duration) -> Error {
        Error::Replication(ReplicationError::Wire(WireError::Io {
            addr: self.addr.clone(),
            source: std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!(
                    "nothing from the server for {} s, not even an answer to a status update \
                     asking for one: the connection is presumed dead",
                    after.as_secs()
                ),
            ),
        }))
    }
}
