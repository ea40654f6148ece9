//! The `check` and `setup` commands: inspect, print, and for `setup` run the planned fixes.

use std::io::Write;

use super::report::{plural, render_finding, render_text, to_json, AutoFix, Finding};
use super::setup::{plan, SetupOptions};
use super::{connect, inspect, inspect_with};
use crate::config::Config;
use crate::Error;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputFormat {
    Text,
    Json,
}

/// Prints the report on `out`; `Ok(true)` when there is nothing to fix (warnings count).
pub async fn check_command(
    config: &Config,
    format: OutputFormat,
    out: &mut dyn Write,
) -> Result<bool, Error> {
    let report = inspect(config).await?;
    let text = match format {
        OutputFormat::Text => render_text(&report),
        OutputFormat::Json => format!("{:#}\n", to_json(&report)),
    };
    emit(out, &text)?;
    Ok(report.is_clean())
}

/// Applies the fixes `setup` may apply, printing each statement before running it, then prints
/// what is left. `Ok(true)` when nothing failed and nothing remains but opt-in suggestions.
pub async fn setup_command(
    config: &Config,
    opts: SetupOptions,
    out: &mut dyn Write,
) -> Result<bool, Error> {
    let (admin, params) = connect(config).await?;
    let before = inspect_with(&admin, &params, config).await;
    if before.is_clean() {
        emit(
            out,
            "setup: nothing to do: everything setup manages is already in place\n",
        )?;
        return Ok(true);
    }
    let planned = plan(&before, opts);
    let (mut ran, mut failed) = (0, 0);
    for f in &planned.apply {
        for sql in f.statements() {
            if opts.dry_run {
                emit(out, &format!("would run: {sql}\n"))?;
                ran += 1;
                continue;
            }
            emit(out, &format!("run: {sql}\n"))?;
            ran += 1;
            if let Err(e) = admin.execute(sql).await {
                let hint = e.hint().map(|h| format!(" ({h})")).unwrap_or_default();
                emit(out, &format!("failed: {e}{hint}\n"))?;
                failed += 1;
                // The finding's later statements depend on this one.
                break;
            }
        }
    }
    // Once something ran, what is left is what the server says now, not what was planned.
    let after = if opts.dry_run || ran == 0 {
        None
    } else {
        Some(inspect_with(&admin, &params, config).await)
    };
    let problems: Vec<&Finding> = match &after {
        Some(report) => report.problems().collect(),
        None => planned
            .remaining
            .iter()
            .chain(&planned.deferred)
            .chain(&planned.suggested)
            .copied()
            .collect(),
    };
    let opt_in =
        |f: &&Finding| f.auto == AutoFix::WithReplicaIdentityFull && !opts.replica_identity_full;
    let (suggested, remaining): (Vec<&Finding>, Vec<&Finding>) =
        problems.into_iter().partition(opt_in);
    for f in remaining.iter().chain(&suggested) {
        emit(out, &render_finding(f))?;
    }
    let line = setup_summary(opts, ran, failed, remaining.len(), suggested.len());
    emit(out, &format!("{line}\n"))?;
    Ok(failed == 0 && remaining.is_empty())
}

fn setup_summary(
    opts: SetupOptions,
    ran: usize,
    failed: usize,
    remaining: usize,
    suggested: usize,
) -> String {
    let statements = plural(ran, "statement", "statements");
    let mut parts = vec![if opts.dry_run {
        format!("setup: dry run: {statements} would run, nothing was changed")
    } else if ran == 0 {
        "setup: nothing to run".to_string()
    } else if failed > 0 {
        format!("setup: ran {statements}, {failed} failed")
    } else {
        format!("setup: ran {statements}")
    }];
    if remaining > 0 {
        let (n, verb) = match remaining {
            1 => ("1 problem".to_string(), "remains"),
            n => (format!("{n} problems"), "remain"),
        };
        parts.push(format!(
            "{n} {verb}: fix as shown above, then run setup again"
        ));
    } else if !opts.dry_run && suggested == 0 {
        parts.push("nothing left to fix".to_string());
    }
    if suggested > 0 {
        parts.push(format!(
            "{} lack REPLICA IDENTITY FULL: `setup --replica-identity-full` sets it",
            plural(suggested, "table", "tables")
        ));
    }
    parts.join("; ")
}

fn emit(out: &mut dyn Write, text: &str) -> Result<(), Error> {
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| Error::io("write to stdout", e))
}
