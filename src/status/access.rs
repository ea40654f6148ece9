//! The state directory, read directly or through the running bridge that holds it.

use crate::config::Config;
use crate::dead_letters::{self, Filter, Listed};
use crate::http::client::AdminClient;
use crate::store::{Store, StoreError};
use crate::Error;

use super::{Source, Status};

/// sled admits one process: when a running bridge holds the state directory, its admin routes
/// answer for it.
pub enum Access {
    Direct(Store),
    Bridge(AdminClient),
}

impl Access {
    pub fn open(config: &Config) -> Result<Access, Error> {
        match Store::open(&config.state.dir) {
            Ok(store) => Ok(Access::Direct(store)),
            Err(StoreError::Locked { .. }) => {
                Ok(Access::Bridge(AdminClient::new(config.http.listen)?))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The whole status document, the database part included.
    pub async fn status(&self, config: &Config) -> Result<Status, Error> {
        match self {
            Access::Direct(store) => {
                let mut status = super::local(config, store, Source::State, None, None)?;
                status.database = super::database(config).await;
                Ok(status)
            }
            Access::Bridge(client) => client.status().await,
        }
    }

    pub async fn dead_letters(&self, filter: &Filter) -> Result<Vec<Listed>, Error> {
        match self {
            Access::Direct(store) => dead_letters::list(store, filter),
            Access::Bridge(client) => client.dead_letters(filter).await,
        }
    }

    /// Puts the selected dead letters back in the outbox; a running bridge sends them at once.
    pub async fn retry(&self, filter: &Filter, all: bool) -> Result<usize, Error> {
        match self {
            Access::Direct(store) => dead_letters::retry(store, filter, all),
            Access::Bridge(client) => client.retry(filter, all).await,
        }
    }

    pub async fn purge(&self, filter: &Filter, all: bool) -> Result<usize, Error> {
        match self {
            Access::Direct(store) => dead_letters::purge(store, filter, all),
            Access::Bridge(client) => client.purge(filter, all).await,
        }
    }
}
