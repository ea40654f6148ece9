//! Preflight: whether the database is ready for the bridge (`check`), and making it ready where
//! SQL can (`setup`).
//!
//! [`inspect`] connects as the configured role, reads what the checks need ([`facts`]), and
//! turns it into a [`Report`] of findings ([`checks`], pure). Each problem is `definite` (`run`
//! refuses to start: [`definite_problems`]) or a warning, and carries its fix: exact SQL, or an
//! instruction when SQL cannot do it. [`setup`] applies the fixes that are safe to automate.

mod checks;
mod commands;
mod facts;
mod report;
mod setup;

pub use commands::{check_command, setup_command, OutputFormat};
pub use facts::{Facts, PublicationFacts};
pub use report::{
    render_finding, render_text, summary, to_json, AutoFix, Check, Finding, FixStep, Report,
    Severity, Status,
};
pub use setup::{plan, Plan, SetupOptions};

use crate::config::Config;
use crate::pg::admin::Admin;
use crate::pg::dsn::ConnectParams;
use crate::Error;

/// Checks every prerequisite of `config` on its database, connecting as its role. Fails only
/// when it cannot connect or the connection drops meanwhile (or the connection string is
/// unusable); every other trouble is a finding.
pub async fn inspect(config: &Config) -> Result<Report, Error> {
    let (admin, params) = connect(config).await?;
    let report = inspect_with(&admin, &params, config).await;
    if admin.is_closed() {
        // Its "findings" are failed queries, not problems of the database: `run` waits and
        // checks again instead of refusing to start.
        return Err(crate::pg::admin::AdminError::ConnectionLost.into());
    }
    Ok(report)
}

pub(crate) async fn connect(config: &Config) -> Result<(Admin, ConnectParams), Error> {
    let params = ConnectParams::parse(config.postgres.url.expose())?;
    let admin = Admin::connect(&params).await?;
    Ok((admin, params))
}

pub(crate) async fn inspect_with(admin: &Admin, params: &ConnectParams, config: &Config) -> Report {
    let facts = Facts::gather(admin, params, config).await;
    checks::evaluate(config, &facts)
}

/// The problems `run` must refuse to start on.
pub fn definite_problems(report: &Report) -> Vec<&Finding> {
    report.findings.iter().filter(|f| f.is_definite()).collect()
}

/// `run`'s refusal: every definite problem, each with its fix, as one error; `None` when there
/// is none.
pub fn definite_error(report: &Report) -> Option<Error> {
    let problems = definite_problems(report);
    if problems.is_empty() {
        return None;
    }
    let message = problems
        .iter()
        .map(|f| f.message.as_str())
        .collect::<Vec<_>>()
        .join("; ");
    let fixes: Vec<String> = problems
        .iter()
        .flat_map(|f| &f.fix)
        .map(|step| match step {
            FixStep::Sql(s) | FixStep::Manual(s) => s.clone(),
        })
        .collect();
    let hint = if fixes.is_empty() {
        "run `fuse-cdc-bridge check` for details".to_string()
    } else {
        format!(
            "{} (`fuse-cdc-bridge check` lists them all)",
            fixes.join(" ")
        )
    };
    Some(Error::definite(
        format!("the database is not ready: {message}"),
        hint,
    ))
}
