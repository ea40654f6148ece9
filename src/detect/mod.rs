//! Detection: row changes in, Fuse events out, as the configured rules say.
//!
//! [`detect`] is the pure core: one [`RowChange`](crate::pgoutput::RowChange) against the rule
//! set gives zero or more [`Event`](crate::event::Event)s, in rule order. [`Detector`] is the
//! capture [`Handler`](crate::capture::Handler) around it: it gathers the open transaction's
//! events (never its rows) and hands them over at commit, and it refuses a table whose
//! description lacks a column a rule reads, before that transaction can be confirmed.
//!
//! When an update arrives without the full old row (the table lacks REPLICA IDENTITY FULL), a
//! rule that compares old and new values cannot tell a real change from a bookkeeping one. It
//! fires anyway, since a duplicate webhook is better than a missed one, and warns once per table.

mod columns;
mod evaluate;
mod handler;
mod identity;
mod params;

pub use columns::{check_relation, MissingColumn};
pub use evaluate::detect;
pub use handler::Detector;

#[cfg(test)]
mod tests;
