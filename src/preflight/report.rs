//! The preflight report: findings, their fixes, and how `check` prints them (text and JSON).
//! No I/O here.

use std::fmt::Write as _;

/// What a finding is about. Several findings may share one (e.g. one per table).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Check {
    Connection,
    ServerVersion,
    WalLevel,
    MaxReplicationSlots,
    MaxWalSenders,
    ServerEncoding,
    ReplicationPrivilege,
    Table,
    SelectPrivilege,
    Columns,
    ReplicaIdentity,
    Publication,
    Slot,
}

impl Check {
    /// The stable name used in `--json` output.
    pub fn as_str(self) -> &'static str {
        match self {
            Check::Connection => "connection",
            Check::ServerVersion => "server_version",
            Check::WalLevel => "wal_level",
            Check::MaxReplicationSlots => "max_replication_slots",
            Check::MaxWalSenders => "max_wal_senders",
            Check::ServerEncoding => "server_encoding",
            Check::ReplicationPrivilege => "replication_privilege",
            Check::Table => "table",
            Check::SelectPrivilege => "select_privilege",
            Check::Columns => "columns",
            Check::ReplicaIdentity => "replica_identity",
            Check::Publication => "publication",
            Check::Slot => "slot",
        }
    }
}

/// How bad a problem is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    /// `run` refuses to start.
    Definite,
    /// `run` starts, but something is missing or will behave worse than configured.
    Warning,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Ok,
    /// Worth knowing, nothing to fix.
    Info,
    Problem(Severity),
}

/// One step of a fix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FixStep {
    /// A statement to run, ending in `;`.
    Sql(String),
    /// Something SQL cannot do (restart the server, edit the config file).
    Manual(String),
}

/// Whether `setup` applies a finding's fix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AutoFix {
    Never,
    Always,
    /// Only with `--replica-identity-full`: it makes every update log the whole old row.
    WithReplicaIdentityFull,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub check: Check,
    pub status: Status,
    pub message: String,
    pub fix: Vec<FixStep>,
    pub auto: AutoFix,
}

impl Finding {
    pub fn ok(check: Check, message: impl Into<String>) -> Finding {
        Finding::new(check, Status::Ok, message)
    }

    pub fn info(check: Check, message: impl Into<String>) -> Finding {
        Finding::new(check, Status::Info, message)
    }

    pub fn definite(check: Check, message: impl Into<String>) -> Finding {
        Finding::new(check, Status::Problem(Severity::Definite), message)
    }

    pub fn warning(check: Check, message: impl Into<String>) -> Finding {
        Finding::new(check, Status::Problem(Severity::Warning), message)
    }

    fn new(check: Check, status: Status, message: impl Into<String>) -> Finding {
        Finding {
            check,
            status,
            message: message.into(),
            fix: Vec::new(),
            auto: AutoFix::Never,
        }
    }

    pub fn sql(mut self, sql: impl Into<String>) -> Finding {
        self.fix.push(FixStep::Sql(sql.into()));
        self
    }

    pub fn manual(mut self, text: impl Into<String>) -> Finding {
        self.fix.push(FixStep::Manual(text.into()));
        self
    }

    pub fn auto(mut self, auto: AutoFix) -> Finding {
        self.auto = auto;
        self
    }

    pub fn is_problem(&self) -> bool {
        matches!(self.status, Status::Problem(_))
    }

    pub fn is_definite(&self) -> bool {
        self.status == Status::Problem(Severity::Definite)
    }

    /// The fix's SQL statements, in order.
    pub fn statements(&self) -> impl Iterator<Item = &str> {
        self.fix.iter().filter_map(|s| match s {
            FixStep::Sql(sql) => Some(sql.as_str()),
            FixStep::Manual(_) => None,
        })
    }
}

/// Everything `check` found, in the order it checked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    pub findings: Vec<Finding>,
}

impl Report {
    pub fn problems(&self) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(|f| f.is_problem())
    }

    /// No definite problem and no warning: nothing to fix.
    pub fn is_clean(&self) -> bool {
        self.problems().next().is_none()
    }
}

const FIX_INDENT: &str = "        ";

/// One finding as `check` prints it: a status word padded to 8 columns, the message, then one
/// indented `fix:` line per step.
pub fn render_finding(f: &Finding) -> String {
    let label = match f.status {
        Status::Ok => "ok",
        Status::Info => "info",
        Status::Problem(Severity::Definite) => "PROBLEM",
        Status::Problem(Severity::Warning) => "WARNING",
    };
    let mut text = format!("{label:<8}{}\n", f.message);
    for step in &f.fix {
        let (FixStep::Sql(s) | FixStep::Manual(s)) = step;
        let _ = writeln!(text, "{FIX_INDENT}fix: {s}");
    }
    text
}

/// The whole report as `check` prints it, ending with the summary line.
pub fn render_text(report: &Report) -> String {
    let mut text: String = report.findings.iter().map(render_finding).collect();
    text.push_str(&summary(report));
    text.push('\n');
    text
}

/// The last line of `check`'s output.
pub fn summary(report: &Report) -> String {
    let definite = report.problems().filter(|f| f.is_definite()).count();
    let warnings = report.problems().count() - definite;
    if definite + warnings == 0 {
        return "ready: no problems found".to_string();
    }
    let mut line = format!(
        "not ready: {}, {}",
        plural(definite, "definite problem", "definite problems"),
        plural(warnings, "warning", "warnings")
    );
    if report.problems().any(|f| f.auto != AutoFix::Never) {
        line.push_str("; `fuse-cdc-bridge setup` applies the fixes it can");
    }
    line
}

pub(crate) fn plural(n: usize, one: &str, many: &str) -> String {
    match n {
        0 => format!("no {many}"),
        1 => format!("1 {one}"),
        _ => format!("{n} {many}"),
    }
}

/// The report for scripts: `{"ready", "summary", "findings": [{"check", "status", "severity",
/// "message", "fix": [{"sql"} | {"manual"}], "setup"}]}`.
pub fn to_json(report: &Report) -> serde_json::Value {
    use serde_json::json;
    let findings: Vec<serde_json::Value> = report
        .findings
        .iter()
        .map(|f| {
            let (status, severity) = match f.status {
                Status::Ok => ("ok", None),
                Status::Info => ("info", None),
                Status::Problem(Severity::Definite) => ("problem", Some("definite")),
                Status::Problem(Severity::Warning) => ("problem", Some("warning")),
            };
            let fix: Vec<serde_json::Value> = f
                .fix
                .iter()
                .map(|s| match s {
                    FixStep::Sql(sql) => json!({ "sql": sql }),
                    FixStep::Manual(text) => json!({ "manual": text }),
                })
                .collect();
            let setup = match f.auto {
                AutoFix::Never => "no",
                AutoFix::Always => "yes",
                AutoFix::WithReplicaIdentityFull => "with --replica-identity-full",
            };
            json!({
                "check": f.check.as_str(),
                "status": status,
                "severity": severity,
                "message": f.message,
                "fix": fix,
                "setup": setup,
            })
        })
        .collect();
    json!({
        "ready": report.is_clean(),
        "summary": summary(report),
        "findings": findings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_status_words_in_one_column_and_fixes_indented() {
        let report = Report {
            findings: vec![
                Finding::ok(Check::WalLevel, "wal_level is logical"),
                Finding::warning(Check::Slot, "no slot")
                    .sql("SELECT 1;")
                    .auto(AutoFix::Always),
                Finding::definite(Check::Columns, "no column")
                    .manual("edit the config")
                    .sql("SELECT 2;"),
            ],
        };
        assert_eq!(
            render_text(&report),
            "ok      wal_level is logical\n\
             WARNING no slot\n\
             \x20       fix: SELECT 1;\n\
             PROBLEM no column\n\
             \x20       fix: edit the config\n\
             \x20       fix: SELECT 2;\n\
             not ready: 1 definite problem, 1 warning; `fuse-cdc-bridge setup` applies the \
             fixes it can\n"
        );
        let json = to_json(&report);
        assert_eq!(json["ready"], false);
        assert_eq!(json["findings"][1]["severity"], "warning");
        assert_eq!(json["findings"][2]["fix"][1]["sql"], "SELECT 2;");
    }

    #[test]
    fn info_is_not_a_problem() {
        let report = Report {
            findings: vec![Finding::info(Check::Slot, "in use")],
        };
        assert!(report.is_clean());
        assert_eq!(summary(&report), "ready: no problems found");
    }
}
