//! Group commit: one fsync for all the transactions committed during a short window.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::lsn::Lsn;
use crate::store::{Store, StoreError};

/// The flusher task's handle: feed it committed positions, read back durable ones.
pub struct Flusher {
    committed: watch::Sender<Lsn>,
    flushed: watch::Receiver<Lsn>,
    failure: Arc<Mutex<Option<StoreError>>>,
    task: JoinHandle<()>,
}

impl Flusher {
    /// Starts flushing `store`; `start` is already durable.
    pub fn spawn(store: Store, start: Lsn, window: Duration) -> Flusher {
        let (committed, mut committed_rx) = watch::channel(start);
        let (flushed_tx, flushed) = watch::channel(start);
        let failure = Arc::new(Mutex::new(None));
        let failure_slot = Arc::clone(&failure);
        let task = tokio::spawn(async move {
            while committed_rx.changed().await.is_ok() {
                tokio::time::sleep(window).await;
                // Everything committed before this read is in sled's memory; the flush covers it.
                let target = *committed_rx.borrow_and_update();
                if let Err(e) = store.flush().await {
                    if let Ok(mut slot) = failure_slot.lock() {
                        *slot = Some(e);
                    }
                    return;
                }
                flushed_tx.send_if_modified(|current| {
                    let advanced = target > *current;
                    *current = (*current).max(target);
                    advanced
                });
            }
        });
        Flusher {
            committed,
            flushed,
            failure,
            task,
        }
    }

    /// Records that the store holds everything up to `lsn` (not yet durable).
    pub fn committed(&self, lsn: Lsn) {
        self.committed.send_if_modified(|current| {
            let advanced = lsn > *current;
            *current = (*current).max(lsn);
            advanced
        });
    }

    /// A receiver of durable positions.
    pub fn flushed(&self) -> watch::Receiver<Lsn> {
        self.flushed.clone()
    }

    /// The error that stopped the flusher, if any: the disk refused a write.
    pub fn take_failure(&self) -> Option<StoreError> {
        self.failure.lock().ok().and_then(|mut slot| slot.take())
    }

    /// Makes everything committed so far durable now, for a clean shutdown.
    pub async fn drain(&self, store: &Store) -> Result<Lsn, StoreError> {
        let target = *self.committed.borrow();
        store.flush().await?;
        Ok(target)
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        self.task.abort();
    }
}
