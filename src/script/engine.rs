//! The sandboxed Rhai engine and the functions hook scripts may call.
//!
//! Invariant: a script can compute, but not reach out. There is no module loading, no
//! `eval`, no clock and no randomness (the time package is left out); `print` and
//! `debug` go nowhere. The only way in from outside is `read_file`, which serves files
//! next to the spec from a cache filled while the reader is at hand (see `Shared`).
//! Operations, call depth, expression depth and data sizes are bounded, and a wall
//! clock guard stops a run after `MAX_RUN_TIME` whatever the operation count.

use rhai::packages::{
    BasicArrayPackage, BasicBlobPackage, BasicMapPackage, BasicMathPackage, BitFieldPackage, CorePackage, LogicPackage,
    MoreStringPackage, Package,
};
use rhai::{Array, Dynamic, Engine, EvalAltResult, ImmutableString, Map, Position};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Operations one run of a hook may take (the top level, or one `on_spec`/`on_plan`
/// call). Measured in a debug build: `loop { x += 1; }` reaches it in 0.2 s, doubly
/// recursive calls in 0.25 s; real hooks stay below 100,000.
pub const MAX_OPERATIONS: u64 = 1_000_000;
/// Wall clock bound of one run, the second guard against endless loops.
pub const MAX_RUN_TIME: Duration = Duration::from_secs(1);
/// Nested function calls.
pub const MAX_CALL_LEVELS: usize = 64;
/// Longest string, in bytes.
pub const MAX_STRING: usize = 1 << 20;
/// Most elements of an array, entries of a map.
pub const MAX_ITEMS: usize = 100_000;
/// Most distinct files one spec's hooks may read.
pub const MAX_READS: usize = 64;

pub const BUDGET_MSG: &str = "hook exceeded its operation budget (endless loop?)";
/// `ErrorTerminated` values used internally.
pub const TIME_MARK: &str = "container: time budget exceeded";
pub const READ_MARK: &str = "container: file needed";

/// State shared between the engine's callbacks and the hook runner.
#[derive(Debug, Default)]
pub struct Shared {
    /// Files read so far, by relative path (or why they could not be read).
    pub files: BTreeMap<String, Result<String, String>>,
    /// The reader is at hand: an unknown file stops the run so that the runner can
    /// read it and run again (scripts are deterministic, so a rerun is the same run).
    pub live: bool,
    /// The file a stopped run asked for.
    pub wanted: Option<String>,
    /// When the current run started.
    pub started: Option<Instant>,
}

pub fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    shared.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

type Res<T> = Result<T, Box<EvalAltResult>>;

fn fail<T>(msg: String) -> Res<T> {
    Err(Box::new(EvalAltResult::ErrorRuntime(msg.into(), Position::NONE)))
}

/// The engine every hook of one spec runs in.
pub fn new_engine(shared: Arc<Mutex<Shared>>) -> Engine {
    let mut e = Engine::new_raw();
    // The standard library without BasicTimePackage (clocks break determinism).
    e.register_global_module(CorePackage::new().as_shared_module());
    e.register_global_module(BitFieldPackage::new().as_shared_module());
    e.register_global_module(LogicPackage::new().as_shared_module());
    e.register_global_module(BasicMathPackage::new().as_shared_module());
    e.register_global_module(BasicArrayPackage::new().as_shared_module());
    e.register_global_module(BasicBlobPackage::new().as_shared_module());
    e.register_global_module(BasicMapPackage::new().as_shared_module());
    e.register_global_module(MoreStringPackage::new().as_shared_module());

    e.set_max_operations(MAX_OPERATIONS);
    e.set_max_call_levels(MAX_CALL_LEVELS);
    e.set_max_expr_depths(64, 64);
    e.set_max_string_size(MAX_STRING);
    e.set_max_array_size(MAX_ITEMS);
    e.set_max_map_size(MAX_ITEMS);
    e.set_strict_variables(true);
    e.disable_symbol("eval");
    e.on_print(|_| {});
    e.on_debug(|_, _, _| {});

    let clock = shared.clone();
    e.on_progress(move |ops| {
        if ops % 4096 == 0 {
            let started = lock(&clock).started;
            if started.is_some_and(|t| t.elapsed() > MAX_RUN_TIME) {
                return Some(Dynamic::from(TIME_MARK));
            }
        }
        None
    });

    e.register_fn("read_file", move |path: ImmutableString| -> Res<ImmutableString> { read_file(&shared, &path) });
    e.register_fn("secret", |name: ImmutableString| -> Map {
        let mut m = Map::new();
        m.insert("secret".into(), name.into());
        m
    });
    e.register_fn("add_package", add_package);
    e.register_fn("add_file", |plan: &mut Map, path: ImmutableString, content: Dynamic| {
        add_file(plan, &path, content, "0644", "root:root")
    });
    e.register_fn("add_file", |plan: &mut Map, path: ImmutableString, content: Dynamic, mode: ImmutableString| {
        add_file(plan, &path, content, &mode, "root:root")
    });
    e.register_fn(
        "add_file",
        |plan: &mut Map, path: ImmutableString, content: Dynamic, mode: ImmutableString, owner: ImmutableString| {
            add_file(plan, &path, content, &mode, &owner)
        },
    );
    e.register_fn("add_service", |plan: &mut Map, name: ImmutableString, opts: Map| {
        add_entry(plan, "services", "add_service", &name, opts)
    });
    e.register_fn("add_service", |plan: &mut Map, name: ImmutableString, command: Array| {
        add_entry(plan, "services", "add_service", &name, command_map(command))
    });
    e.register_fn("add_init", |plan: &mut Map, id: ImmutableString, opts: Map| {
        add_entry(plan, "init", "add_init", &id, opts)
    });
    e.register_fn("add_init", |plan: &mut Map, id: ImmutableString, command: Array| {
        add_entry(plan, "init", "add_init", &id, command_map(command))
    });
    e
}

/// Whether a script-given path stays inside the spec's folder.
pub fn inside(path: &str) -> bool {
    !path.is_empty() && !path.starts_with('/') && !path.split('/').any(|c| c == "..")
}

fn read_file(shared: &Mutex<Shared>, path: &str) -> Res<ImmutableString> {
    if !inside(path) {
        return fail(format!(
            "read_file(\"{path}\"): the path is outside the spec's folder; files are read relative to the spec"
        ));
    }
    let mut s = lock(shared);
    match s.files.get(path) {
        Some(Ok(text)) => Ok(text.as_str().into()),
        Some(Err(e)) => fail(format!("read_file(\"{path}\"): {e}")),
        None if s.live => {
            s.wanted = Some(path.to_string());
            Err(Box::new(EvalAltResult::ErrorTerminated(READ_MARK.into(), Position::NONE)))
        }
        None => fail(format!(
            "read_file(\"{path}\"): on_plan can only read files named by a string literal or already read at \
             load (top level or on_spec)"
        )),
    }
}

/// Run `f` on `plan[key]` as a map, created when missing.
fn in_map<R>(plan: &mut Map, key: &str, f: impl FnOnce(&mut Map) -> Res<R>) -> Res<R> {
    let slot = plan.entry(key.into()).or_insert_with(|| Map::new().into());
    if slot.is_unit() {
        *slot = Map::new().into();
    }
    match slot.write_lock::<Map>() {
        Some(mut m) => f(&mut m),
        None => fail(format!("plan.{key} is not a map")),
    }
}

fn add_package(plan: &mut Map, name: ImmutableString) -> Res<()> {
    in_map(plan, "layer", |layer| {
        let slot = layer.entry("packages".into()).or_insert_with(|| Array::new().into());
        let Some(mut pkgs) = slot.write_lock::<Array>() else {
            return fail("plan.layer.packages is not an array".into());
        };
        let known = pkgs.iter().any(|p| p.clone().into_immutable_string().is_ok_and(|s| s == name));
        if !known {
            pkgs.push(name.into());
        }
        Ok(())
    })
}

fn add_file(plan: &mut Map, path: &str, content: Dynamic, mode: &str, owner: &str) -> Res<()> {
    if !(content.is_string() || content.is_array()) {
        return fail(format!(
            "add_file(\"{path}\", ...): content must be a string, or an array of strings and secret(NAME), not {}",
            content.type_name()
        ));
    }
    let mut file = Map::new();
    file.insert("content".into(), content);
    file.insert("mode".into(), mode.into());
    file.insert("owner".into(), owner.into());
    file.insert("origin".into(), "hook".into());
    in_map(plan, "files", |files| {
        files.insert(path.into(), file.into());
        Ok(())
    })
}

fn command_map(command: Array) -> Map {
    let mut m = Map::new();
    m.insert("command".into(), command.into());
    m
}

fn add_entry(plan: &mut Map, key: &str, func: &str, name: &str, mut opts: Map) -> Res<()> {
    match opts.get("command") {
        Some(c) if c.is_array() => {}
        Some(c) => {
            return fail(format!(
                "{func}(\"{name}\", ...): `command` is a list of program and arguments, e.g. \
                 [\"/usr/bin/prog\", \"--flag\"], not {}",
                c.type_name()
            ))
        }
        None => return fail(format!("{func}(\"{name}\", ...): `command` is required (program and arguments)")),
    }
    opts.entry("origin".into()).or_insert_with(|| "hook".into());
    in_map(plan, key, |m| {
        m.insert(name.into(), opts.into());
        Ok(())
    })
}
