//! Apply, start, stop, destroy.
//!
//! Before any of it, [`check_network`] refuses addresses and prefixes that overlap
//! another container's routes (any state root), another container's recorded
//! addresses and prefixes (this root's plans, other roots' registry entries: running
//! or stopped) or cover a host route (the CLI calls it before recording addresses;
//! `start_plan` again before spawning). Addresses are compiled against
//! [`address_pool`] (this root's pool and every other root's addresses) and recorded
//! host-wide with the prefixes by [`record_addresses`], which checks for overlaps
//! again in the same step, under the registry's lock: two roots never hand out one
//! address or overlapping networks, even to applies racing each other. Every cgroup and veth is named from the container's
//! `StateRoot::host_key`, never from its bare name: a command under one root never
//! touches another root's container of the same name.
//!
//! Invariant: each step of an apply is idempotent and ordered so that a `kill -9` at
//! any point leaves something the next command converges from:
//! 1. `pending.json` (the plan being applied) is written before anything else;
//! 2. secrets, rendered files and volumes are (re)written in the container's folder;
//! 3. the container is spawned and blocked before exec; `run.json` records its PID 1
//!    at once (if we die before releasing it, the child sees its sync socket close and
//!    exits by itself);
//! 4. the network, then the nftables table, then release, then wait for readiness;
//! 5. `state.json` := the plan, then `pending.json` is removed.
//!
//! An apply that finds `pending.json` recreates the container: it stops whatever runs,
//! tears down the network of both the applied and the pending plan, rebuilds the
//! nftables table from the containers that really run, and starts afresh. `destroy`
//! does the same teardown. Host-wide changes (nftables) are always recomputed from
//! what runs, never patched, so a missed step cannot leave a stale rule behind for
//! longer than the next command.

use super::crash::{crash_point, CrashPoint};
use super::layout::{self, Dirs, Lock, RunInfo, StateRoot};
use super::prepare;
use super::RunError;
use crate::exec::beneath::Beneath;
use crate::exec::livemount::{self, Target};
use crate::exec::process::Process;
use crate::exec::supervisor::ControlRequest;
use crate::exec::{cgroup, net, nft, sandbox, supervisor};
use crate::plan::actions::{ApplyAction, Drift, Observed, Repair};
use crate::plan::diff::Changes;
use crate::plan::Plan;
use crate::spec::types::NetMode;
use std::collections::BTreeMap;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Progress lines for the user (the CLI prints them on stderr).
pub type Say<'a> = &'a mut dyn FnMut(&str);

/// How long `apply`/`start` wait for services to pass their readiness checks. The
/// supervisor fails a service whose probe has not passed after its own timeout (60 s)
/// first; this is only the outer bound.
const READY_WAIT: Duration = Duration::from_secs(90);

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> RunError {
    let context = context.into();
    move |source| RunError::Io { context, source }
}

/// Take the container's lock, saying so if another command holds it.
pub fn lock(root: &Path, name: &str, say: Say) -> Result<Lock, RunError> {
    let dirs = Dirs::new(root, name);
    dirs.create(root).map_err(io(format!("creating {}", dirs.root.display())))?;
    let path = dirs.lock_file();
    Lock::take(&path, || say(&format!("waiting: another `container` command is working on `{name}`")))
        .map_err(io(format!("locking {}", path.display())))
}

/// A lock on something shared by all containers under the root (`pool`, `nft`).
pub fn lock_shared(root: &Path, what: &str) -> Result<Lock, RunError> {
    let state = StateRoot::new(root);
    state.create().map_err(io(format!("creating {}", root.display())))?;
    let path = state.shared_lock(what);
    Lock::take(&path, || {}).map_err(io(format!("locking {}", path.display())))
}

fn read_plan(path: &Path) -> Result<Option<Plan>, RunError> {
    match crate::state::read_json(path) {
        Err(crate::state::StateError::Parse { path, source }) => Err(RunError::Failed(damaged(&path, &source))),
        r => Ok(r?),
    }
}

/// What to do about a damaged plan file (`state.json`, `pending.json`) at `path`.
fn damaged(path: &Path, source: &serde_json::Error) -> String {
    let name = path.parent().and_then(Path::file_name).map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let what = if path.file_name().is_some_and(|f| f == "pending.json") {
        "the plan of an interrupted apply"
    } else {
        "the container's applied plan"
    };
    format!(
        "{} is damaged ({source}): {what} cannot be read; run `container destroy {name}` (it stops the \
         container and removes it, keeping its volumes and secrets), then apply its spec again",
        path.display()
    )
}

/// The last applied plan of a container.
pub fn applied(root: &Path, name: &str) -> Result<Option<Plan>, RunError> {
    read_plan(&Dirs::new(root, name).state())
}

/// The plan of an apply that is going on or was interrupted.
pub fn pending(root: &Path, name: &str) -> Result<Option<Plan>, RunError> {
    read_plan(&Dirs::new(root, name).pending())
}

/// The plan a running container runs: the pending one while an apply is going on (or
/// after it was interrupted), else the applied one.
fn current_plan(dirs: &Dirs) -> Result<Option<Plan>, RunError> {
    Ok(match read_plan(&dirs.pending())? {
        Some(p) => Some(p),
        None => read_plan(&dirs.state())?,
    })
}

/// Names of the containers under the root that have a state (applied or pending).
pub fn names(root: &Path) -> Vec<String> {
    let root = StateRoot::new(root);
    let mut out: Vec<String> = std::fs::read_dir(root.containers())
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        // Something else put there (not by this tool) is no container.
        .filter(|name| layout::is_name(name))
        .filter(|name| {
            let dirs = root.container(name);
            dirs.state().exists() || dirs.pending().exists()
        })
        .collect();
    out.sort();
    out
}

/// Rebuild the tool's nftables table from the containers of `root`: the fences and
/// masquerades of every routed one, the DNATs of those that run now.
///
/// The last batch given to `nft` is kept in `<root>/.nft.json`; when the new batch is
/// the same, `nft` is not run (it costs ~20 ms, most of a `start`), unless `force`.
/// An apply that changes a running container forces it, so a table flushed behind
/// our back is repaired by the next such apply or by any start/stop that changes it.
pub fn sync_nft(root: &Path, force: bool) -> Result<(), RunError> {
    let _lock = lock_shared(root, "nft")?;
    let mut desired = Vec::new();
    for name in names(root) {
        let dirs = Dirs::new(root, &name);
        let running = layout::running(&dirs).is_some();
        // A running container's plan must be read (its fence is at stake); a stopped
        // one with a damaged plan loses only rules that matched nothing.
        let plan = match current_plan(&dirs) {
            Err(_) if !running => None,
            other => other?,
        };
        let Some(plan) = plan else { continue };
        let key = StateRoot::new(root).host_key(&name);
        let Some(mut c) = nft::ContainerNet::from_plan(&key, &plan.network)? else { continue };
        // Fences and masquerades stay while the container is stopped: they match
        // only its veth (gone) and its addresses (unreachable placeholders), so they
        // are as harmless as those routes, and starting or stopping a routed
        // container that publishes nothing changes no rule: no `nft` run (~20 ms).
        // Its DNATs go, as a connect DNATed to a stopped container would hang.
        if !running {
            c.publish.clear();
        }
        desired.push(c);
    }
    let table = StateRoot::new(root).nft_table();
    let batch = nft::batch_for(&table, &desired).to_string();
    let cache = StateRoot::new(root).nft_cache();
    if !force && std::fs::read_to_string(&cache).is_ok_and(|old| old == batch) {
        return Ok(());
    }
    // Forget the cache first: if `nft` fails or we die, the next sync runs it again.
    let _ = std::fs::remove_file(&cache);
    match nft::apply_to(&table, &desired) {
        // Without nft and without rules to install there is nothing to remove either.
        Err(nft::NftError::Spawn(e)) if desired.is_empty() && e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(nft::NftError::Spawn(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(RunError::Failed("`nft` is not installed; install it with: apt-get install nftables".into()))
        }
        Err(e) => Err(e.into()),
        Ok(()) => {
            crate::state::write_atomic(&cache, batch.as_bytes())?;
            Ok(())
        }
    }
}

/// The pool to compile a plan of `root` with: the root's own (`pool.json`) plus, under
/// names no container has (`<name> (state root <path>)`), the addresses every other
/// root's containers hold ([`super::ids::AddressRegistry`]): "auto" skips them and a
/// fixed one is refused by `plan::compile`, naming its holder. Reads only.
pub fn address_pool(root: &Path) -> Result<crate::plan::pool::AddressPool, RunError> {
    let mut pool = StateRoot::new(root).pool()?;
    for e in super::ids::AddressRegistry::host().others(root)? {
        let key = format!("{} (state root {})", e.name, e.root.display());
        if let Some(a) = e.ipv4 {
            pool.ipv4.insert(key.clone(), a);
        }
        if let Some(a) = e.ipv6 {
            pool.ipv6.insert(key, a);
        }
    }
    Ok(pool)
}

/// Record the plan's addresses (auto or given) and routed prefixes so no other
/// container gets them: in the host-wide registry first (refused, with nothing
/// changed, when one overlaps an address or prefix of another container of any root,
/// even one taken meanwhile: the registry checks and records in one step under its
/// flock), then the addresses in the root's pool. The caller holds the root's pool
/// lock.
pub fn record_addresses(root: &Path, plan: &Plan) -> Result<(), RunError> {
    let state = StateRoot::new(root);
    let (mut pool, rebuilt) = state.pool_or_rebuilt()?;
    let before = pool.clone();
    match plan.network.ipv4_addr() {
        Some(a) => pool.ipv4.insert(plan.name.clone(), a),
        None => pool.ipv4.remove(&plan.name),
    };
    match plan.network.ipv6_addr() {
        Some(a) => pool.ipv6.insert(plan.name.clone(), a),
        None => pool.ipv6.remove(&plan.name),
    };
    // Routed prefixes, as the registry keeps them ("address/length").
    let prefixes: Vec<String> = net::own_networks(&plan.network)?
        .into_iter()
        .filter(|(field, _)| *field == "network.prefixes")
        .map(|(_, (a, len))| format!("{a}/{len}"))
        .collect();
    super::ids::AddressRegistry::host().record(root, &plan.name, &pool, &prefixes).map_err(|e| match e {
        super::ids::RecordError::Taken(t) => {
            RunError::Failed(format!("refusing the network of {}: {t} (nothing was changed)", plan.name))
        }
        super::ids::RecordError::Ids(e) => RunError::Ids(e),
    })?;
    if pool != before || rebuilt {
        state.save_pool(&pool)?;
    }
    Ok(())
}

/// Refuse a plan whose addresses or prefixes would take over a route of another
/// container (under any state root: the kernel's routing table is the one source of
/// truth for running ones; this root's stopped containers are read from their plans)
/// or a host route the tool does not own. Changes nothing.
pub fn check_network(root: &Path, plan: &Plan) -> Result<(), RunError> {
    if plan.network.mode != NetMode::Routed {
        return Ok(());
    }
    network_problems(root, plan, &net::host_routes()?)
}

/// [`check_network`] for `plan`, which only reads: a host whose routes cannot be read
/// (a sandbox without netlink) is checked against this root's plans only.
pub fn check_network_if_readable(root: &Path, plan: &Plan) -> Result<(), RunError> {
    if plan.network.mode != NetMode::Routed {
        return Ok(());
    }
    network_problems(root, plan, &net::host_routes().unwrap_or_default())
}

/// [`check_network`] against the given host routes.
pub fn network_problems(root: &Path, plan: &Plan, routes: &[net::HostRoute]) -> Result<(), RunError> {
    let state = StateRoot::new(root);
    let others: Vec<String> = names(root).into_iter().filter(|n| *n != plan.name).collect();
    let owner = |veth: &str| others.iter().find(|n| net::host_ifname(&state.host_key(n)) == veth);
    // Another root's container is named from the host-wide registry (an unreadable
    // registry only makes the message vaguer).
    let registry = super::ids::AddressRegistry::host().others(root).unwrap_or_default();
    let elsewhere =
        |veth: &str| registry.iter().find(|e| net::host_ifname(&StateRoot::new(&e.root).host_key(&e.name)) == veth);
    let mut problems = Vec::new();
    let mut named = Vec::new();
    for c in net::conflicts(&state.host_key(&plan.name), &plan.network, routes)? {
        let dev = c.route.dev.as_deref().unwrap_or("");
        let (field, mine, r) = (c.field, &c.net, &c.route);
        problems.push(match (c.container_veth, owner(dev)) {
            (true, Some(other)) => format!("{field} {mine} overlaps {r}, a route of container `{other}`"),
            (true, None) => match elsewhere(dev) {
                Some(e) => {
                    named.push(e);
                    format!(
                        "{field} {mine} overlaps {r}, a route of container `{}` under state root {}",
                        e.name,
                        e.root.display()
                    )
                }
                None => format!("{field} {mine} overlaps {r}, a route of another container (under another state root)"),
            },
            (false, _) if r.local => format!("{field} {mine} covers {}, an address of this host ({r})", r.dst),
            (false, _) => format!("{field} {mine} covers the host route {r}, which is not the tool's"),
        });
    }
    // Stopped containers of this root have no routes now but get them back on start;
    // another root's are in the host-wide registry (running ones too, named above
    // when their route showed).
    let mine = net::own_networks(&plan.network)?;
    for e in registry.iter().filter(|e| !named.iter().any(|n| std::ptr::eq(*n, *e))) {
        for (field, m) in &mine {
            for (tfield, shown, t) in e.networks() {
                if net::covers(*m, t) || net::covers(t, *m) {
                    problems.push(format!(
                        "{field} {}/{} overlaps {tfield} {shown} of container `{}` under state root {}",
                        m.0,
                        m.1,
                        e.name,
                        e.root.display()
                    ));
                }
            }
        }
    }
    for other in &others {
        let dirs = Dirs::new(root, other);
        if layout::running(&dirs).is_some() {
            continue;
        }
        // An unreadable plan of another container does not block this one.
        let Ok(Some(theirs)) = current_plan(&dirs) else { continue };
        for (field, m) in &mine {
            for (tfield, t) in net::own_networks(&theirs.network).unwrap_or_default() {
                if net::covers(*m, t) || net::covers(t, *m) {
                    problems.push(format!(
                        "{field} {}/{} overlaps {tfield} {}/{} of container `{other}` (stopped)",
                        m.0, m.1, t.0, t.1
                    ));
                }
            }
        }
    }
    // Its host interface name must be its own: a name longer than 12 characters is
    // shortened with a 16-bit hash, and two routed containers sharing one would
    // delete each other's veth and fence each other's traffic.
    let veth = net::host_ifname(&state.host_key(&plan.name));
    let routed = |n: &String| {
        current_plan(&Dirs::new(root, n)).ok().flatten().is_some_and(|p| p.network.mode == NetMode::Routed)
    };
    if let Some(other) = others.iter().filter(|n| net::host_ifname(&state.host_key(n)) == veth).find(|n| routed(n)) {
        problems.push(format!(
            "its host interface name {veth} is that of container `{other}` (a long name is shortened with a hash): rename one of them"
        ));
    } else if let Some(e) = elsewhere(&veth) {
        problems.push(format!(
            "its host interface name {veth} is that of container `{}` under state root {} (a long name is shortened with a hash): rename one of them",
            e.name,
            e.root.display()
        ));
    }
    if problems.is_empty() {
        return Ok(());
    }
    Err(RunError::Failed(format!(
        "refusing the network of {}: it would take over what is not its own (nothing was changed):\n  {}",
        plan.name,
        problems.join("\n  ")
    )))
}

/// Tear down what a plan's network added on the host (idempotent); `key` is the
/// container's [`StateRoot::host_key`].
fn teardown_network(key: &str, plan: &Plan) -> Result<(), RunError> {
    if plan.network.mode == NetMode::Routed {
        net::teardown(key, &plan.network)?;
    }
    Ok(())
}

/// PID 1's stdout and stderr, `supervisor.log` in the container's host-private
/// folder (never in the run folder, which the container can write): opened beneath
/// that folder `O_APPEND | O_NOFOLLOW`, a regular file only, created 0600 when
/// missing.
fn open_log(dirs: &Dirs) -> Result<OwnedFd, RunError> {
    let path = dirs.supervisor_log();
    let f = Beneath::open(&dirs.root)
        .and_then(|dir| dir.open_append(Path::new(layout::SUPERVISOR_LOG), 0o600))
        .map_err(io(format!("opening {}", path.display())))?;
    Ok(OwnedFd::from(f))
}

fn dev_null() -> Result<OwnedFd, RunError> {
    Ok(OwnedFd::from(std::fs::File::open("/dev/null").map_err(io("opening /dev/null"))?))
}

/// The host uid of the container's root: the start of its own range of host ids
/// (allocated on first use, kept while its folder exists; see [`super::ids`]), or
/// `None` when the spec opted out of the user namespace.
pub fn userns_base(root: &Path, plan: &Plan) -> Result<Option<u32>, RunError> {
    if plan.host_root {
        return Ok(None);
    }
    Ok(Some(super::ids::Registry::host().allocate(root, &plan.name)?))
}

/// What `plan` and `status` say about a container's user namespace.
#[derive(Debug, Clone)]
pub struct UsernsView {
    /// "user namespace: …", one line.
    pub line: String,
    pub json: serde_json::Value,
    /// Volumes the next apply shifts into the range (they hold host ids).
    pub migrate: Vec<String>,
}

/// The user namespace of `plan`'s container: its range (if allocated) or that it is
/// off; reads only.
pub fn userns_view(root: &Path, plan: &Plan) -> Result<UsernsView, RunError> {
    let dirs = Dirs::new(root, &plan.name);
    if plan.host_root {
        let old = super::ids::Registry::host().lookup(root, &plan.name)?;
        return Ok(UsernsView {
            line: format!("user namespace: {}", super::ids::describe(None)),
            json: serde_json::json!({"enabled": false, "container_root": "host root"}),
            migrate: old.map(|o| prepare::volumes_to_unshift(plan, &dirs, o)).unwrap_or_default(),
        });
    }
    Ok(match super::ids::Registry::host().lookup(root, &plan.name)? {
        Some(b) => UsernsView {
            line: format!("user namespace: {}", super::ids::describe(Some(b))),
            json: serde_json::json!({
                "enabled": true,
                "host_uids": [b, b as u64 + super::ids::SIZE as u64 - 1],
                "host_gids": [b, b as u64 + super::ids::SIZE as u64 - 1],
                "container_root": b,
            }),
            migrate: prepare::volumes_to_migrate(plan, &dirs, Some(b)),
        },
        None => UsernsView {
            line: format!(
                "user namespace: a range of {} host uids/gids of its own, allocated at apply",
                super::ids::SIZE
            ),
            json: serde_json::json!({"enabled": true, "host_uids": null, "host_gids": null, "container_root": null}),
            // Any existing volume holds host ids: the range is new.
            migrate: prepare::volumes_to_migrate(plan, &dirs, Some(u32::MAX - super::ids::SIZE)),
        },
    })
}

/// The host uid of the root of the user namespace PID 1 `pid` runs in (`None`: the
/// host's, or unreadable).
pub fn userns_of(pid: i32) -> Option<u32> {
    let map = std::fs::read_to_string(format!("/proc/{pid}/uid_map")).ok()?;
    let mut f = map.split_whitespace();
    let (inside, outside, count) = (f.next()?, f.next()?, f.next()?);
    (inside == "0" && count != "4294967295").then(|| outside.parse().ok()).flatten()
}

/// Start a container from `plan` (not running yet): spawn, network, nftables,
/// release. Returns once its PID 1 runs, with the read end of its readiness pipe for
/// [`wait_fresh`].
pub fn start_plan(root: &Path, plan: &Plan, say: Say) -> Result<(RunInfo, supervisor::ReadyPipe), RunError> {
    let dirs = Dirs::new(root, &plan.name);
    let base = userns_base(root, plan)?;
    let rootfs = prepare::rootfs(plan, &dirs)?;
    let etc = prepare::etc_dir(&rootfs);
    // PID 1 gets its configuration as this sealed memfd, at fd 3: nothing in the
    // container's view holds it.
    let config = prepare::supervisor_config_fd(plan, &dirs)?;
    // The previous run's status must not be mistaken for this one's.
    for stale in ["status.json", "control.sock"] {
        match std::fs::remove_file(dirs.run().join(stale)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(format!("removing {stale}"))(e)),
            _ => {}
        }
    }
    // An older version's config and log in the run folder: never read again. unlink
    // never follows a symlink; whatever else the container made there (a folder of
    // that name) is its own and is left alone.
    for legacy in layout::LEGACY_RUN_FILES {
        let _ = std::fs::remove_file(dirs.run().join(legacy));
    }
    prepare::own_run_dir(&dirs, base)?;
    prepare::link_all_bound(plan, &dirs)?;
    // A new run: how the last one ended (and that a user stopped it) is history.
    for old in [dirs.exit_file(), dirs.stop_file()] {
        match std::fs::remove_file(&old) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(io(format!("removing {}", old.display()))(e));
            }
            _ => {}
        }
    }
    let mut spec = prepare::sandbox_spec(plan, &dirs, rootfs, &etc, base)?;
    // PID 1 is the keeper's child, which records how it ends (`exit.json`).
    spec.keeper = keeper_exe().map(|exe| sandbox::Keeper { exe, exit_file: dirs.exit_file() });
    // Checked when applied; checked again here, as another root's container may have
    // taken an address of this stopped one meanwhile.
    check_network(root, plan)?;
    // Limits apply where the host has the controller; a missing one is a warning.
    // The device allow-list grants the plan's device nodes besides the defaults.
    let devices: Vec<PathBuf> = plan.devices.iter().map(|d| PathBuf::from(d.as_str())).collect();
    let key = StateRoot::new(root).host_key(&plan.name);
    let (cgroups, warnings) = cgroup::Cgroups::create_with(&key, &plan.limits, &devices)?;
    for w in warnings {
        say(&format!("warning: {w}"));
    }
    crash_point(CrashPoint::Cgroup);
    let stdio =
        sandbox::Stdio { stdin: Some(dev_null()?), stdout: Some(open_log(&dirs)?), stderr: Some(open_log(&dirs)?) };
    // PID 1 starts inside them, before it makes its cgroup namespace: so every process
    // of the container is in them, and the namespace is rooted at them.
    spec.cgroups = cgroups.dirs().to_vec();
    // The sandbox binds volumes by path: checked last, with nothing of the container
    // running that could swap a folder for a symlink (see SECURITY.md, Known gaps).
    prepare::check_volumes(plan, &dirs)?;
    // PID 1 gets its cgroup2 cgroup, delegated to the container's root, as a folder
    // fd at 4: it gives each service a child cgroup there (see
    // `exec::supervisor`); nothing is mounted for it.
    let owner = base.map(|b| (b, b));
    let cgroup_dir = cgroups.delegate(owner)?;
    // And the write end of its readiness pipe at 5 (`supervisor::READY_FD`).
    let (ready, ready_w) = supervisor::ReadyPipe::new().map_err(io("making the readiness pipe"))?;
    let pending = sandbox::spawn_passing_fds(&spec, stdio, [Some(config), cgroup_dir, Some(ready_w)])?;
    let info = RunInfo::of(pending.pid())
        .ok_or_else(|| RunError::Failed(format!("container process {} vanished during setup", pending.pid())))?;
    layout::write_run_info(&dirs, &info)?;
    crash_point(CrashPoint::Spawn);
    match plan.network.mode {
        NetMode::Routed => {
            let ns = net::open_netns(pending.pid())?;
            // The stopped container's placeholders give way to its real routes.
            net::clear_unreachable(&plan.network)?;
            net::setup(&key, &plan.network, ns.as_fd())?;
            let n = &plan.network;
            let v: Vec<String> =
                n.ipv4.iter().map(|a| a.to_string()).chain(n.ipv6.iter().map(|a| a.to_string())).collect();
            say(&format!("network: {} on {}", v.join(", "), net::host_ifname(&key)));
        }
        NetMode::None => {
            // `lo` up, and the namespace's sysctls (ping_group_range, the plan's).
            let ns = net::open_netns(pending.pid())?;
            net::setup(&key, &plan.network, ns.as_fd())?;
        }
        NetMode::Host => {}
    }
    crash_point(CrashPoint::Network);
    sync_nft(root, false)?;
    crash_point(CrashPoint::Nft);
    let child = pending.release()?;
    crash_point(CrashPoint::Release);
    // PID 1 outlives us: its keeper is its parent. Its pidfd is not needed, and
    // nobody waits for the keeper.
    drop(child);
    Ok((info, ready))
}

/// The keeper binary: `container-init`, installed next to `container` (see
/// `exec::keeper`); without it PID 1 has no keeper and a crash's status is unknown.
fn keeper_exe() -> Option<PathBuf> {
    std::env::current_exe().ok().and_then(|exe| Some(exe.parent()?.join("container-init"))).filter(|p| p.is_file())
}

/// The spec's spelling of a restart policy.
pub fn restart_word(r: crate::spec::types::Restart) -> &'static str {
    use crate::spec::types::Restart;
    match r {
        Restart::No => "no",
        Restart::OnFailure => "on-failure",
        Restart::Always => "always",
    }
}

/// What `start --wait` does once PID 1 of a container to run has died, under its
/// restart policy (pure): exit 1 (systemd's `Restart=on-failure` starts the unit
/// again) for "on-failure" and "always", exit 0 for "no" (systemd leaves it down;
/// `status` says crashed).
pub fn restart_after_crash(r: crate::spec::types::Restart) -> bool {
    r != crate::spec::types::Restart::No
}

/// Whether `start --all` starts a container: one to run (`desired.json`), or one
/// set to stay stopped that crashed under restart policy "always" (pure).
pub fn start_at_boot(desired: layout::Desired, restart: crate::spec::types::Restart, crashed: bool) -> bool {
    desired == layout::Desired::Running || (crashed && restart == crate::spec::types::Restart::Always)
}

/// What a container is doing, as `status` and `list` tell it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunState {
    Running(RunInfo),
    /// A user's `stop` ended it (or it never ran).
    Stopped,
    /// PID 1 ended without a `stop`: how (`None` while not known yet).
    Crashed(Option<crate::exec::keeper::ExitRecord>),
}

/// Whether the container runs, was stopped, or crashed (reads only).
pub fn run_state(root: &Path, name: &str) -> RunState {
    let dirs = Dirs::new(root, name);
    if let Some(info) = layout::running(&dirs) {
        return RunState::Running(info);
    }
    if dirs.stop_file().exists() {
        return RunState::Stopped;
    }
    if let Some(rec) = crate::exec::keeper::read(&dirs.exit_file()) {
        return RunState::Crashed(Some(rec));
    }
    if dirs.run_info().exists() {
        return RunState::Crashed(None);
    }
    RunState::Stopped
}

/// Wait (up to `max`) for the keeper's record of PID 1 `pid`'s end.
fn wait_exit_record(dirs: &Dirs, pid: i32, max: Duration) -> Option<crate::exec::keeper::ExitRecord> {
    let deadline = Instant::now() + max;
    loop {
        if let Some(rec) = crate::exec::keeper::read(&dirs.exit_file()).filter(|r| r.pid == pid) {
            return Some(rec);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A container whose PID 1 ended without a `stop` (it crashed, or was killed) is
/// cleaned up: its network, nftables rules and cgroups go, its addresses get their
/// placeholder routes, and how PID 1 ended stays recorded (`exit.json`) so `status`
/// says crashed until `start` or `destroy`. Done by every command that looks at the
/// container (`status`, `list`, `plan`, `apply`, `start`); skipped while another
/// command holds the container's lock (that one cleans up). Returns whether it did.
pub fn reap_crashed(root: &Path, name: &str) -> Result<bool, RunError> {
    let dirs = Dirs::new(root, name);
    let dead = |d: &Dirs| d.run_info().exists() && layout::running(d).is_none();
    if !dead(&dirs) {
        return Ok(false);
    }
    let path = dirs.lock_file();
    let Some(_lock) = Lock::try_take(&path).map_err(io(format!("locking {}", path.display())))? else {
        return Ok(false);
    };
    if !dead(&dirs) {
        return Ok(false);
    }
    if let Ok(Some(info)) = crate::state::read_json::<RunInfo>(&dirs.run_info()) {
        // Its keeper writes the record as soon as PID 1 is reaped.
        if wait_exit_record(&dirs, info.pid, Duration::from_millis(500)).is_none() && !dirs.stop_file().exists() {
            let rec = crate::exec::keeper::ExitRecord {
                pid: info.pid,
                code: None,
                signal: None,
                at_ms: layout::now_ms(),
                unknown: true,
            };
            crate::exec::keeper::write(&dirs.exit_file(), &rec).map_err(io("recording the crash"))?;
        }
    }
    cleanup(root, &dirs)?;
    Ok(true)
}

/// Wait until every service of `wait` is ready in the incarnation it names (or a
/// later one), never on a status from before: the supervisor answers a `wait`
/// request once its probe passed after that spawn (a service without a probe: once it
/// still runs `supervisor::START_GRACE` after it, or ended with exit 0; with
/// [`Grace::Skip`]: once spawned) and every init
/// task has ended. Returns the status then and what failed ("service NAME: why",
/// with its last log lines), empty when all is well. A PID 1 just started
/// ([`start_plan`]) is asked once its `ready` pipe says its socket listens.
pub fn wait_fresh(
    dirs: &Dirs,
    info: &RunInfo,
    wait: &BTreeMap<String, u64>,
    grace: Grace,
    ready: Option<&supervisor::ReadyPipe>,
) -> Result<(supervisor::Status, Vec<String>), RunError> {
    let deadline = Instant::now() + READY_WAIT;
    // Whatever it says, the loop below decides: a PID 1 that ended is found dead, and
    // one that never took the pipe (or said nothing in time) is retried as before.
    if let Some(pipe) = ready {
        pipe.wait(READY_WAIT);
    }
    let req = ControlRequest::Wait { services: wait.clone(), no_grace: grace == Grace::Skip };
    loop {
        if !info.alive() {
            return Err(pid1_exited(dirs));
        }
        let reply = match supervisor::control(&dirs.run(), info.pid, &req) {
            Ok(reply) => reply,
            // A fresh PID 1 may not listen yet.
            Err(supervisor::SupervisorError::Io { source, .. })
                if matches!(source.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused)
                    && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            }
            Err(supervisor::SupervisorError::Io { source, .. })
                if matches!(source.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) =>
            {
                return Err(RunError::Failed(format!(
                    "services not ready after {} s (see `container status {}`)",
                    READY_WAIT.as_secs(),
                    dirs.name
                )));
            }
            Err(e) if !info.alive() => {
                let _ = e;
                return Err(pid1_exited(dirs));
            }
            Err(e) => return Err(e.into()),
        };
        let status = match (reply.status, reply.ok) {
            (Some(st), _) => st,
            (None, _) => {
                let e = reply.error.unwrap_or_else(|| "no reason given".into());
                return Err(RunError::Failed(format!("waiting for the services: {e}")));
            }
        };
        let problems =
            reply.failed.iter().map(|(svc, why)| format!("service {svc}: {why}{}", log_tail(dirs, svc))).collect();
        return Ok((status, problems));
    }
}

/// Whether a service without a probe must outlive `supervisor::START_GRACE` before
/// [`wait_fresh`] counts it: yes after an `apply` or `restart` (a new spec or
/// command is being tried, and one that exits at once must fail it); no for a
/// `start` of what ran before, which returns once every service is spawned (as
/// `podman start` and `machinectl start` do), so start costs no second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grace {
    Wait,
    Skip,
}

/// Lines of a service's log shown with its failure.
const LOG_LINES: usize = 8;

/// The last [`LOG_LINES`] lines of service `svc`'s log, as lines to append to a
/// failure (empty when it logged nothing). Read beneath the run folder, never
/// through a symlink.
pub fn log_tail(dirs: &Dirs, svc: &str) -> String {
    let tail = Beneath::open(&dirs.run())
        .and_then(|dir| dir.read_tail(&Dirs::service_log_in_run(svc), 16 << 10))
        .ok()
        .flatten()
        .unwrap_or_default();
    let tail = String::from_utf8_lossy(&tail);
    let lines: Vec<&str> = tail.lines().collect();
    let lines = &lines[lines.len().saturating_sub(LOG_LINES)..];
    if lines.is_empty() {
        return String::new();
    }
    let shown: Vec<String> = lines.iter().map(|l| format!("\n    | {l}")).collect();
    format!("\n    last lines of its log (container logs {} {svc}):{}", dirs.name, shown.concat())
}

fn pid1_exited(dirs: &Dirs) -> RunError {
    // Its last 64 KiB, from the host-private folder, never through a symlink.
    let tail = Beneath::open(&dirs.root)
        .and_then(|dir| dir.read_tail(Path::new(layout::SUPERVISOR_LOG), 64 << 10))
        .ok()
        .flatten()
        .unwrap_or_default();
    let tail = String::from_utf8_lossy(&tail);
    let tail: Vec<&str> = tail.lines().rev().take(5).collect::<Vec<_>>().into_iter().rev().collect();
    RunError::Failed(format!(
        "the container's PID 1 exited during start{}",
        if tail.is_empty() { String::new() } else { format!(":\n  {}", tail.join("\n  ")) }
    ))
}

/// Services and tasks that failed, as "name: message" lines.
pub fn failures(st: &supervisor::Status) -> Vec<String> {
    let mut out = Vec::new();
    for (n, s) in &st.services {
        if s.state == supervisor::ServiceState::Failed {
            out.push(format!("service {n}: {}", s.message.clone().unwrap_or_else(|| "failed".into())));
        }
    }
    for (n, t) in &st.init {
        if t.state == supervisor::TaskState::Failed {
            out.push(format!("init task {n}: {}", t.message.clone().unwrap_or_else(|| "failed".into())));
        }
    }
    out
}

/// Stop the running PID 1: ask the supervisor (services stop in reverse order, SIGTERM
/// then SIGKILL after `timeout`), then SIGKILL PID 1 if it does not end (the kernel
/// then kills everything in its pid namespace).
fn stop_process(dirs: &Dirs, info: &RunInfo, timeout: Duration, layers: usize) -> Result<(), RunError> {
    // A pidfd taken while the start time still matches names this process for good:
    // waiting and signalling through it cannot hit a recycled pid.
    let Some(proc1) = Process::open(info.pid) else { return Ok(()) };
    if !info.alive() {
        return Ok(());
    }
    let ok = |r: Result<supervisor::ControlReply, _>| r.is_ok_and(|v| v.ok);
    // The socket is the container's to replace: a refused one (a symlink, another
    // process listening) counts as not asked, and PID 1 gets SIGKILL at once.
    let timeout_ms = Some(timeout.as_millis() as u64);
    let asked = ok(supervisor::control(&dirs.run(), info.pid, &ControlRequest::Stop { timeout_ms }))
        || ok(supervisor::control(&dirs.run(), info.pid, &ControlRequest::Stop { timeout_ms: None }))
        // A PID 1 started by an older version takes only its words: stopped gracefully all the same.
        || ok(supervisor::control_line(&dirs.run(), info.pid, &format!("stop {}", timeout.as_millis())));
    // One timeout per layer (the supervisor stops a layer at once), one more for a
    // running init task, which ends first.
    let grace = if asked { timeout * (layers as u32 + 1) + Duration::from_secs(5) } else { Duration::ZERO };
    if !proc1.wait_exit(grace) {
        proc1.kill();
        if !proc1.wait_exit(Duration::from_secs(10)) {
            return Err(RunError::Failed(format!("container PID 1 ({}) did not exit after SIGKILL", info.pid)));
        }
    }
    Ok(())
}

/// How many layers the supervisor stops `plan`'s services in, one after the other.
fn stop_layer_count(plan: &Plan) -> usize {
    let services = plan.services.iter().map(|(n, s)| (n.clone(), s.after.clone())).collect();
    let tasks = plan.init.iter().map(|(n, t)| (n.clone(), t.after.clone())).collect();
    supervisor::stop_layers(&services, &tasks).values().map(|l| l + 1).max().unwrap_or(1)
}

/// Remove everything a container's run added on the host: network of every plan it
/// may have run with, its nftables rules, `run.json`.
fn cleanup(root: &Path, dirs: &Dirs) -> Result<(), RunError> {
    let plans: Vec<Plan> = [read_plan(&dirs.state())?, read_plan(&dirs.pending())?].into_iter().flatten().collect();
    cleanup_plans(root, dirs, &plans)
}

/// [`cleanup`] after a run with `plans`; with none (both unreadable) the veth is
/// still found by its name.
fn cleanup_plans(root: &Path, dirs: &Dirs, plans: &[Plan]) -> Result<(), RunError> {
    // This root's own: another root's container of the same name is not touched.
    let key = StateRoot::new(root).host_key(&dirs.name);
    for plan in plans {
        teardown_network(&key, plan)?;
        if plan.network.mode == NetMode::Routed {
            net::clear_unreachable(&plan.network)?;
        }
    }
    if plans.is_empty() {
        net::run(&[net::Step::DeleteLink { dev: net::host_ifname(&key) }], None)?;
    }
    let _ = std::fs::remove_file(dirs.run_info());
    prepare::clear_bound(dirs)?;
    sync_nft(root, false)?;
    // Kills whatever might still be inside (nothing, after PID 1 ended) and removes them.
    cgroup::Cgroups::open(&key)?.remove()?;
    // While it does not run, traffic to its addresses is refused at once instead of
    // leaving by the default route (`destroy` and `start` remove these).
    // (The current plan: the pending one if an apply was under way, else the applied.)
    if let Some(plan) = plans.last().filter(|p| p.network.mode == NetMode::Routed) {
        net::set_unreachable(&plan.network)?;
    }
    Ok(())
}

/// Stop a container (if it runs) and clean up after it. Returns whether it ran.
pub fn stop(root: &Path, name: &str, timeout: Option<Duration>, say: Say) -> Result<bool, RunError> {
    let dirs = Dirs::new(root, name);
    let plan = current_plan(&dirs)?.ok_or_else(|| RunError::NotFound(name.to_string()))?;
    let ran = match layout::running(&dirs) {
        Some(info) => {
            say(&format!("stopping {name} (PID 1 is {})", info.pid));
            // First: PID 1 ending from now on is this stop, no crash.
            let at = serde_json::json!({ "at_ms": layout::now_ms() });
            crate::state::write_private(&dirs.stop_file(), at.to_string().as_bytes())?;
            let t = timeout.unwrap_or(Duration::from_secs(10));
            let keeper = crate::exec::keeper::of(info.pid);
            stop_process(&dirs, &info, t, stop_layer_count(&plan))?;
            // Its keeper records the end right after, and exits; wait for it, so no
            // record of this run lands after the next one started (or after
            // `destroy`). Its exit says when, without polling for the file.
            if let Some(k) = keeper {
                k.wait_exit(Duration::from_secs(2));
            }
            wait_exit_record(&dirs, info.pid, Duration::from_secs(2));
            true
        }
        None => false,
    };
    cleanup(root, &dirs)?;
    Ok(ran)
}

/// `container stop`: record that the container is to stay stopped (also across a
/// reboot: `start --all` leaves it alone), then [`stop`] it.
pub fn stop_wanted(root: &Path, name: &str, timeout: Option<Duration>, say: Say) -> Result<bool, RunError> {
    let dirs = Dirs::new(root, name);
    current_plan(&dirs)?.ok_or_else(|| RunError::NotFound(name.to_string()))?;
    layout::write_desired(&dirs, layout::Desired::Stopped)?;
    stop(root, name, timeout, say)
}

/// Start a stopped container from its applied plan; waits until it is ready. Records
/// that it is to run (`desired.json`), also when it runs already.
pub fn start(root: &Path, name: &str, say: Say) -> Result<Option<supervisor::Status>, RunError> {
    let dirs = Dirs::new(root, name);
    if dirs.state().exists() || dirs.pending().exists() {
        layout::write_desired(&dirs, layout::Desired::Running)?;
    }
    if layout::running(&dirs).is_some() && !dirs.pending().exists() {
        return Ok(None);
    }
    let plan = applied(root, name)?.ok_or_else(|| RunError::NotFound(name.to_string()))?;
    // A secret it cannot use stops it before anything changes.
    prepare::check_secrets(&plan, Some(&plan), &dirs, &Default::default())?;
    // An interrupted apply left things behind: clean them up first.
    stop(root, name, None, say)?;
    let _ = std::fs::remove_file(dirs.pending());
    let base = userns_base(root, &plan)?;
    unshift_volumes(root, &plan, &dirs, say)?;
    prepare_dirs(&plan, &dirs, base, say)?;
    let (info, ready) = start_plan(root, &plan, say)?;
    let (status, problems) = wait_fresh(&dirs, &info, &first_incarnations(&plan), Grace::Skip, Some(&ready))?;
    if !problems.is_empty() {
        return Err(RunError::Failed(format!(
            "{}\n  (the container runs; see `container logs {name}`)",
            problems.join("\n  ")
        )));
    }
    Ok(Some(status))
}

/// A fresh PID 1 spawns every service for the first time: incarnation 1 of each.
fn first_incarnations(plan: &Plan) -> BTreeMap<String, u64> {
    plan.services.keys().map(|n| (n.clone(), 1)).collect()
}

fn prepare_dirs(plan: &Plan, dirs: &Dirs, base: Option<u32>, say: Say) -> Result<(), RunError> {
    let rootfs = prepare::rootfs(plan, dirs)?;
    let etc = prepare::etc_dir(&rootfs);
    // The applied plan's secrets were all generated by its apply.
    prepare::ensure_secrets(plan, dirs, base, Some(plan), &Default::default())?;
    prepare::write_files(plan, dirs, &etc, base)?;
    prepare::write_net_files(plan, dirs, base)?;
    migrated(prepare::ensure_volumes(plan, dirs, &etc, base)?, base, say);
    Ok(())
}

/// An opted-out container's volumes that still belong to its former range go back
/// to host ids (while it is stopped).
fn unshift_volumes(root: &Path, plan: &Plan, dirs: &Dirs, say: Say) -> Result<(), RunError> {
    if !plan.host_root {
        return Ok(());
    }
    if let Some(old) = super::ids::Registry::host().lookup(root, &plan.name)? {
        prepare::check_volumes(plan, dirs)?;
        for v in prepare::volumes_to_unshift(plan, dirs, old) {
            prepare::unshift_tree(&dirs.volume(&v), old)?;
            say(&format!("volume {v}: ownership shifted back to host ids (user namespace off)"));
        }
    }
    Ok(())
}

fn migrated(volumes: Vec<String>, base: Option<u32>, say: Say) {
    for v in volumes {
        say(&format!("volume {v}: ownership shifted into the container's {}", super::ids::describe(base)));
    }
}

/// What an apply did.
#[derive(Debug)]
pub enum Applied {
    /// Nothing to do: the container runs the plan already.
    Unchanged,
    /// Created, recreated or started.
    Started { recreated: bool, status: supervisor::Status },
    /// Changed or repaired in place.
    Updated {
        reloaded: Vec<String>,
        restarted: Vec<String>,
        network: bool,
        /// Drift put back ("started web", "nft rules restored", …).
        repaired: Vec<String>,
        status: supervisor::Status,
    },
}

/// What an apply of `plan` will do, decided once: the changes and drift to show,
/// and the actions [`apply`] carries out.
#[derive(Debug, Clone)]
pub struct Decision {
    pub changes: Changes,
    pub actions: Vec<ApplyAction>,
    /// Secrets `container secret regenerate` asked a new value for.
    pub regenerate: std::collections::BTreeSet<String>,
}

/// Whether the running PID 1 `info` can be changed live to `plan`: a container that
/// runs with other ids than the plan's (from before user namespaces, or opted in or
/// out since), or whose volumes hold host ids, is recreated (its volumes are shifted
/// while nothing runs); so is one an older version started, whose PID 1 reads its
/// config from the run folder (which the container can write).
fn fits(root: &Path, plan: &Plan, dirs: &Dirs, info: &RunInfo) -> Result<bool, RunError> {
    let registered = super::ids::Registry::host().lookup(root, &plan.name)?;
    let base = if plan.host_root { None } else { registered };
    Ok(info.config_fd
        && userns_of(info.pid) == base
        && base.is_some() != plan.host_root
        && prepare::volumes_to_migrate(plan, dirs, base).is_empty()
        && (!plan.host_root || registered.is_none_or(|o| prepare::volumes_to_unshift(plan, dirs, o).is_empty())))
}

/// Diff `plan` against the applied one, observe what runs and decide (the caller
/// holds the container's lock for an apply; `plan` alone only reads).
pub fn decide(root: &Path, plan: &Plan) -> Result<Decision, RunError> {
    let dirs = Dirs::new(root, &plan.name);
    let old = applied(root, &plan.name)?;
    let running = layout::running(&dirs);
    let fits = match &running {
        Some(info) => fits(root, plan, &dirs, info)?,
        None => false,
    };
    let drift = old.as_ref().map(|o| super::observe::drift(root, o)).unwrap_or_default();
    let regenerate = layout::read_regenerate(&dirs)?;
    let mut changes =
        crate::plan::secrets::with_regenerations(crate::plan::diff(old.as_ref(), plan), plan, &regenerate);
    changes.drift = drift.clone();
    let observed = Observed { running: running.is_some(), fits, interrupted: dirs.pending().exists(), drift };
    let actions = crate::plan::actions::decide_changes(old.as_ref(), plan, &changes, &observed);
    Ok(Decision { changes, actions, regenerate })
}

/// Converge the container to `plan` by carrying out `decision` (from [`decide`]; the
/// caller holds the container's lock and has recorded the plan's addresses in the
/// pool).
pub fn apply(root: &Path, plan: &Plan, decision: &Decision, say: Say) -> Result<Applied, RunError> {
    let dirs = Dirs::new(root, &plan.name);
    // A secret that cannot be used (missing, empty, not a regular file) is refused
    // before anything changes, also when nothing else would change.
    let old = applied(root, &plan.name)?;
    let regenerate = &decision.regenerate;
    prepare::check_secrets(plan, old.as_ref(), &dirs, regenerate)?;
    if decision.actions.is_empty() {
        // The restart policy is read by `start --wait` only: a new one is recorded,
        // nothing restarts.
        if let Some(old) = old.filter(|o| o.restart != plan.restart) {
            say(&format!("restart policy {} → {}: recorded", restart_word(old.restart), restart_word(plan.restart)));
            layout::record_applied(&dirs, plan)?;
        }
        return Ok(Applied::Unchanged);
    }
    let interrupted = dirs.pending().exists();
    let running = layout::running(&dirs);
    // Refuse what cannot run before anything changes.
    prepare::rootfs(plan, &dirs)?;
    let applied_before = old.clone();

    layout::write_pending(&dirs, plan)?;
    layout::write_desired(&dirs, layout::Desired::Running)?;
    crash_point(CrashPoint::Pending);

    let fresh = matches!(decision.actions.first(), Some(ApplyAction::Create | ApplyAction::Recreate));
    let (result, problems) = match (fresh, running, old) {
        (false, Some(info), Some(old)) => update_live(root, plan, &old, decision, &dirs, &info, say)?,
        (false, _, _) => {
            return Err(RunError::Failed(format!(
                "{} stopped while the apply began; run `container apply` again",
                plan.name
            )))
        }
        (true, running, _) => {
            let recreated = running.is_some() || interrupted;
            if recreated {
                say(&format!("recreating {}", plan.name));
            }
            // Stop what runs (with the old or interrupted plan) and clean up after it.
            if dirs.state().exists() || interrupted {
                stop(root, &plan.name, None, say)?;
            }
            let base = userns_base(root, plan)?;
            prepare::ensure_secrets(plan, &dirs, base, applied_before.as_ref(), regenerate)?;
            crash_point(CrashPoint::Secrets);
            let etc = prepare::etc_dir(&prepare::rootfs(plan, &dirs)?);
            prepare::write_files(plan, &dirs, &etc, base)?;
            prepare::write_net_files(plan, &dirs, base)?;
            crash_point(CrashPoint::Files);
            unshift_volumes(root, plan, &dirs, say)?;
            migrated(prepare::ensure_volumes(plan, &dirs, &etc, base)?, base, say);
            crash_point(CrashPoint::Volumes);
            let (info, ready) = start_plan(root, plan, say)?;
            let (status, problems) = wait_fresh(&dirs, &info, &first_incarnations(plan), Grace::Wait, Some(&ready))?;
            crash_point(CrashPoint::Ready);
            (Applied::Started { recreated, status }, problems)
        }
    };
    // A service or init task that failed leaves the apply unfinished: `pending.json`
    // stays, so the next apply retries (recreating) instead of reporting "No changes".
    let status = match &result {
        Applied::Started { status, .. } | Applied::Updated { status, .. } => Some(status),
        Applied::Unchanged => None,
    };
    let mut failed = problems;
    for f in status.map(failures).unwrap_or_default() {
        // The same service, already named (with its log) by the wait.
        let svc = f.split(':').next().unwrap_or_default().to_string();
        if !failed.iter().any(|p| p.starts_with(&format!("{svc}:"))) {
            match svc.strip_prefix("service ") {
                Some(name) => failed.push(format!("{f}{}", log_tail(&dirs, name))),
                None => failed.push(f),
            }
        }
    }
    if !failed.is_empty() {
        return Err(RunError::Failed(format!(
            "{}\n  (the container runs; see `container logs {}`; the next apply retries)",
            failed.join("\n  "),
            plan.name
        )));
    }
    crash_point(CrashPoint::Record);
    layout::record_applied(&dirs, plan)?;
    // The secrets asked for are made, and used by what was written and restarted.
    layout::clear_regenerate(&dirs)?;
    Ok(result)
}

/// Carry out the live actions of a decision on a running container.
fn update_live(
    root: &Path,
    plan: &Plan,
    old: &Plan,
    decision: &Decision,
    dirs: &Dirs,
    info: &RunInfo,
    say: Say,
) -> Result<(Applied, Vec<String>), RunError> {
    let actions = &decision.actions;
    // The running container's ids (apply checked they are the plan's).
    let base = userns_of(info.pid);
    let key = StateRoot::new(root).host_key(&plan.name);
    let (mut reloaded, mut restarted, mut repaired) = (Vec::new(), Vec::new(), Vec::new());
    let mut network = false;
    // Every service this (re)starts, with the incarnation it gets: what to wait for.
    let mut wait = BTreeMap::new();
    for action in actions {
        match action {
            ApplyAction::Files => {
                let etc = prepare::etc_dir(&prepare::rootfs(plan, dirs)?);
                prepare::ensure_secrets(plan, dirs, base, Some(old), &decision.regenerate)?;
                crash_point(CrashPoint::Secrets);
                // The inodes the container has bound now (see `prepare::bound_name`).
                let net_paths: Vec<&str> = prepare::net_files(plan).into_iter().map(|(p, _)| p).collect();
                let bound: BTreeMap<PathBuf, Option<u64>> = (plan.files.keys().map(|p| dirs.file(p)))
                    .chain(net_paths.iter().map(|p| dirs.net_file(p)))
                    .map(|h| {
                        let ino = prepare::inode_of(&h);
                        (h, ino)
                    })
                    .collect();
                let files = prepare::write_files(plan, dirs, &etc, base)?;
                let net_files = prepare::write_net_files(plan, dirs, base)?;
                crash_point(CrashPoint::Files);
                prepare::ensure_volumes(plan, dirs, &etc, base)?;
                crash_point(CrashPoint::Volumes);
                // What changed on the host is now bound in place of the old inside,
                // each file at once (never seen partly written); a new one (the diff
                // let it in only beneath a volume or tmpfs) gets its mount point made.
                for path in &files {
                    let how = if old.files.contains_key(path) { Target::Replace } else { Target::Create };
                    bind_live(info, &dirs.file(path), bound.get(&dirs.file(path)).copied().flatten(), path, how)?;
                }
                for path in &net_files {
                    let host = dirs.net_file(path);
                    bind_live(info, &host, bound.get(&host).copied().flatten(), path, Target::Replace)?;
                }
            }
            ApplyAction::Network => {
                teardown_network(&key, old)?;
                if plan.network.mode == NetMode::Routed {
                    let ns = net::open_netns(info.pid)?;
                    net::setup(&key, &plan.network, ns.as_fd())?;
                }
                say("network reconfigured");
                network = true;
            }
            ApplyAction::Rules => {
                crash_point(CrashPoint::Network);
                sync_nft(root, true)?;
                crash_point(CrashPoint::Nft);
            }
            ApplyAction::Reconfigure => {
                // The new config travels with the request as a sealed memfd; the
                // supervisor takes it only from outside its pid namespace (the host).
                let config = prepare::supervisor_config_fd(plan, dirs)?;
                let reply =
                    supervisor::control_with_fd(&dirs.run(), info.pid, &ControlRequest::Reconfigure, config.as_fd());
                wait.extend(control_reply("reconfigure", reply)?);
            }
            ApplyAction::Reload(s) => {
                wait.extend(control_ok(dirs, info, &ControlRequest::Reload { service: s.clone() })?);
                reloaded.push(s.clone());
            }
            ApplyAction::Restart(s) => {
                wait.extend(control_ok(dirs, info, &ControlRequest::Restart { service: s.clone() })?);
                restarted.push(s.clone());
            }
            ApplyAction::Repair(d) => match (d.repair(), d) {
                (Repair::Start(s), Drift::Service { state, .. }) => {
                    wait.extend(control_ok(dirs, info, &ControlRequest::Restart { service: s.clone() })?);
                    say(&format!("service {s} was {state}: started"));
                    repaired.push(format!("started {s}"));
                }
                (Repair::Network, d) => repaired.push(match d {
                    Drift::Veth { veth } => format!("veth {veth} recreated"),
                    Drift::Route { route } => format!("route {route} restored"),
                    other => other.to_string(),
                }),
                (Repair::Rules, _) => repaired.push("nft rules restored".into()),
                // `decide` recreates for these; nothing is left to do live.
                (Repair::Recreate | Repair::Start(_), _) => {}
            },
            ApplyAction::Create | ApplyAction::Recreate => {}
        }
    }
    let (status, problems) = wait_fresh(dirs, info, &wait, Grace::Wait, None)?;
    crash_point(CrashPoint::Ready);
    Ok((Applied::Updated { reloaded, restarted, network, repaired, status }, problems))
}

/// Bind the new version of the host file `host` at `path` in the running container
/// `info` (see `exec::livemount`), from a link of its own (`prepare::bound_name`);
/// the link of the version it replaced (inode `old`) goes once no mount holds it.
fn bind_live(info: &RunInfo, host: &Path, old: Option<u64>, path: &str, how: Target) -> Result<(), RunError> {
    if !info.alive() {
        return Err(RunError::Failed(format!("file {path}: the container's PID 1 ({}) is gone", info.pid)));
    }
    let link = prepare::link_bound(host)?;
    let unmounted =
        livemount::bind_file(info.pid, &link, path, how).map_err(|e| RunError::Failed(format!("file {e}")))?;
    if let Some(ino) = old.filter(|_| unmounted) {
        let _ = std::fs::remove_file(prepare::bound_name(host, ino));
    }
    Ok(())
}

/// Sends `request`; its `wait` (the incarnations of what it restarted) when it was taken.
fn control_ok(dirs: &Dirs, info: &RunInfo, request: &ControlRequest) -> Result<BTreeMap<String, u64>, RunError> {
    let what = serde_json::to_string(request).unwrap_or_default();
    control_reply(&what, supervisor::control(&dirs.run(), info.pid, request))
}

fn control_reply(
    request: &str,
    reply: Result<supervisor::ControlReply, supervisor::SupervisorError>,
) -> Result<BTreeMap<String, u64>, RunError> {
    let reply = reply?;
    if reply.ok {
        Ok(reply.wait)
    } else {
        let e = reply.error.as_deref().unwrap_or("no reason given");
        Err(RunError::Failed(format!("supervisor refused `{request}`: {e}")))
    }
}

/// Stop, clean up and delete a container. Volumes and secrets (which the data in the
/// volumes may depend on, e.g. a database's root password) are kept unless `volumes`.
///
/// Always works, also on a container whose plans are damaged (PID 1 is found by
/// `run.json`, the veth and cgroups by the container's host key) and after a destroy
/// that was interrupted: every step is idempotent, and `state.json` (with
/// `pending.json`) is removed last, so the container is listed until nothing else of
/// it is left and a second `destroy` finds it and finishes.
pub fn destroy(root: &Path, name: &str, volumes: bool, say: Say) -> Result<(), RunError> {
    let dirs = Dirs::new(root, name);
    if !dirs.state().exists() && !dirs.pending().exists() {
        if volumes && dirs.root.exists() {
            std::fs::remove_dir_all(&dirs.root).map_err(io(format!("removing {}", dirs.root.display())))?;
            super::ids::Registry::host().release(root, name)?;
            return Ok(());
        }
        return Err(RunError::NotFound(name.to_string()));
    }
    // A damaged plan does not keep the container: it is said and left out.
    let mut plans = Vec::new();
    for path in [dirs.state(), dirs.pending()] {
        match crate::state::read_json::<Plan>(&path) {
            Ok(p) => plans.extend(p),
            Err(e) => say(&format!("warning: {e}; destroying {name} without it")),
        }
    }
    if let Some(info) = layout::running(&dirs) {
        say(&format!("stopping {name} (PID 1 is {})", info.pid));
        // PID 1 ending from now on is this destroy, no crash.
        let at = serde_json::json!({ "at_ms": layout::now_ms() });
        crate::state::write_private(&dirs.stop_file(), at.to_string().as_bytes())?;
        // With no readable plan, as many layers as one service per layer could need.
        let layers = plans.iter().map(stop_layer_count).max().unwrap_or(16);
        stop_process(&dirs, &info, Duration::from_secs(10), layers)?;
        // Its keeper records the end right after: no record lands in a removed folder.
        wait_exit_record(&dirs, info.pid, Duration::from_secs(2));
    }
    cleanup_plans(root, &dirs, &plans)?;
    crash_point(CrashPoint::DestroyStopped);
    for plan in &plans {
        if plan.network.mode == NetMode::Routed {
            net::clear_unreachable(&plan.network)?;
        }
    }
    {
        let _pool = lock_shared(root, "pool")?;
        let state = StateRoot::new(root);
        let mut pool = state.pool()?;
        pool.ipv4.remove(name);
        pool.ipv6.remove(name);
        state.save_pool(&pool)?;
        super::ids::AddressRegistry::host().release(root, name)?;
    }
    let keep: &[&str] = if volumes { &[] } else { &["volumes", "secrets", ".lock"] };
    // The plans go last: until they do, the container is listed and destroyable.
    let last = ["pending.json", "state.json"];
    let entries = std::fs::read_dir(&dirs.root).map_err(io(format!("reading {}", dirs.root.display())))?;
    for e in entries.flatten() {
        let n = e.file_name();
        if keep.iter().chain(&last).any(|k| n == *k) {
            continue;
        }
        let p: PathBuf = e.path();
        let r = if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            std::fs::remove_dir_all(&p)
        } else {
            std::fs::remove_file(&p)
        };
        r.map_err(io(format!("removing {}", p.display())))?;
    }
    crash_point(CrashPoint::DestroyFiles);
    for n in last {
        let p = dirs.root.join(n);
        match std::fs::remove_file(&p) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(io(format!("removing {}", p.display()))(e))
            }
            _ => {}
        }
    }
    // Its fences stay while it is merely stopped; gone, it has none. Only now: until
    // its plans went, any other command's sync put them back. (Killed before this,
    // the next sync of any container of the root removes them; so a failure here is
    // said, and the destroy still done.)
    if let Err(e) = sync_nft(root, false) {
        say(&format!("warning: removing {name}'s nftables rules: {e}"));
    }
    if volumes {
        let _ = std::fs::remove_dir(&dirs.root);
        // Nothing of the container's range is left on the host: another may have it.
        super::ids::Registry::host().release(root, name)?;
    }
    Ok(())
}

#[cfg(test)]
mod restart_policy_tests {
    use super::*;
    use crate::spec::types::Restart;
    use layout::Desired;

    #[test]
    fn start_wait_restarts_unless_no_and_start_all_brings_back_always_crashes() {
        assert!(restart_after_crash(Restart::OnFailure));
        assert!(restart_after_crash(Restart::Always));
        assert!(!restart_after_crash(Restart::No));
        for r in [Restart::No, Restart::OnFailure, Restart::Always] {
            assert!(start_at_boot(Desired::Running, r, false));
            assert!(start_at_boot(Desired::Running, r, true));
            assert!(!start_at_boot(Desired::Stopped, r, false), "{r:?}");
        }
        assert!(start_at_boot(Desired::Stopped, Restart::Always, true));
        assert!(!start_at_boot(Desired::Stopped, Restart::OnFailure, true));
        assert_eq!(restart_word(Restart::OnFailure), "on-failure");
    }
}
