//! Every shipped spec (specs/ and examples/) validates, plans deterministically and
//! matches its reviewed snapshot; the schema file is current and every spec passes
//! an independent JSON-schema validator.

mod support;
use std::path::{Path, PathBuf};

fn shipped() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut out = Vec::new();
    for dir in ["specs", "examples"] {
        let Ok(rd) = std::fs::read_dir(root.join(dir)) else { continue };
        for e in rd {
            let p = e.unwrap().path();
            if matches!(p.extension().and_then(|x| x.to_str()), Some("toml" | "yaml" | "yml")) {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

fn run(args: &[&str], file: &Path) -> (i32, String, String) {
    let root = tempfile::tempdir().unwrap();
    // An empty cache: every Debian spec's plan says its layers would be built.
    let out = support::isolated(root.path()).args(args).arg(file).output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
}

fn rel(p: &Path) -> PathBuf {
    p.strip_prefix(env!("CARGO_MANIFEST_DIR")).unwrap().to_path_buf()
}

#[test]
fn there_is_a_spec_per_module_and_the_promised_examples() {
    let names: Vec<String> = shipped().iter().map(|p| rel(p).display().to_string()).collect();
    for m in
        ["bind", "caddy", "mysql", "nat64", "owncloud", "php", "samba", "wordpress", "nginx", "sshd", "rsync", "tinc"]
    {
        assert!(
            names.iter().any(|n| n.starts_with(&format!("specs/{m}."))),
            "specs/{m}.toml or .yaml is missing; have {names:?}"
        );
    }
    assert!(names.iter().any(|n| n.starts_with("specs/") && n.ends_with(".yaml")), "no YAML spec");
    assert!(names.iter().any(|n| n.starts_with("examples/") && n.ends_with(".yaml")), "no YAML example");
}

#[test]
fn shipped_specs_validate_and_plan_identically_twice() {
    for f in shipped() {
        let r = rel(&f);
        let (code, _, err) = run(&["validate"], &r);
        assert_eq!(code, 0, "{} does not validate:\n{err}", r.display());
        let (code, json1, err) = run(&["plan", "--json"], &r);
        assert_eq!(code, 2, "{}: plan should report changes on an empty root:\n{err}", r.display());
        let (_, json2, _) = run(&["plan", "--json"], &r);
        assert_eq!(json1, json2, "{}: plan --json is not deterministic", r.display());
        let first = std::fs::read_to_string(&f).unwrap();
        let directive = if r.extension().unwrap() == "toml" {
            "#:schema ../schema/container.schema.json"
        } else {
            "# yaml-language-server: $schema=../schema/container.schema.json"
        };
        assert_eq!(
            first.lines().next(),
            Some(directive),
            "{}: first line must be the editor schema directive",
            r.display()
        );
    }
}

#[test]
fn shipped_plans_match_snapshots() {
    for f in shipped() {
        let r = rel(&f);
        let name = r.display().to_string().replace(['/', '.'], "_");
        let (_, human, _) = run(&["plan"], &r);
        insta::assert_snapshot!(format!("{name}_plan"), human);
        let (_, json, _) = run(&["plan", "--json"], &r);
        insta::assert_snapshot!(format!("{name}_json"), json);
    }
}

#[test]
fn schema_file_is_identical_to_container_schema() {
    let out = assert_cmd::Command::cargo_bin("container").unwrap().arg("schema").output().unwrap();
    assert!(out.status.success());
    let file = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("schema/container.schema.json")).unwrap();
    assert!(
        out.stdout == file,
        "schema/container.schema.json is stale: run `cargo run -- schema > schema/container.schema.json`"
    );
}

/// Parse a spec with parsers other than ours (the `toml` crate's own serde
/// deserializer and serde-saphyr), so that the schema check is independent.
fn independent_json(p: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(p).unwrap();
    match p.extension().and_then(|x| x.to_str()) {
        Some("toml") => toml::from_str(&text).unwrap(),
        _ => serde_saphyr::from_str(&text).unwrap(),
    }
}

#[test]
fn shipped_specs_pass_an_independent_schema_validator() {
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("schema/container.schema.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(schema["$schema"], "http://json-schema.org/draft-07/schema#");
    let validator = jsonschema::draft7::new(&schema).expect("the schema is valid draft-07");
    for f in shipped() {
        let doc = independent_json(&f);
        let errors: Vec<String> =
            validator.iter_errors(&doc).map(|e| format!("{} at {}", e, e.instance_path())).collect();
        assert!(errors.is_empty(), "{} fails the schema:\n{}", rel(&f).display(), errors.join("\n"));
    }
}

#[test]
fn the_schema_rejects_what_the_parser_rejects() {
    let schema: serde_json::Value = serde_json::from_str(&container::schema::schema_json()).unwrap();
    let validator = jsonschema::draft7::new(&schema).unwrap();
    for bad in [
        serde_json::json!({"base": "host"}),
        serde_json::json!({"name": "Web"}),
        serde_json::json!({"name": "web", "hostnme": "x"}),
        serde_json::json!({"name": "web", "network": {"ipv4": "auto", "publish": ["80"]}}),
        serde_json::json!({"name": "web", "mounts": [{"target": "/x", "type": "volum"}]}),
    ] {
        assert!(!validator.is_valid(&bad), "schema accepted {bad}");
    }
}
