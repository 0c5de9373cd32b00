//! What an apply does, decided once: drift between the recorded state and what
//! runs, and the typed list of actions an apply carries out.
//!
//! Invariant: pure. [`diff_observed`] turns what `runtime::observe` saw into
//! [`Drift`]s; [`decide`] turns the last applied plan, the new plan and what was
//! observed into [`ApplyAction`]s, which `runtime::apply` carries out in order and the
//! CLI only prints. Nothing downstream compares plans again.

use super::diff::{diff, Changes, Effect};
use super::types::Plan;
use serde::Serialize;
use std::collections::BTreeMap;

/// One way what runs differs from what was recorded.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(tag = "drift", rename_all = "kebab-case")]
pub enum Drift {
    /// `run.json` names a PID 1 that is gone (the container was not stopped).
    Pid1Gone,
    /// PID 1 crashed (its leftovers are cleaned up already) while the container is
    /// to run: `how` it ended.
    Crashed { name: String, how: String },
    /// A service is down (exited, failed or stopped) though it was applied running.
    Service { name: String, state: String },
    /// The host end of the container's veth is gone (and with it the container's end,
    /// its addresses and routes).
    Veth { veth: String },
    /// A host route to the container is gone.
    Route { route: String },
    /// Rules of the container are missing from the tool's nftables table.
    Rules { missing: usize, of: usize },
    /// The container's cgroup is gone.
    Cgroup { path: String },
}

/// How a drift is repaired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Repair {
    /// Start the service through the supervisor's control socket.
    Start(String),
    /// Set the network up again (idempotent; a missing veth is created anew).
    Network,
    /// Rebuild the tool's nftables table.
    Rules,
    /// Only a new container is safe.
    Recreate,
}

impl Drift {
    pub fn repair(&self) -> Repair {
        match self {
            Drift::Service { name, .. } => Repair::Start(name.clone()),
            Drift::Veth { .. } | Drift::Route { .. } => Repair::Network,
            Drift::Rules { .. } => Repair::Rules,
            Drift::Pid1Gone | Drift::Crashed { .. } | Drift::Cgroup { .. } => Repair::Recreate,
        }
    }

    /// The plan's listing line (symbol, kind, what, repair).
    pub fn line(&self) -> (&'static str, &'static str, String, &'static str) {
        match self {
            Drift::Pid1Gone => ("~", "container", "PID 1: gone (recorded running)".into(), "recreate container"),
            Drift::Crashed { name, how } => {
                ("~", "container", format!("{name}: PID 1 crashed ({how})"), "start container")
            }
            Drift::Service { name, state } => ("~", "service", format!("{name}: {state} (recorded running)"), "start"),
            Drift::Veth { veth } => ("+", "veth", format!("{veth} (missing)"), "recreate network"),
            Drift::Route { route } => ("+", "route", format!("{route} (missing)"), "restore"),
            Drift::Rules { missing, of } => ("+", "nft", format!("rules (missing {missing} of {of})"), "restore"),
            Drift::Cgroup { path } => ("+", "cgroup", format!("{path} (missing)"), "recreate container"),
        }
    }
}

impl std::fmt::Display for Drift {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (sym, kind, what, repair) = self.line();
        write!(f, "{sym} {kind} {what} → {repair}")
    }
}

/// What `runtime::observe` saw of a container (facts only; `None`: not looked at or
/// not readable, which is never drift).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observation {
    /// `run.json` names a PID 1: the container was started and not stopped.
    pub recorded_running: bool,
    /// That PID 1 is alive.
    pub pid1_alive: bool,
    /// How PID 1 ended, when it crashed and was cleaned up (no `run.json` any more)
    /// while the container is to run.
    pub crashed: Option<String>,
    /// Each service's state word from the supervisor's status (`ready`, `exited`, …).
    pub services: Option<BTreeMap<String, String>>,
    /// The host end of the veth and whether it exists.
    pub veth: Option<(String, bool)>,
    /// The host routes the network sets, each with whether it is in the kernel.
    pub routes: Option<Vec<(String, bool)>>,
    /// Rules of the container found in the table, and how many its plan makes.
    pub rules: Option<(usize, usize)>,
    /// The container's cgroup and whether it exists.
    pub cgroup: Option<(String, bool)>,
}

/// Service states that mean "down": nothing runs and nothing will restart it.
const DOWN: &[&str] = &["exited", "failed", "stopped"];

/// The drift of a container from its recorded plan (pure). A container a user
/// stopped (no `run.json`) has none.
pub fn diff_observed(recorded: &Plan, o: &Observation) -> Vec<Drift> {
    let mut out = Vec::new();
    if let Some(how) = &o.crashed {
        out.push(Drift::Crashed { name: recorded.name.clone(), how: how.clone() });
        return out;
    }
    if !o.recorded_running {
        return out;
    }
    if !o.pid1_alive {
        out.push(Drift::Pid1Gone);
        return out;
    }
    if let Some(states) = &o.services {
        for name in recorded.services.keys() {
            if let Some(state) = states.get(name).filter(|s| DOWN.contains(&s.as_str())) {
                out.push(Drift::Service { name: name.clone(), state: state.clone() });
            }
        }
    }
    match &o.veth {
        Some((veth, false)) => out.push(Drift::Veth { veth: veth.clone() }),
        _ => {
            for (route, present) in o.routes.iter().flatten() {
                if !present {
                    out.push(Drift::Route { route: route.clone() });
                }
            }
        }
    }
    if let Some((found, of)) = o.rules {
        if found < of {
            out.push(Drift::Rules { missing: of - found, of });
        }
    }
    if let Some((path, false)) = &o.cgroup {
        out.push(Drift::Cgroup { path: path.clone() });
    }
    out
}

/// What an apply finds before it acts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    /// PID 1 runs.
    pub running: bool,
    /// It runs with the ids, config channel and volumes the plan needs (else it is
    /// recreated).
    pub fits: bool,
    /// An earlier apply was interrupted (`pending.json`).
    pub interrupted: bool,
    pub drift: Vec<Drift>,
}

/// One step of an apply, in the order they are carried out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", content = "target", rename_all = "kebab-case")]
pub enum ApplyAction {
    /// Nothing runs: create the container from the plan and start it.
    Create,
    /// Stop what runs and create it afresh.
    Recreate,
    /// Rewrite secrets, rendered files and volumes in place.
    Files,
    /// Tear down the old network and set the new one up.
    Network,
    /// Rebuild the tool's nftables table (forced).
    Rules,
    /// Hand the supervisor the new config: it starts, stops and restarts exactly the
    /// services whose definition changed and reruns the init tasks.
    Reconfigure,
    Reload(String),
    /// A service whose definition is unchanged but a file it uses changed.
    Restart(String),
    /// Put back what drifted.
    Repair(Drift),
}

/// The actions that bring a container from `old` (last applied) to `new`, given
/// what was observed (pure). Empty: nothing to do.
pub fn decide(old: Option<&Plan>, new: &Plan, observed: &Observed) -> Vec<ApplyAction> {
    decide_changes(old, new, &diff(old, new), observed)
}

/// [`decide`] with the changes already known (`diff(old, new)` plus what was asked
/// on the side, such as secrets to regenerate).
pub fn decide_changes(old: Option<&Plan>, new: &Plan, changes: &Changes, observed: &Observed) -> Vec<ApplyAction> {
    use ApplyAction as A;
    if !observed.running {
        return vec![A::Create];
    }
    let Some(old) = old else { return vec![A::Recreate] };
    let recreate_drift = observed.drift.iter().any(|d| d.repair() == Repair::Recreate);
    if observed.interrupted || !observed.fits || changes.recreates() || recreate_drift {
        return vec![A::Recreate];
    }
    if changes.is_empty() && observed.drift.is_empty() {
        return Vec::new();
    }
    let effects: Vec<&Effect> = changes.changes.iter().flat_map(|c| &c.effects).collect();
    let mut out = vec![A::Files];
    let network = effects.iter().any(|e| matches!(e, Effect::ReconfigureNetwork))
        || observed.drift.iter().any(|d| d.repair() == Repair::Network);
    if network {
        out.push(A::Network);
    }
    out.push(A::Rules);
    let redefined = |s: &String| old.services.get(s) != new.services.get(s);
    let reconfigure = effects.iter().any(|e| match e {
        Effect::StartService(_) | Effect::StopService(_) | Effect::RunInit(_) => true,
        Effect::RestartService(s) => redefined(s),
        _ => false,
    });
    if reconfigure {
        out.push(A::Reconfigure);
    }
    let mut restarted: Vec<&String> = Vec::new();
    for e in &effects {
        if let Effect::RestartService(s) = e {
            if !redefined(s) && !restarted.contains(&s) {
                restarted.push(s);
            }
        }
    }
    let mut reloaded: Vec<&String> = Vec::new();
    for e in &effects {
        if let Effect::ReloadService(s) = e {
            if !redefined(s) && !restarted.contains(&s) && !reloaded.contains(&s) {
                reloaded.push(s);
            }
        }
    }
    out.extend(reloaded.into_iter().map(|s| A::Reload(s.clone())));
    out.extend(restarted.iter().map(|s| A::Restart((*s).clone())));
    for d in &observed.drift {
        match d.repair() {
            // A service the apply restarts or redefines anyway needs no start.
            Repair::Start(s) if restarted.contains(&&s) || (reconfigure && redefined(&s)) => {}
            // Removed by this apply: nothing to start.
            Repair::Start(s) if !new.services.contains_key(&s) => {}
            _ => out.push(A::Repair(d.clone())),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::compile::test_plan;
    use ApplyAction as A;

    const BASE: &str = r#"
name = "t"
base = "host"
[network]
ipv4 = "100.64.0.2"
[[files]]
path = "/etc/a.conf"
content = "a"
[processes.web]
command = ["/bin/web"]
uses = ["/etc/a.conf"]
[processes.db]
command = ["/bin/db"]
"#;

    fn live() -> Observed {
        Observed { running: true, fits: true, interrupted: false, drift: Vec::new() }
    }

    fn with(extra: &str) -> Plan {
        test_plan(&format!("{BASE}{extra}"))
    }

    #[test]
    fn unchanged_and_running_does_nothing() {
        let p = with("");
        assert_eq!(decide(Some(&p), &p, &live()), vec![]);
    }

    #[test]
    fn not_running_creates_and_unfit_or_interrupted_recreates() {
        let p = with("");
        assert_eq!(decide(Some(&p), &p, &Observed::default()), vec![A::Create]);
        assert_eq!(decide(None, &p, &Observed::default()), vec![A::Create]);
        assert_eq!(decide(Some(&p), &p, &Observed { fits: false, ..live() }), vec![A::Recreate]);
        assert_eq!(decide(Some(&p), &p, &Observed { interrupted: true, ..live() }), vec![A::Recreate]);
        assert_eq!(decide(None, &p, &live()), vec![A::Recreate]);
    }

    #[test]
    fn a_file_edit_restarts_only_its_user_and_a_redefinition_reconfigures() {
        let old = with("");
        let new = test_plan(&BASE.replace("content = \"a\"", "content = \"b\""));
        assert_eq!(decide(Some(&old), &new, &live()), vec![A::Files, A::Rules, A::Restart("web".into())]);
        // Changed definition and file together: reconfigure restarts it, once.
        let both = test_plan(&BASE.replace("content = \"a\"", "content = \"b\"").replace("/bin/web", "/bin/web2"));
        assert_eq!(decide(Some(&old), &both, &live()), vec![A::Files, A::Rules, A::Reconfigure]);
        // A new service.
        let more = with("[processes.cache]\ncommand = [\"/bin/cache\"]\n");
        assert_eq!(decide(Some(&old), &more, &live()), vec![A::Files, A::Rules, A::Reconfigure]);
    }

    #[test]
    fn recreating_changes_and_network_changes() {
        let old = with("");
        let file = with("[[files]]\npath = \"/etc/new\"\ncontent = \"x\"\n");
        assert_eq!(decide(Some(&old), &file, &live()), vec![A::Recreate]);
        let nat = test_plan(&BASE.replace("ipv4 = \"100.64.0.2\"", "ipv4 = \"100.64.0.2\"\nnat = true"));
        assert_eq!(decide(Some(&old), &nat, &live()), vec![A::Files, A::Network, A::Rules]);
    }

    #[test]
    fn a_recreate_counts_as_destroy_and_add() {
        use crate::plan::diff::{ChangeOp, ResourceKind};
        let old = with("");
        let file = with("[[files]]\npath = \"/etc/new\"\ncontent = \"x\"\n");
        let c = diff(Some(&old), &file);
        assert!(c.recreates());
        assert_eq!(c.changes[0].kind, ResourceKind::Container);
        assert_eq!(c.changes[0].op, ChangeOp::Replace);
        assert_eq!(c.changes[0].fields, vec!["recreated for: + file /etc/new".to_string()]);
        assert_eq!((c.count(ChangeOp::Create), c.destroyed()), (2, 1), "the file, and the container replaced");
        // A live change replaces nothing.
        let edit = test_plan(&BASE.replace("content = \"a\"", "content = \"b\""));
        let c = diff(Some(&old), &edit);
        assert!(!c.recreates());
        assert_eq!((c.count(ChangeOp::Create), c.destroyed()), (0, 0));
        // Unknown kinds cannot exist: the JSON words are the old ones.
        let kinds: Vec<String> = [ResourceKind::File, ResourceKind::Service, ResourceKind::Nft]
            .iter()
            .map(|k| serde_json::to_value(k).unwrap().as_str().unwrap().to_string())
            .collect();
        assert_eq!(kinds, ["file", "service", "nft"]);
        let back: ResourceKind = serde_json::from_str("\"init\"").unwrap();
        assert_eq!(back, ResourceKind::Init);
        assert!(serde_json::from_str::<ResourceKind>("\"fiel\"").is_err());
    }

    #[test]
    fn drift_is_repaired_each_its_own_way() {
        let p = with("");
        let svc = Drift::Service { name: "db".into(), state: "exited".into() };
        let rules = Drift::Rules { missing: 3, of: 3 };
        let veth = Drift::Veth { veth: "ct-t".into() };
        let o = Observed { drift: vec![svc.clone(), rules.clone(), veth.clone()], ..live() };
        assert_eq!(
            decide(Some(&p), &p, &o),
            vec![A::Files, A::Network, A::Rules, A::Repair(svc), A::Repair(rules), A::Repair(veth)]
        );
        let o = Observed { drift: vec![Drift::Pid1Gone], ..live() };
        assert_eq!(decide(Some(&p), &p, &o), vec![A::Recreate]);
        // A dead service the apply restarts anyway is not started twice.
        let new = test_plan(&BASE.replace("content = \"a\"", "content = \"b\""));
        let web = Drift::Service { name: "web".into(), state: "failed".into() };
        let o = Observed { drift: vec![web], ..live() };
        assert_eq!(decide(Some(&p), &new, &o), vec![A::Files, A::Rules, A::Restart("web".into())]);
    }

    #[test]
    fn a_crash_cleaned_up_already_is_drift_and_apply_starts_it() {
        let p = with("");
        let o = Observation { crashed: Some("killed by SIGKILL".into()), ..Observation::default() };
        let d = diff_observed(&p, &o);
        assert_eq!(d, vec![Drift::Crashed { name: "t".into(), how: "killed by SIGKILL".into() }]);
        assert_eq!(d[0].to_string(), "~ container t: PID 1 crashed (killed by SIGKILL) → start container");
        assert_eq!(decide(Some(&p), &p, &Observed { drift: d, ..Observed::default() }), vec![A::Create]);
        // Stopped by a user: no drift.
        assert_eq!(diff_observed(&p, &Observation::default()), vec![]);
    }

    #[test]
    fn diff_observed_names_what_is_missing_and_a_stopped_container_has_no_drift() {
        let p = with("");
        let states =
            |w: &str, d: &str| Some(BTreeMap::from([("web".to_string(), w.into()), ("db".to_string(), d.into())]));
        let o = Observation {
            recorded_running: true,
            pid1_alive: true,
            services: states("ready", "exited"),
            veth: Some(("ct-t".into(), true)),
            routes: Some(vec![("100.64.0.2/32".into(), false)]),
            rules: Some((0, 4)),
            cgroup: Some(("/sys/fs/cgroup/container/t".into(), true)),
            crashed: None,
        };
        let d = diff_observed(&p, &o);
        assert_eq!(
            d,
            vec![
                Drift::Service { name: "db".into(), state: "exited".into() },
                Drift::Route { route: "100.64.0.2/32".into() },
                Drift::Rules { missing: 4, of: 4 },
            ]
        );
        assert_eq!(d[0].to_string(), "~ service db: exited (recorded running) → start");
        assert_eq!(d[2].to_string(), "+ nft rules (missing 4 of 4) → restore");
        // The veth gone: routes go with it, one repair.
        let gone = Observation {
            veth: Some(("ct-t".into(), false)),
            rules: Some((4, 4)),
            services: states("ready", "starting"),
            ..o.clone()
        };
        assert_eq!(diff_observed(&p, &gone), vec![Drift::Veth { veth: "ct-t".into() }]);
        assert_eq!(diff_observed(&p, &gone)[0].to_string(), "+ veth ct-t (missing) → recreate network");
        // Stopped by a user: no drift, whatever else is seen.
        assert!(diff_observed(&p, &Observation { recorded_running: false, ..o.clone() }).is_empty());
        assert_eq!(diff_observed(&p, &Observation { pid1_alive: false, ..o }), vec![Drift::Pid1Gone]);
    }
}
