//! Shaping schemars' draft-07 output into what editors actually use well.
//!
//! Invariant: every transform here keeps what the schema accepts (draft-07
//! semantics) except that `null` is never accepted: TOML has no null and the
//! parser gives absent fields their defaults. The transforms are generic over the
//! JSON (no field or type is named), so a field added to the spec types gets the
//! same treatment without anyone editing this file.
//!
//! What the editors do with schemars' raw shapes, and the fix applied here:
//! - `{description, allOf: [{$ref}]}` (schemars' way to describe a `$ref` in
//!   draft-07) sends Taplo into endless recursion (tamasfe/taplo#779, #869): unwrapped.
//! - `Option<T>` as `anyOf: [T, {type: null}]` makes both editors offer `null` and
//!   Taplo's lint report the whole table when T fails: the null branch is dropped.
//! - A `$ref` loses the field's own description in Taplo (and the type's text shows
//!   instead): scalar definitions (names, ports, sizes, enums, …) are inlined at each
//!   use with the field's description and default on top; object definitions stay
//!   shared and named.
//! - Doc comments are wrapped at ~90 columns: each paragraph is joined into one line
//!   so editors can re-flow it (paragraph breaks stay).
//! - `format: "ip"` is not a draft-07 format and editors ignore `ipv4`/`ipv6`:
//!   addresses get a `pattern` as well, and a `patternErrorMessage` (shown by
//!   yaml-language-server instead of the regular expression).

use serde_json::{Map, Value};

pub use crate::vocab::patterns::{CIDR, IP, IPV4, IPV6, PUBLISH};

/// Apply every transform to a generated root schema.
pub fn shape(root: &mut Value) {
    walk(root, &mut unwrap_single_all_of);
    walk(root, &mut drop_null);
    inline_scalar_definitions(root);
    walk(root, &mut |m| {
        if let Some(Value::String(d)) = m.get_mut("description") {
            *d = unwrap_lines(d);
        }
    });
    walk(root, &mut address_patterns);
    walk(root, &mut pattern_messages);
}

/// Call `f` on every schema object, parent before children (children see the
/// parent's result).
fn walk(v: &mut Value, f: &mut dyn FnMut(&mut Map<String, Value>)) {
    match v {
        Value::Object(m) => {
            f(m);
            for child in m.values_mut() {
                walk(child, f);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| walk(x, f)),
        _ => {}
    }
}

/// Add `from`'s keywords that `into` does not have (the outer schema's own
/// description and default win over the ones of what it wraps).
fn merge_under(into: &mut Map<String, Value>, from: Map<String, Value>) {
    for (k, v) in from {
        into.entry(k).or_insert(v);
    }
}

/// `allOf: [X]` is X: merge it into the schema that holds it.
fn unwrap_single_all_of(m: &mut Map<String, Value>) {
    while let Some(Value::Array(list)) = m.get("allOf") {
        if list.len() != 1 || !list[0].is_object() {
            break;
        }
        let Some(Value::Array(mut list)) = m.remove("allOf") else { break };
        if let Some(Value::Object(only)) = list.pop() {
            merge_under(m, only);
        }
    }
}

fn is_null_schema(v: &Value) -> bool {
    v.get("type").and_then(Value::as_str) == Some("null") || v.get("const").is_some_and(Value::is_null)
}

/// Drop every way of accepting `null`: null branches of `anyOf`/`oneOf` (a single
/// remaining branch is merged into its holder), `"null"` in a `type` list or an
/// `enum`, and a `null` default.
fn drop_null(m: &mut Map<String, Value>) {
    for key in ["anyOf", "oneOf"] {
        let Some(Value::Array(list)) = m.get_mut(key) else { continue };
        if !list.iter().any(is_null_schema) {
            continue;
        }
        list.retain(|b| !is_null_schema(b));
        if list.len() == 1 && list[0].is_object() {
            if let Some(Value::Array(mut list)) = m.remove(key) {
                if let Some(Value::Object(only)) = list.pop() {
                    merge_under(m, only);
                }
            }
            // The merged branch may itself be a single `allOf` or carry nulls.
            unwrap_single_all_of(m);
            drop_null(m);
        }
    }
    if let Some(Value::Array(types)) = m.get_mut("type") {
        types.retain(|t| t.as_str() != Some("null"));
        if types.len() == 1 {
            let only = types.remove(0);
            m.insert("type".into(), only);
        }
    }
    if let Some(Value::Array(values)) = m.get_mut("enum") {
        values.retain(|v| !v.is_null());
    }
    if m.get("default").is_some_and(Value::is_null) {
        m.remove("default");
    }
}

const DEFS: &str = "#/definitions/";

/// A definition that is not an object with fields, and refers to nothing: a
/// value type (name, port, size, address, enum, …). Inlining it lets editors show
/// the field's own description next to the type's constraints.
fn is_scalar(def: &Value) -> bool {
    fn has_ref(v: &Value) -> bool {
        match v {
            Value::Object(m) => m.contains_key("$ref") || m.values().any(has_ref),
            Value::Array(a) => a.iter().any(has_ref),
            _ => false,
        }
    }
    def.get("type").and_then(Value::as_str) != Some("object")
        && def.get("properties").is_none()
        && def.get("additionalProperties").is_none()
        && !has_ref(def)
}

/// Replace each `$ref` to a scalar definition by the definition itself, under the
/// referring schema's own keywords; repeat until nothing changes (a definition made
/// only of scalars becomes scalar itself), then drop definitions nothing refers to.
fn inline_scalar_definitions(root: &mut Value) {
    for _ in 0..16 {
        let Some(Value::Object(defs)) = root.get("definitions") else { return };
        let scalars: Map<String, Value> =
            defs.iter().filter(|(_, d)| is_scalar(d)).map(|(k, d)| (k.clone(), d.clone())).collect();
        let mut changed = false;
        walk(root, &mut |m| {
            let Some(name) = m.get("$ref").and_then(Value::as_str).and_then(|r| r.strip_prefix(DEFS)) else { return };
            if let Some(Value::Object(def)) = scalars.get(name) {
                let def = def.clone();
                m.remove("$ref");
                merge_under(m, def);
                changed = true;
            }
        });
        if !changed {
            break;
        }
    }
    // Drop what is no longer referred to (from the root or a kept definition).
    loop {
        let text = serde_json::to_string(&*root).unwrap_or_default();
        let Some(Value::Object(defs)) = root.get_mut("definitions") else { return };
        let unused: Vec<String> = defs.keys().filter(|k| !text.contains(&format!("\"{DEFS}{k}\""))).cloned().collect();
        if unused.is_empty() {
            break;
        }
        for k in unused {
            defs.remove(&k);
        }
    }
}

/// Join the lines of each paragraph of a wrapped doc comment. A line that starts a
/// list item, a code block or is indented keeps its break.
pub fn unwrap_lines(text: &str) -> String {
    let keeps_break = |l: &str| {
        let t = l.trim_start();
        l.starts_with("  ")
            || l.starts_with('\t')
            || t.starts_with("- ")
            || t.starts_with("* ")
            || t.starts_with("```")
            || t.split_once(". ").is_some_and(|(n, _)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    };
    text.split("\n\n")
        .map(|para| {
            let mut out = String::new();
            let mut in_code = false;
            for (i, line) in para.lines().enumerate() {
                let fence = line.trim_start().starts_with("```");
                if i == 0 {
                    out.push_str(line);
                } else if in_code || keeps_break(line) {
                    out.push('\n');
                    out.push_str(line);
                } else {
                    out.push(' ');
                    out.push_str(line.trim_start());
                }
                if fence {
                    in_code = !in_code;
                }
            }
            out
        })
        .collect::<Vec<_>>()
        .join("\n\n")
}

/// Strings with an address format get the matching `pattern`, which every editor
/// checks; `format: "ip"` (not a draft-07 format) is replaced by it.
fn address_patterns(m: &mut Map<String, Value>) {
    let pattern = match m.get("format").and_then(Value::as_str) {
        Some("ipv4") => IPV4,
        Some("ipv6") => IPV6,
        Some("ip") => {
            m.remove("format");
            IP
        }
        _ => return,
    };
    m.entry("pattern").or_insert_with(|| pattern.into());
}

/// What a value failing one of the address patterns should have been: editors that
/// know `patternErrorMessage` (yaml-language-server, VS Code) say this instead of
/// printing the regular expression.
fn pattern_messages(m: &mut Map<String, Value>) {
    let message = match m.get("pattern").and_then(Value::as_str) {
        Some(IPV4) => "an IPv4 address such as \"100.64.0.1\"",
        Some(IPV6) => "an IPv6 address such as \"fd63:6f6e:7461:696e::1\"",
        Some(IP) => "an IPv4 or IPv6 address such as \"100.64.0.1\" or \"2001:db8::1\"",
        Some(CIDR) => {
            "a network: address/prefix-length, at most /32 for IPv4 and /128 for IPv6, e.g. \"100.64.0.0/10\""
        }
        Some(PUBLISH) => "a port forward such as \"8080:80\", \"8053:53/udp\" or \"[2001:db8::1]:8080:80\"",
        _ => return,
    };
    m.entry("patternErrorMessage").or_insert_with(|| format!("Expected {message}.").into());
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    fn matches(pattern: &str, s: &str) -> bool {
        let v = jsonschema::draft7::new(&json!({"type": "string", "pattern": pattern})).expect("pattern compiles");
        v.is_valid(&json!(s))
    }

    #[test]
    fn address_patterns_agree_with_the_standard_parsers() {
        let mut samples: Vec<String> = [
            "0.0.0.0",
            "100.64.0.1",
            "255.255.255.255",
            "256.1.1.1",
            "1.2.3",
            "01.2.3.4",
            "1.2.3.4.5",
            "a.b.c.d",
            "::",
            "::1",
            "fd63:6f6e:7461:696e::42",
            "2001:db8::1",
            "1::",
            "1:2:3:4:5:6:7:8",
            "1:2:3:4:5:6:7:8:9",
            "1::2::3",
            "::ffff:192.0.2.1",
            "64:ff9b::192.0.2.33",
            "fe80::1%eth0",
            "12345::",
            "g::1",
            "not-an-ip",
            "",
            "1:2:3:4:5:6:1.2.3.4",
            "::1.2.3.4",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        // Every shape of compressed IPv6: each run of zero groups, at each place.
        for start in 0..8 {
            for len in 0..=(8 - start) {
                let groups: Vec<u16> =
                    (0..8).map(|i| if i >= start && i < start + len { 0 } else { i as u16 + 1 }).collect();
                samples.push(
                    Ipv6Addr::new(
                        groups[0], groups[1], groups[2], groups[3], groups[4], groups[5], groups[6], groups[7],
                    )
                    .to_string(),
                );
            }
        }
        for s in &samples {
            assert_eq!(matches(IPV4, s), s.parse::<Ipv4Addr>().is_ok(), "IPV4 on {s:?}");
            assert_eq!(matches(IPV6, s), s.parse::<Ipv6Addr>().is_ok(), "IPV6 on {s:?}");
            assert_eq!(matches(IP, s), s.parse::<IpAddr>().is_ok(), "IP on {s:?}");
        }
    }

    #[test]
    fn cidr_pattern_bounds_the_prefix_length() {
        for ok in ["100.64.0.0/10", "0.0.0.0/0", "192.0.2.0/32", "64:ff9b::/96", "::/0", "fd63:6f6e:7461:696e::/128"] {
            assert!(matches(CIDR, ok), "{ok}");
        }
        for bad in ["10.0.0.0/99", "100.64.0.0/33", "::/129", "100.64.0.0", "100.64.0.0/", "x/24", "1.2.3.4/024"] {
            assert!(!matches(CIDR, bad), "{bad}");
        }
    }

    #[test]
    fn publish_pattern_takes_addresses_only_where_they_belong() {
        for ok in ["8080:80", "8053:53/udp", "127.0.0.1:8080:80", "[2001:db8::1]:8080:80/tcp"] {
            assert!(matches(PUBLISH, ok), "{ok}");
        }
        for bad in ["8080", "300.1.1.1:80:80", "[1.2.3.4]:80:80", "2001:db8::1:80:80", "8080:80/sctp"] {
            assert!(!matches(PUBLISH, bad), "{bad}");
        }
    }

    #[test]
    fn paragraphs_are_joined_and_lists_kept() {
        assert_eq!(unwrap_lines("one\ntwo\n\nthree\nfour"), "one two\n\nthree four");
        assert_eq!(unwrap_lines("items:\n- a\n- b"), "items:\n- a\n- b");
        assert_eq!(unwrap_lines("code:\n```\nx\ny\n```"), "code:\n```\nx\ny\n```");
    }

    /// Every schema object of the real schema, with its JSON pointer.
    fn objects(v: &Value, at: String, out: &mut Vec<(String, Map<String, Value>)>) {
        match v {
            Value::Object(m) => {
                out.push((at.clone(), m.clone()));
                for (k, c) in m {
                    objects(c, format!("{at}/{k}"), out);
                }
            }
            Value::Array(a) => a.iter().enumerate().for_each(|(i, c)| objects(c, format!("{at}/{i}"), out)),
            _ => {}
        }
    }

    #[test]
    fn the_real_schema_has_only_editor_friendly_shapes() {
        let root = crate::schema::schema_value();
        let mut all = Vec::new();
        objects(&root, String::new(), &mut all);
        for (at, m) in &all {
            if let Some(Value::Array(list)) = m.get("allOf") {
                assert!(list.len() > 1, "{at}: a one-element allOf (Taplo recurses endlessly on it)");
            }
            assert!(!m.values().any(|v| v == "null" || v.is_null()), "{at}: accepts or mentions null: {m:?}");
            if let Some(Value::Array(types)) = m.get("type") {
                assert!(!types.iter().any(|t| t == "null"), "{at}: a null type");
            }
            if let Some(Value::String(d)) = m.get("description") {
                assert!(!d.replace("\n\n", "").contains('\n'), "{at}: a hard line break in {d:?}");
            }
            if let Some(f) = m.get("format").and_then(Value::as_str) {
                assert!(f != "ip", "{at}: format ip is not draft-07");
                if f.starts_with("ipv") {
                    assert!(m.contains_key("pattern"), "{at}: an address without a pattern");
                }
            }
        }
        let defs = root["definitions"].as_object().expect("definitions");
        // Object types stay shared and named by role.
        for name in ["MysqlSettings", "CaddySettings", "NetworkSpec", "Services"] {
            assert!(defs.contains_key(name), "definition `{name}` is missing: {:?}", defs.keys().collect::<Vec<_>>());
        }
        // The field's own description and default sit next to the type's constraints.
        let port = &defs["MysqlSettings"]["properties"]["port"];
        assert_eq!(port["description"], "TCP port the server listens on.");
        assert_eq!(port["default"], 3306);
        assert_eq!(port["maximum"], 65535);
    }

    #[test]
    fn nulls_and_single_all_of_are_gone() {
        let mut v = json!({
            "definitions": {"Port": {"type": "integer", "description": "A port."}, "Obj": {"type": "object", "properties": {}}},
            "properties": {
                "a": {"description": "Field a.", "anyOf": [{"$ref": "#/definitions/Port"}, {"type": "null"}]},
                "b": {"description": "Field b.", "default": 1, "allOf": [{"$ref": "#/definitions/Obj"}]},
                "c": {"type": ["string", "null"], "default": null},
                "d": {"enum": ["x", null]}
            }
        });
        shape(&mut v);
        assert_eq!(v["properties"]["a"], json!({"description": "Field a.", "type": "integer"}));
        assert_eq!(v["properties"]["b"], json!({"description": "Field b.", "default": 1, "$ref": "#/definitions/Obj"}));
        assert_eq!(v["properties"]["c"], json!({"type": "string"}));
        assert_eq!(v["properties"]["d"], json!({"enum": ["x"]}));
        assert!(v["definitions"].get("Port").is_none(), "inlined definitions are dropped");
    }
}
