use super::*;
use crate::diag::SpecErrors;
use crate::plan::compile::{compile, try_test_plan, Env};
use crate::plan::pool::AddressPool;
use crate::spec::{parse_bytes, Format, Loaded};
use std::collections::HashMap;
use std::path::PathBuf;

/// Serves files from a map, refusing paths outside the folder like `exec::beneath::SpecFolder`.
struct MapReader(HashMap<&'static str, &'static str>);

impl SourceReader for MapReader {
    fn read(&self, rel: &str) -> Result<String, String> {
        if rel.starts_with('/') || rel.split('/').any(|c| c == "..") {
            return Err(format!("`{rel}` is outside the spec's folder"));
        }
        self.0.get(rel).map(|s| s.to_string()).ok_or_else(|| format!("cannot read {rel}: not found"))
    }
}

fn loaded(toml: &str) -> Loaded {
    let (spec, tree, text) = parse_bytes("test.toml", toml.as_bytes(), Format::Toml).expect("spec parses");
    Loaded { spec, tree, file: "test.toml".into(), text, dir: PathBuf::new() }
}

fn plan_with_files(toml: &str, files: &[(&'static str, &'static str)]) -> Result<Plan, SpecErrors> {
    let reader = MapReader(files.iter().copied().collect());
    compile(&loaded(toml), &Env { pool: &AddressPool::default(), reader: &reader, host: &Default::default() })
}

fn spec_after_hooks(toml: &str) -> Spec {
    let l = loaded(toml);
    let reader = MapReader(HashMap::new());
    let hooks = Hooks::load(&l.spec, &reader).map_err(|e| format!("{e:?}")).expect("hooks load");
    hooks.on_spec(l.spec.clone()).map_err(|e| format!("{e:?}")).expect("on_spec succeeds")
}

fn errors(r: Result<Plan, SpecErrors>) -> Vec<String> {
    match r {
        Ok(_) => panic!("expected errors"),
        Err(e) => e.brief(),
    }
}

const POOLS: &str = r#"
name = "web"
vars = { sites = ["alpha", "beta"] }
services.php = { pools = [] }

[[hooks]]
inline = '''
fn on_spec(spec) {
    let sites = [];
    for (name, i) in spec.vars.sites {
        spec.services.php.pools.push(#{ name: name, user: "www-data" });
        sites.push(#{ port: 8000 + i, root: "/srv/" + name, php: name });
    }
    spec.services.caddy = #{ sites: sites };
    spec
}
'''
"#;

#[test]
fn on_spec_adds_pools_and_sites() {
    let spec = spec_after_hooks(POOLS);
    let php = spec.services.php.as_ref().expect("php stays");
    let names: Vec<&str> = php.pools.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["alpha", "beta"]);
    let sites = &spec.services.caddy.as_ref().expect("caddy added").sites;
    assert_eq!(sites.len(), 2);
    assert_eq!(sites[1].port.0, 8001);
    assert_eq!(sites[1].root.as_ref().map(|r| r.0.as_str()), Some("/srv/beta"));
    assert_eq!(sites[1].php.pool(), Some("beta"));

    let plan = try_test_plan(POOLS).map_err(|e| e.brief().join("\n")).expect("plans");
    let pool = plan.files["/etc/php/8.4/fpm/pool.d/beta.conf"].content.redacted();
    assert!(pool.contains("[beta]"), "{pool}");
}

#[test]
fn on_plan_adds_resources_marked_as_from_the_hook() {
    let plan = try_test_plan(
        r#"
name = "x"
[[hooks]]
inline = '''
const GREETING = "hello";
fn on_plan(plan) {
    plan.add_package("curl");
    plan.add_package("curl");
    plan.add_file("/etc/motd", "hello\n");
    plan.add_file("/etc/app/key", ["key=", secret("app_key"), "\n"], "0600", "app:app");
    plan.add_service("app", #{ command: ["/usr/bin/app", "--foreground"], ready: #{ tcp: 8080 } });
    plan.add_init("app-setup", ["/usr/bin/app", "--init"]);
    plan
}
'''
"#,
    )
    .map_err(|e| e.brief().join("\n"))
    .expect("plans");
    assert!(plan.layer.packages.contains("curl"));
    let motd = &plan.files["/etc/motd"];
    assert_eq!(
        (motd.content.redacted().as_str(), motd.mode.to_string().as_str(), motd.origin.as_str()),
        ("hello\n", "0644", "hook")
    );
    let key = &plan.files["/etc/app/key"];
    assert_eq!((key.content.redacted().as_str(), key.owner.as_str()), ("key=(secret)\n", "app:app"));
    assert!(plan.secrets.contains("app_key"));
    let svc = &plan.services["app"];
    assert_eq!(svc.command, ["/usr/bin/app", "--foreground"]);
    assert_eq!(svc.origin, "hook");
    assert_eq!(svc.restart, crate::spec::types::Restart::OnFailure);
    assert_eq!(plan.init["app-setup"].origin, "hook");
}

#[test]
fn runtime_errors_point_at_the_script_line_and_the_hook() {
    let e = errors(try_test_plan(
        r#"name = "x"
[[hooks]]
inline = '''
fn on_plan(plan) {
    let names = ["a"];
    let second = names[3];
    plan
}
'''
"#,
    ));
    assert_eq!(e.len(), 2, "{e:?}");
    assert!(e[0].starts_with("test.toml#hooks[0].inline:3:24: Array index 3 out of bounds"), "{e:?}");
    assert!(e[1].starts_with("test.toml:3:10: error in this hook (hooks[0].inline:3:24)"), "{e:?}");
}

#[test]
fn syntax_errors_point_at_the_script_line_and_the_hook() {
    let e = errors(try_test_plan(
        r#"name = "x"
hooks = [{ inline = "fn on_spec(spec) {\n  let x = ;\n  spec\n}" }]
"#,
    ));
    assert_eq!(e.len(), 2, "{e:?}");
    assert!(e[0].starts_with("test.toml#hooks[0].inline:2:11: syntax error"), "{e:?}");
    assert!(e[1].starts_with("test.toml:2:21: error in this hook"), "{e:?}");
}

#[test]
fn endless_loops_stop_with_a_clear_error() {
    let e = errors(try_test_plan(
        r#"name = "x"
[[hooks]]
inline = '''
fn on_plan(plan) {
    loop {}
}
'''
"#,
    ));
    assert!(e[0].contains(BUDGET_MSG), "{e:?}");
    // Rhai moves the position of a stopped run to the call: `on_plan` is named.
    assert!(e[0].starts_with("test.toml#hooks[0].inline:1:4: "), "{e:?}");
    // At the top level too.
    let e = errors(try_test_plan("name = \"x\"\nhooks = [{ inline = \"while true {}\\nfn on_plan(p) { p }\" }]\n"));
    assert!(e[0].contains(BUDGET_MSG), "{e:?}");
}

#[test]
fn a_script_without_hook_functions_is_an_error() {
    let e = errors(try_test_plan("name = \"x\"\nhooks = [{ inline = \"let x = 1;\" }]\n"));
    assert_eq!(e, ["test.toml:2:21: this hook defines neither `fn on_spec(spec)` nor `fn on_plan(plan)`".to_string()]);
}

#[test]
fn unknown_keys_in_a_returned_plan_are_errors() {
    let e = errors(try_test_plan(
        "name = \"x\"\nhooks = [{ inline = \"fn on_plan(plan) {\\n  plan.filez = 1;\\n  plan\\n}\" }]\n",
    ));
    assert!(
        e[0].starts_with("test.toml#hooks[0].inline:1:4: `on_plan` returned an invalid plan: unknown key `filez`"),
        "{e:?}"
    );
    assert!(e.last().is_some_and(|l| l.contains("error in this hook")), "{e:?}");
}

#[test]
fn wrong_values_in_a_returned_spec_name_the_field() {
    let e = errors(try_test_plan(
        r#"name = "x"
hooks = [{ inline = "fn on_spec(s) { s.services.php = #{ pools: [#{ name: 1 }] }; s.packages.push(\"Bad Name\"); s }" }]
"#,
    ));
    assert!(e[0].contains("(at `services.php.pools[0].name`)"), "{e:?}");
    // Validation of the result: the package name is checked like a user's.
    let e = errors(try_test_plan(
        "name = \"x\"\nhooks = [{ inline = \"fn on_spec(s) { s.packages.push(\\\"Bad Name\\\"); s }\" }]\n",
    ));
    assert!(e[0].contains("invalid package name `Bad Name` (at `packages[0]`)"), "{e:?}");
}

#[test]
fn read_file_refuses_paths_outside_the_spec_folder() {
    let e = errors(plan_with_files(
        "name = \"x\"\nhooks = [{ inline = \"fn on_plan(p) { read_file(\\\"../x\\\"); p }\" }]\n",
        &[("x", "secret stuff")],
    ));
    assert!(e[0].contains("outside the spec's folder"), "{e:?}");
}

#[test]
fn script_files_read_files_next_to_the_spec() {
    let script = r#"
// Computed names are read on demand in on_spec (the reader is at hand at load);
// literal names are read ahead for on_plan.
fn on_spec(spec) {
    for site in spec.vars.sites {
        let pkg = read_file("pkgs/" + site);
        pkg.trim();
        spec.packages.push(pkg);
    }
    spec
}
fn on_plan(plan) {
    plan.add_file("/etc/banner", read_file("banner.txt"));
    plan
}
"#;
    let toml = "name = \"x\"\nvars = { sites = [\"a\", \"b\"] }\nhooks = [{ script = \"hooks/h.rhai\" }]\n";
    let files = [("hooks/h.rhai", script), ("pkgs/a", "curl\n"), ("pkgs/b", "jq\n"), ("banner.txt", "hi\n")];
    let plan = plan_with_files(toml, &files).map_err(|e| e.brief().join("\n")).expect("plans");
    assert!(plan.layer.packages.contains("curl") && plan.layer.packages.contains("jq"));
    assert_eq!(plan.files["/etc/banner"].content.redacted(), "hi\n");

    // A computed name in on_plan is not available.
    let script = "fn on_plan(p) { let n = \"ban\" + \"ner.txt\"; p.add_file(\"/b\", read_file(n)); p }";
    let files = [("hooks/h.rhai", script), ("banner.txt", "hi\n")];
    let e = errors(plan_with_files(toml, &files));
    assert!(e[0].starts_with("hooks/h.rhai:1:"), "{e:?}");
    assert!(e[0].contains("on_plan can only read files named by a string literal"), "{e:?}");

    // A missing script is reported at the hook entry.
    let e = errors(plan_with_files(toml, &[]));
    assert_eq!(e, ["test.toml:3:21: cannot read the hook script: cannot read hooks/h.rhai: not found".to_string()]);
}

#[test]
fn hooks_run_in_order_and_are_sandboxed() {
    let plan = try_test_plan(
        r#"name = "x"
[[hooks]]
inline = 'fn on_plan(p) { p.add_package("a"); p }'
[[hooks]]
inline = 'fn on_plan(p) { if "a" in p.layer.packages { p.add_package("b") } p }'
"#,
    )
    .map_err(|e| e.brief().join("\n"))
    .expect("plans");
    assert!(plan.layer.packages.contains("b"));
    // No eval, no clock.
    let e = errors(try_test_plan("name = \"x\"\nhooks = [{ inline = \"fn on_plan(p) { eval(\\\"1\\\"); p }\" }]\n"));
    assert!(e[0].contains("syntax error"), "{e:?}");
    let e = errors(try_test_plan("name = \"x\"\nhooks = [{ inline = \"fn on_plan(p) { timestamp(); p }\" }]\n"));
    assert!(e[0].contains("Function not found: timestamp"), "{e:?}");
}

#[test]
fn a_spec_passes_through_a_hook_unchanged() {
    let toml = r#"
name = "round"
hostname = "round.example.org"
packages = ["curl"]
files = [{ path = "/etc/a", content = "x", mode = "0600", owner = "a:b" }]
mounts = [{ target = "/data" }, { target = "/tmp", type = "tmpfs", size = "64M" }]
network = { ipv4 = "auto", ipv6 = "fd00::5", nameservers = ["9.9.9.9"], publish = ["8080:80/tcp"] }
limits = { memory = "512M", pids = 100 }
vars = { n = 1, f = 1.5, list = ["a", { b = true }] }
services.php = { memory_limit = "256M", pools = [{ name = "a", pm = "static" }] }
services.caddy = { sites = [{ port = 8080, root = "/srv", php = "a", hosts = ["x.org"] }] }
[processes.app]
command = ["/usr/bin/app"]
ready = { tcp = 9000 }
env = { A = "1" }
restart = "always"
[[hooks]]
inline = "fn on_spec(spec) { spec }"
"#;
    assert_eq!(spec_after_hooks(toml), loaded(toml).spec);
}

/// The README's "Hook API" example, as written there: every function it lists works
/// as the table says.
#[test]
fn the_readmes_hook_api_example_plans_as_documented() {
    let readme = include_str!("../../README.md");
    let section = &readme[readme.find("#### Hook API").expect("the README has a Hook API section")..];
    let start = section.find("```rhai\n").expect("an rhai block") + "```rhai\n".len();
    let script = &section[start..start + section[start..].find("```").expect("the block ends")];
    let spec = format!("name = \"x\"\nbase = \"host\"\n[[hooks]]\ninline = '''\n{script}'''\n");
    let plan = plan_with_files(Box::leak(spec.into_boxed_str()), &[("banner.txt", "welcome\n")])
        .map_err(|e| e.brief().join("\n"))
        .expect("the README's example plans");
    assert!(plan.layer.packages.contains("curl"));
    assert_eq!(plan.files["/etc/motd"].content.redacted(), "welcome\n");
    let key = &plan.files["/etc/app/key"];
    assert_eq!(
        (key.content.redacted().as_str(), key.mode.to_string().as_str(), key.owner.as_str()),
        ("key=(secret)\n", "0600", "nobody")
    );
    assert!(plan.secrets.contains("app_key"));
    let app = &plan.services["app"];
    assert_eq!((app.user.as_deref(), app.origin.as_str()), (Some("nobody"), "hook"));
    assert!(app.uses.contains("/etc/app/key"));
    assert_eq!(plan.init["app-setup"].creates.as_ref().map(|p| p.0.as_str()), Some("/srv/app"));
}
