//! Delivery: turning an event into an HTTP request to one endpoint, and the retry policy.
//!
//! The pieces, from pure to I/O:
//!
//! - [`payload`]: the request body (form or JSON) of an event.
//! - [`signing`]: Standard Webhooks signatures (`webhook-signature`).
//! - [`retry`]: backoff delays and when to give up.
//! - [`outcome`]: what an attempt came to ([`Attempt`]), from a status, headers and body.
//! - [`client`]: [`EndpointClient`], one HTTP client per endpoint; `send` makes one attempt.
//!
//! Which event goes when (the outbox, per-user ordering, dead letters) is the dispatcher's
//! business; this module only makes single attempts and answers "how long until the next one?"
//! and "is it time to give up?".

pub mod client;
pub mod error;
pub mod outcome;
pub mod payload;
pub mod retry;
pub mod signing;

pub use client::EndpointClient;
pub use error::DeliveryError;
pub use outcome::{Attempt, AttemptReport};
pub use payload::PayloadError;
pub use retry::{backoff_delay, exhausted};
pub use signing::{SigningKey, SigningKeyError};
