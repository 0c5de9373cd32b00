//! The JSON schema of the spec language, and `explain` over it.
//!
//! Invariant: the schema is generated from the same Rust types that parse specs,
//! as draft-07 (what Taplo and yaml-language-server understand), so editor help can
//! never drift from the parser; `shape` then rewrites schemars' output into the
//! shapes those editors handle (tests/editors.rs proves it with the real tools).
//! `schema/container.schema.json` is kept identical to this output by a test.

pub mod shape;

use crate::spec::Spec;
use serde_json::Value;

/// schemars' draft-07 output for the spec types, before `shape`.
fn generated() -> Value {
    let mut settings = schemars::generate::SchemaSettings::draft07();
    // Keeping a `$ref`'s siblings (description, default) instead of wrapping the
    // `$ref` in a one-element `allOf`, which sends Taplo into endless recursion.
    // Draft-07 validators ignore the siblings; editors show them.
    settings.transforms.retain(|t| !t.is::<schemars::transform::RemoveRefSiblings>());
    let schema = settings.into_generator().into_root_schema_for::<Spec>();
    serde_json::to_value(&schema).expect("schemas always serialize")
}

/// The schema as pretty JSON with a trailing newline.
pub fn schema_json() -> String {
    let mut value = generated();
    shape::shape(&mut value);
    close_objects(&mut value);
    let mut s = serde_json::to_string_pretty(&value).expect("schemas always serialize");
    s.push('\n');
    s
}

/// The parser refuses unknown keys, so the schema does too: every object with
/// declared properties gets `additionalProperties: false` (editors then flag typos).
fn close_objects(v: &mut Value) {
    match v {
        Value::Object(m) => {
            if m.contains_key("properties") && !m.contains_key("additionalProperties") {
                m.insert("additionalProperties".into(), Value::Bool(false));
            }
            for child in m.values_mut() {
                close_objects(child);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(close_objects),
        _ => {}
    }
}

/// Where `container schema --install` puts the schema (and where a package should), so
/// that specs anywhere can name it by an absolute path.
pub const INSTALL_PATH: &str = "/usr/share/container/container.schema.json";

/// Write the schema to `path` (mode 0644, missing folders created 0755): written to a
/// temporary file next to it and renamed over, so an editor never reads half a schema.
pub fn install(path: &std::path::Path) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => std::path::Path::new("."),
    };
    // Folders it creates are 0755 whatever the umask: editors run as other users.
    let missing: Vec<&std::path::Path> =
        dir.ancestors().take_while(|d| !d.as_os_str().is_empty() && !d.exists()).collect();
    for d in missing.iter().rev() {
        match std::fs::create_dir(d) {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => return Err(e),
            _ => {}
        }
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755))?;
    }
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("schema");
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let written = (|| {
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o644).open(&tmp)?;
        f.write_all(schema_json().as_bytes())?;
        // The umask may have taken bits away: editors run as other users.
        f.set_permissions(std::fs::Permissions::from_mode(0o644))?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

pub fn schema_value() -> Value {
    serde_json::from_str(&schema_json()).expect("own schema parses")
}

/// Follow `$ref`s into `definitions`.
fn resolve<'a>(root: &'a Value, mut v: &'a Value) -> &'a Value {
    for _ in 0..16 {
        if let Some([only]) = v.get("allOf").and_then(Value::as_array).map(Vec::as_slice) {
            v = only;
            continue;
        }
        let Some(r) = v.get("$ref").and_then(Value::as_str) else { break };
        let Some(name) = r.strip_prefix("#/definitions/") else { break };
        match root.get("definitions").and_then(|d| d.get(name)) {
            Some(next) => v = next,
            None => break,
        }
    }
    // `Option<T>` and friends come out as anyOf [T, null]: look through them.
    if let Some(list) = v.get("anyOf").and_then(Value::as_array) {
        let non_null: Vec<&Value> =
            list.iter().filter(|x| x.get("type").and_then(Value::as_str) != Some("null")).collect();
        if non_null.len() == 1 && v.get("properties").is_none() {
            return resolve(root, non_null[0]);
        }
    }
    v
}

fn type_of(root: &Value, v: &Value) -> String {
    let v = resolve(root, v);
    if let Some(t) = v.get("type") {
        return match t {
            Value::String(s) if s == "array" => {
                let item = v.get("items").map(|i| type_of(root, i)).unwrap_or_default();
                format!("array of {item}")
            }
            Value::String(s) if s == "object" && v.get("properties").is_none() => "table".into(),
            Value::String(s) if s == "object" => "table".into(),
            Value::String(s) => s.clone(),
            Value::Array(a) => {
                a.iter().filter_map(Value::as_str).filter(|s| *s != "null").collect::<Vec<_>>().join(" | ")
            }
            _ => "value".into(),
        };
    }
    if let Some(e) = v.get("enum").and_then(Value::as_array) {
        return e.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(" | ");
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(list) = v.get(key).and_then(Value::as_array) {
            let parts: Vec<String> = list
                .iter()
                .map(|x| {
                    let x = resolve(root, x);
                    if let Some(c) = x.get("const") {
                        c.to_string()
                    } else if let Some(e) = x.get("enum").and_then(Value::as_array) {
                        e.iter().map(|y| y.to_string()).collect::<Vec<_>>().join(" | ")
                    } else if let Some(req) = x.get("required").and_then(Value::as_array) {
                        format!("{{ {} = … }}", req.first().and_then(Value::as_str).unwrap_or("?"))
                    } else {
                        type_of(root, x)
                    }
                })
                .collect();
            return parts.join(" | ");
        }
    }
    "value".into()
}

fn description(root: &Value, v: &Value) -> String {
    v.get("description")
        .or_else(|| resolve(root, v).get("description"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

/// The default of a field, as the spec would write it (`None`: no default given).
fn default_of(root: &Value, v: &Value) -> Option<String> {
    let d = v.get("default").or_else(|| resolve(root, v).get("default"))?;
    match d {
        Value::Null => None,
        Value::Object(m) if m.is_empty() => None,
        Value::Array(a) if a.is_empty() => None,
        other => Some(other.to_string()),
    }
}

/// The values a field allows, each with its own description: an enum's `oneOf` of
/// `const`s (or a plain `enum`, undescribed).
fn values_of(root: &Value, v: &Value) -> Vec<(String, String)> {
    let obj = resolve(root, v);
    if let Some(list) = obj.get("oneOf").and_then(Value::as_array) {
        let consts: Vec<(String, String)> = list
            .iter()
            .filter_map(|c| {
                let c = resolve(root, c);
                Some((
                    c.get("const")?.to_string(),
                    c.get("description").and_then(Value::as_str).unwrap_or("").to_string(),
                ))
            })
            .collect();
        if consts.len() == list.len() {
            return consts;
        }
    }
    obj.get("enum")
        .and_then(Value::as_array)
        .map(|e| e.iter().map(|x| (x.to_string(), String::new())).collect())
        .unwrap_or_default()
}

/// Fill each paragraph to 88 columns, every line starting with `indent` (the
/// schema's descriptions are one line per paragraph, for editors to re-flow).
fn wrap(text: &str, indent: &str) -> String {
    const WIDTH: usize = 88;
    let mut out = Vec::new();
    for line in text.lines() {
        let mut cur = String::from(indent);
        for word in line.split(' ') {
            if cur.len() > indent.len() && cur.len() + 1 + word.len() > WIDTH {
                out.push(std::mem::replace(&mut cur, String::from(indent)));
            }
            if cur.len() > indent.len() {
                cur.push(' ');
            }
            cur.push_str(word);
        }
        out.push(if cur.trim().is_empty() { String::new() } else { cur });
    }
    out.join("\n")
}

/// The node at dotted `path` (`services.caddy.sites`), and the parts walked. Errors
/// say which part is unknown and what exists.
fn walk<'a>(root: &'a Value, path: &str) -> Result<(&'a Value, Vec<String>), String> {
    let mut node = root;
    let mut here = Vec::new();
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let obj = resolve(root, node);
        let obj = match obj.get("items") {
            Some(items) if obj.get("properties").is_none() => resolve(root, items),
            _ => obj,
        };
        let obj = match obj.get("additionalProperties") {
            Some(ap) if obj.get("properties").is_none() && ap.is_object() => resolve(root, ap),
            _ => obj,
        };
        let props = obj.get("properties").and_then(Value::as_object);
        match props.and_then(|p| p.get(part)) {
            Some(next) => node = next,
            None => {
                let names: Vec<&str> = props.map(|p| p.keys().map(String::as_str).collect()).unwrap_or_default();
                let mut msg = format!(
                    "`{}` has no field `{part}`",
                    if here.is_empty() { "spec".to_string() } else { here.join(".") }
                );
                if let Some(s) = crate::diag::did_you_mean(part, names.iter().copied()) {
                    msg.push_str(&format!("; did you mean `{s}`?"));
                } else if !names.is_empty() {
                    msg.push_str(&format!("; fields: {}", names.join(", ")));
                }
                return Err(msg);
            }
        }
        here.push(part.to_string());
    }
    Ok((node, here))
}

/// What holds the fields of `node`: the node, the items of a list, or the values of
/// a table of named entries.
fn holder<'a>(root: &'a Value, node: &'a Value) -> &'a Value {
    let obj = resolve(root, node);
    match obj.get("items") {
        Some(items) => resolve(root, items),
        None => match obj.get("additionalProperties") {
            Some(ap) if obj.get("properties").is_none() && ap.is_object() => resolve(root, ap),
            _ => obj,
        },
    }
}

/// The fields below dotted `path` with the first line of each one's description
/// (what `explain PATH` lists); none for an unknown path or a plain value.
pub fn fields(path: &str) -> Vec<(String, Option<String>)> {
    let root = schema_value();
    let Ok((node, _)) = walk(&root, path) else { return Vec::new() };
    let Some(props) = holder(&root, node).get("properties").and_then(Value::as_object) else { return Vec::new() };
    props
        .iter()
        .map(|(name, p)| {
            let d = description(&root, p);
            (name.clone(), d.lines().next().filter(|l| !l.is_empty()).map(str::to_string))
        })
        .collect()
}

/// `kubectl explain`-style text for a dotted path (`services.caddy.sites`), or the
/// top level for an empty path. Errors say which part is unknown and what exists.
pub fn explain(path: &str) -> Result<String, String> {
    let root = schema_value();
    let (node, here) = walk(&root, path)?;
    let mut out = String::new();
    let title = if here.is_empty() { "spec".to_string() } else { here.join(".") };
    out.push_str(&format!("FIELD: {title} <{}>\n\n", type_of(&root, node)));
    let d = description(&root, node);
    if !d.is_empty() {
        out.push_str(&format!("DESCRIPTION:\n{}\n\n", wrap(&d, "  ")));
    }
    if let Some(def) = default_of(&root, node) {
        out.push_str(&format!("DEFAULT: {def}\n\n"));
    }
    let values = values_of(&root, node);
    if !values.is_empty() {
        out.push_str("VALUES:\n");
        for (v, d) in &values {
            out.push_str(&format!("  {v}\n"));
            if !d.is_empty() {
                out.push_str(&format!("{}\n", wrap(d, "    ")));
            }
        }
        out.push('\n');
    }
    let obj = holder(&root, node);
    if let Some(props) = obj.get("properties").and_then(Value::as_object) {
        let required: Vec<&str> = obj
            .get("required")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        out.push_str("FIELDS:\n");
        for (name, p) in props {
            let req = if required.contains(&name.as_str()) {
                " (required)".to_string()
            } else {
                default_of(&root, p).map(|d| format!(" (default: {d})")).unwrap_or_default()
            };
            out.push_str(&format!("  {name} <{}>{req}\n", type_of(&root, p)));
            let d = description(&root, p);
            if !d.is_empty() {
                out.push_str(&format!("{}\n", wrap(&d, "    ")));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn explain_shows_defaults_and_each_values_own_text() {
        let zone = super::explain("services.bind.zones.type").unwrap();
        assert!(zone.contains("DEFAULT: \"master\"\n"), "{zone}");
        let values = &zone[zone.find("VALUES:\n").expect("a VALUES section")..];
        assert!(values.contains("  \"master\"\n    Primary: the records are written here"), "{zone}");
        assert!(values.contains("  \"slave\"\n    Secondary: the zone is transferred"), "{zone}");
        let procs = super::explain("processes").unwrap();
        assert!(
            procs.contains("  restart <\"no\" | \"on-failure\" | \"always\"> (default: \"on-failure\")\n"),
            "{procs}"
        );
        assert!(procs.contains("  command <array of string> (required)\n"), "{procs}");
        let mysql = super::explain("services.mysql").unwrap();
        assert!(mysql.contains("  port <integer> (default: 3306)\n"), "{mysql}");
    }

    /// schemars names a second type called `Mode` `Mode2`: the definitions (and
    /// what editors show as the type) must be named by role instead.
    #[test]
    fn no_two_spec_types_share_a_schema_name() {
        let raw = super::generated();
        let defs = raw["definitions"].as_object().expect("definitions");
        for name in defs.keys() {
            let base = name.trim_end_matches(|c: char| c.is_ascii_digit());
            assert!(
                base == name || !defs.contains_key(base),
                "definitions `{base}` and `{name}`: two types share a name; rename one by its role \
                 (or `#[schemars(rename = \"…\")]`)"
            );
        }
    }
}
