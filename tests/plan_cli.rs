//! `plan` end to end through the CLI: format equivalence, diffs against recorded
//! state, exit codes, and the smaller commands.

mod support;
use assert_cmd::Command;
use container::plan::Plan;
use container::runtime::layout::{record_applied, StateRoot};
use std::path::Path;

fn container(root: &Path) -> Command {
    support::isolated(root)
}

fn plan_json(root: &Path, file: &Path) -> (i32, String) {
    let out = container(root).args(["plan", "--json"]).arg(file).output().unwrap();
    (out.status.code().unwrap(), String::from_utf8(out.stdout).unwrap())
}

/// Record what `plan --json` proposes as applied, the way apply will.
fn record(root: &Path, json: &str) {
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    let plan: Plan = serde_json::from_value(v["plan"].clone()).unwrap();
    record_applied(&StateRoot::new(root).container(&plan.name), &plan).unwrap();
}

#[test]
fn toml_and_yaml_spellings_give_byte_identical_plans() {
    let root = tempfile::tempdir().unwrap();
    let (c1, toml) = plan_json(root.path(), Path::new("tests/fixtures/same.toml"));
    let (c2, yaml) = plan_json(root.path(), Path::new("tests/fixtures/same.yaml"));
    assert_eq!((c1, c2), (2, 2));
    assert!(toml.contains("/etc/caddy/Caddyfile"), "{toml}");
    assert_eq!(toml, yaml);
}

#[test]
fn no_changes_after_recording_then_a_caddy_edit_reloads_caddy_only() {
    let root = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("web.toml");
    let original =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/same.toml")).unwrap();
    std::fs::write(&spec, &original).unwrap();

    let (code, json) = plan_json(root.path(), &spec);
    assert_eq!(code, 2);
    record(root.path(), &json);

    let out = container(root.path()).arg("plan").arg(&spec).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("No changes"), "{text}");

    std::fs::write(&spec, original.replace("redirects = [{ from = \"/old\"", "redirects = [{ from = \"/older\""))
        .unwrap();
    let out = container(root.path()).arg("plan").arg(&spec).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains("~ file      /etc/caddy/Caddyfile"), "{text}");
    assert!(text.contains("reload caddy"), "{text}");
    assert!(
        text.contains("-    redir /old /new 302")
            || text.contains("-\tredir /old /new 302")
            || text.lines().any(|l| l.trim_start().starts_with("-") && l.contains("redir /old")),
        "{text}"
    );
    assert!(text.lines().any(|l| l.trim_start().starts_with("+") && l.contains("redir /older")), "{text}");
    assert!(text.contains("@@"), "a unified diff hunk is shown:\n{text}");
    assert!(text.contains("Plan: 0 to add, 1 to change, 0 to destroy."), "{text}");
    assert!(!text.contains("restart"), "nothing restarts for a Caddyfile edit:\n{text}");

    let (_, json) = plan_json(root.path(), &spec);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let changes = v["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 1, "{json}");
    assert_eq!(changes[0]["op"], "update");
    assert_eq!(changes[0]["kind"], "file");
    assert_eq!(changes[0]["name"], "/etc/caddy/Caddyfile");
    assert!(
        changes[0]["effects"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!({"action": "reload-service", "target": "caddy"})),
        "{json}"
    );
}

#[test]
fn changing_a_mount_recreates_and_a_process_restarts_only_itself() {
    let root = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("s.toml");
    let a = "name = \"s\"\nbase = \"host\"\n[[mounts]]\ntarget = \"/data\"\n[processes.a]\ncommand = [\"/bin/a\"]\n[processes.b]\ncommand = [\"/bin/b\"]\n";
    std::fs::write(&spec, a).unwrap();
    let (_, json) = plan_json(root.path(), &spec);
    record(root.path(), &json);
    std::fs::write(&spec, a.replace("/bin/b", "/bin/bb").replace("\"/data\"", "\"/data2\"")).unwrap();
    let out = container(root.path()).arg("plan").arg(&spec).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("+ mount     /data2"), "{text}");
    assert!(text.contains("- mount     /data"), "{text}");
    assert!(text.contains("recreate container"), "{text}");
    assert!(text.contains("~ service   b") && text.contains("restart b"), "{text}");
    assert!(!text.contains("service   a"), "{text}");
}

#[test]
fn secrets_never_appear_in_plans() {
    let root = tempfile::tempdir().unwrap();
    let (_, json) = plan_json(root.path(), Path::new("tests/fixtures/same.toml"));
    // No secret values exist at plan time; references are by name only.
    assert!(!json.contains("\"value\""));
}

#[test]
fn explain_describes_fields_from_the_schema() {
    let root = tempfile::tempdir().unwrap();
    let out = container(root.path()).args(["explain", "network"]).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success());
    assert!(text.contains("ipv4") && text.contains("\"auto\""), "{text}");
    let out = container(root.path()).args(["explain", "services.php.memory_limit"]).output().unwrap();
    assert!(String::from_utf8(out.stdout).unwrap().contains("memory_limit"));
    let out = container(root.path()).args(["explain", "netwrk"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8(out.stderr).unwrap().contains("did you mean `network`?"));
}

#[test]
fn completions_and_help_exist_for_every_command() {
    let root = tempfile::tempdir().unwrap();
    for shell in ["bash", "zsh", "fish"] {
        let out = container(root.path()).args(["completions", shell]).output().unwrap();
        // The script asks the binary at each TAB (tests/cli_conventions.rs drives it).
        assert!(out.status.success() && String::from_utf8(out.stdout).unwrap().contains("_CONTAINER_COMPLETE"));
    }
    for cmd in ["validate", "plan", "schema", "explain", "completions"] {
        let out = container(root.path()).args([cmd, "--help"]).output().unwrap();
        assert!(out.status.success(), "{cmd} --help");
    }
}

#[test]
fn unknown_extension_is_an_error_with_exit_1() {
    let root = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("spec.json");
    std::fs::write(&f, "{}").unwrap();
    let out = container(root.path()).arg("validate").arg(&f).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8(out.stderr).unwrap().contains("*.toml, *.yaml or *.yml"));
}

/// The host configuration (`--config` / `CONTAINER_CONFIG`): its pool gives "auto"
/// addresses, its mirror and name servers fill what the spec leaves out, and `plan`
/// says which line each came from.
#[test]
fn the_host_configurations_pool_mirror_and_nameservers_are_used_and_located() {
    let root = tempfile::tempdir().unwrap();
    let cfg = root.path().join("config.toml");
    std::fs::write(
        &cfg,
        "[network]\nipv4_pool = \"100.81.0.0/24\"\nnameservers = [\"100.64.0.53\"]\n\n[debian]\nmirror = \"http://mirror.example/debian\"\n",
    )
    .unwrap();
    let spec = root.path().join("hc.toml");
    std::fs::write(&spec, "name = \"hc\"\nbase = \"debian:trixie\"\n[network]\nipv4 = \"auto\"\n").unwrap();
    let out =
        container(root.path()).env("CONTAINER_CONFIG", &cfg).args(["plan", "--json"]).arg(&spec).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["plan"]["network"]["ipv4"], "100.81.0.2/32", "{:#}", v["plan"]["network"]);
    assert_eq!(v["plan"]["network"]["nameservers"], serde_json::json!(["100.64.0.53"]));
    assert_eq!(v["plan"]["layer"]["mirror"], "http://mirror.example/debian");
    let from: Vec<(String, String)> = v["host_config"]
        .as_array()
        .expect("host_config")
        .iter()
        .map(|e| (e["key"].as_str().unwrap().to_string(), e["from"].as_str().unwrap().to_string()))
        .collect();
    let at = |l: u32| format!("{}:{l}", cfg.display());
    assert_eq!(
        from,
        [
            ("network.ipv4_pool".to_string(), at(2)),
            ("network.nameservers".to_string(), at(3)),
            ("debian.mirror".to_string(), at(6))
        ]
    );
    // The spec's own values win, and then nothing is said about the host's.
    std::fs::write(
        &spec,
        "name = \"hc\"\nbase = \"debian:trixie\"\nmirror = \"http://own.example/debian\"\n[network]\nipv4 = \"100.72.9.9\"\nnameservers = [\"100.64.0.54\"]\n",
    )
    .unwrap();
    let out =
        container(root.path()).env("CONTAINER_CONFIG", &cfg).args(["plan", "--json"]).arg(&spec).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["plan"]["layer"]["mirror"], "http://own.example/debian");
    assert_eq!(v["plan"]["network"]["nameservers"], serde_json::json!(["100.64.0.54"]));
    assert!(v.get("host_config").is_none(), "{v:#}");
}

#[test]
fn a_bad_host_configuration_is_located_and_changes_nothing() {
    let root = tempfile::tempdir().unwrap();
    let cfg = root.path().join("config.toml");
    std::fs::write(&cfg, "[network]\nipv4_pool = \"100.81.0.0/99\"\n[debain]\n").unwrap();
    for cmd in [&["plan"][..], &["apply", "--dry-run"]] {
        let out = container(root.path())
            .env("CONTAINER_CONFIG", &cfg)
            .args(cmd)
            .arg("tests/fixtures/same.toml")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{cmd:?}: {err}");
        assert!(err.contains(&format!("{}:2:", cfg.display())) && err.contains("prefix length is at most 32"), "{err}");
        assert!(err.contains(&format!("{}:3:", cfg.display())) && err.contains("did you mean `debian`"), "{err}");
    }
    let left: Vec<_> = std::fs::read_dir(root.path()).unwrap().flatten().map(|e| e.file_name()).collect();
    assert_eq!(left.len(), 1, "something was written: {left:?}");
    // A file named on purpose must exist; the default one may be missing.
    let out = container(root.path())
        .env("CONTAINER_CONFIG", root.path().join("missing.toml"))
        .args(["plan", "tests/fixtures/same.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read the host configuration"));
}

/// Two routed containers whose shortened host interface names collide (a name longer
/// than 12 characters is cut to 8 and a 16-bit hash) would delete each other's veth:
/// the second is refused, naming the first.
#[test]
fn a_container_whose_veth_name_is_anothers_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let state = StateRoot::new(root.path());
    let mut seen = std::collections::HashMap::new();
    let (first, second) = (0..100_000)
        .find_map(|i| {
            let name = format!("clashing{i}");
            let veth = container::exec::net::host_ifname(&state.host_key(&name));
            seen.insert(veth, name.clone()).map(|old| (old, name))
        })
        .expect("two names with one veth name");
    let spec = |name: &str, a: u8| {
        let f = root.path().join(format!("{name}.toml"));
        std::fs::write(&f, format!("name = \"{name}\"\nbase = \"host\"\n[network]\nipv4 = \"100.72.77.{a}\"\n"))
            .unwrap();
        f
    };
    let (code, json) = plan_json(root.path(), &spec(&first, 1));
    assert_eq!(code, 2, "{json}");
    record(root.path(), &json);
    let out = container(root.path()).arg("plan").arg(spec(&second, 2)).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("host interface name") && err.contains(&format!("container `{first}`")), "{err}");
}
