//! What actually runs, for drift: PID 1, each service (the supervisor's status), the
//! veth, the host routes and the tool's nftables rules of one container.
//!
//! Invariant: reads only. Whatever cannot be read (not root, no `nft`, no status yet)
//! is left out of the [`Observation`] and is never drift; `plan::actions::
//! diff_observed` (pure) decides what differs.

use super::layout::{Dirs, RunInfo, StateRoot};
use crate::exec::{net, nft, supervisor};
use crate::plan::actions::{diff_observed, Drift, Observation};
use crate::plan::Plan;
use crate::spec::types::NetMode;
use std::path::Path;

/// Look at container `plan.name` of `root`, recorded as `plan`.
pub fn observe(root: &Path, plan: &Plan) -> Observation {
    let dirs = Dirs::new(root, &plan.name);
    let mut o = Observation::default();
    let Ok(Some(info)) = crate::state::read_json::<RunInfo>(&dirs.run_info()) else {
        // Reaped after a crash (how it ended recorded, no `stop`) but still to run:
        // down though it should not be.
        if !dirs.stop_file().exists() && super::layout::desired(&dirs) == super::layout::Desired::Running {
            o.crashed = crate::exec::keeper::read(&dirs.exit_file()).map(|r| r.describe());
        }
        return o;
    };
    o.recorded_running = true;
    o.pid1_alive = info.alive();
    if !o.pid1_alive {
        return o;
    }
    if let Ok(st) = supervisor::read_status(&dirs.run()) {
        let word = |s: supervisor::ServiceState| {
            serde_json::to_value(s).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
        };
        o.services = Some(st.services.iter().map(|(n, s)| (n.clone(), word(s.state))).collect());
    }
    if plan.network.mode != NetMode::Routed {
        return o;
    }
    let state = StateRoot::new(root);
    let key = state.host_key(&plan.name);
    let veth = net::host_ifname(&key);
    if let Ok(present) = net::Netlink::open().and_then(|mut nl| nl.link_index(&veth)) {
        o.veth = Some((veth.clone(), present.is_some()));
    }
    if let (Ok(steps), Ok(routes)) = (net::setup_steps(&key, &plan.network), net::host_routes()) {
        let want = steps.iter().filter_map(|s| match s {
            net::Step::Route { side: net::Side::Host, dst, prefix_len, .. } => Some((*dst, *prefix_len)),
            _ => None,
        });
        let seen = |dst: std::net::IpAddr, len: u8| {
            routes.iter().any(|r| r.dst == dst && r.prefix_len == len && !r.local && r.dev.as_deref() == Some(&veth))
        };
        o.routes = Some(want.map(|(d, l)| (format!("{d}/{l}"), seen(d, l))).collect());
    }
    // Listing nftables needs root: a user's `plan` gets an error here, not rules.
    if let (Ok(Some(c)), Ok(found)) =
        (nft::ContainerNet::from_plan(&key, &plan.network), nft::rules_by_owner(&state.nft_table()))
    {
        o.rules = Some((found.get(&key).copied().unwrap_or(0), nft::rule_count(&c)));
    }
    o
}

/// The drift of container `name` from its applied plan (none without one).
pub fn drift(root: &Path, plan: &Plan) -> Vec<Drift> {
    diff_observed(plan, &observe(root, plan))
}
