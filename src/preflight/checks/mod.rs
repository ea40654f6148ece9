//! The checks: pure functions from the config and the server's [`Facts`] to findings.

mod replication;
mod server;
mod tables;

use super::facts::Facts;
use super::report::Report;
use crate::config::Config;

/// Every finding, in the order an operator fixes things: server, role, tables, publication,
/// slot.
pub fn evaluate(config: &Config, facts: &Facts) -> Report {
    let mut findings = server::findings(facts);
    findings.extend(tables::findings(config, facts));
    findings.extend(replication::publication(config, facts));
    findings.extend(replication::slot(config, facts));
    Report { findings }
}

/// The role grants go to: the session's, or the configured user when that was unreadable.
fn role_name(facts: &Facts) -> &str {
    match &facts.role {
        Ok(role) => &role.name,
        Err(_) => &facts.user,
    }
}

#[cfg(test)]
mod tests;
