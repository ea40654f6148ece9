//! What `setup` does with a report: which fixes it applies, which it only suggests, and which
//! remain for a person. Pure; `commands` runs the plan.

use super::report::{AutoFix, Check, Finding, Report};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SetupOptions {
    /// Print the statements, run none.
    pub dry_run: bool,
    /// Also apply `ALTER TABLE … REPLICA IDENTITY FULL`.
    pub replica_identity_full: bool,
}

/// The report's problems, sorted by what `setup` does with them.
#[derive(Debug, Default)]
pub struct Plan<'a> {
    /// Fixes to run now, in report order.
    pub apply: Vec<&'a Finding>,
    /// Fixes `setup` would run later, once the problems in `remaining` are fixed.
    pub deferred: Vec<&'a Finding>,
    /// Fixes that need `--replica-identity-full`.
    pub suggested: Vec<&'a Finding>,
    /// Problems only a person can fix.
    pub remaining: Vec<&'a Finding>,
}

/// Problems a replication slot cannot be created before.
const SLOT_NEEDS: [Check; 4] = [
    Check::ServerVersion,
    Check::WalLevel,
    Check::ReplicationPrivilege,
    Check::MaxReplicationSlots,
];

pub fn plan(report: &Report, opts: SetupOptions) -> Plan<'_> {
    let slot_blocked = report.problems().any(|f| SLOT_NEEDS.contains(&f.check));
    let mut plan = Plan::default();
    for f in report.problems() {
        match f.auto {
            AutoFix::Always if f.check == Check::Slot && slot_blocked => plan.deferred.push(f),
            AutoFix::Always => plan.apply.push(f),
            AutoFix::WithReplicaIdentityFull if opts.replica_identity_full => plan.apply.push(f),
            AutoFix::WithReplicaIdentityFull => plan.suggested.push(f),
            AutoFix::Never => plan.remaining.push(f),
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> Report {
        Report {
            findings: vec![
                Finding::ok(Check::Connection, "ok"),
                Finding::definite(Check::WalLevel, "wal").sql("ALTER SYSTEM …;"),
                Finding::warning(Check::ReplicaIdentity, "ri")
                    .sql("ALTER TABLE …;")
                    .auto(AutoFix::WithReplicaIdentityFull),
                Finding::warning(Check::Publication, "pub")
                    .sql("CREATE PUBLICATION …;")
                    .auto(AutoFix::Always),
                Finding::warning(Check::Slot, "slot")
                    .sql("SELECT …;")
                    .auto(AutoFix::Always),
            ],
        }
    }

    #[test]
    fn defers_the_slot_until_wal_level_is_fixed_and_sets_replica_identity_only_when_asked() {
        let r = report();
        let p = plan(&r, SetupOptions::default());
        let msgs = |v: &[&Finding]| v.iter().map(|f| f.message.clone()).collect::<Vec<_>>();
        assert_eq!(msgs(&p.apply), ["pub"]);
        assert_eq!(msgs(&p.deferred), ["slot"]);
        assert_eq!(msgs(&p.suggested), ["ri"]);
        assert_eq!(msgs(&p.remaining), ["wal"]);
        let opts = SetupOptions {
            replica_identity_full: true,
            ..SetupOptions::default()
        };
        assert_eq!(msgs(&plan(&r, opts).apply), ["ri", "pub"]);
    }
}
