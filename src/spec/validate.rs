//! Cross-field checks of a spec that deserialized.
//!
//! Invariant: pure; each problem names the path of the offending key so that the
//! caller can point at it. Checks that need the compiled plan (ports, service
//! dependencies) live in `plan::compile`.

use super::node::Path;
use super::types::*;
use crate::diag::Problem;
use crate::vocab::values::relative_inside;
use std::collections::BTreeMap;

pub fn validate(spec: &Spec) -> Vec<Problem> {
    let mut out = Vec::new();
    let err = |out: &mut Vec<Problem>, path: &str, msg: String, help: &str| {
        let mut p = Problem::new(msg).at(Path::parse(path));
        if !help.is_empty() {
            p = p.help(help);
        }
        out.push(p);
    };

    if let Some(h) = &spec.hostname {
        if !valid_hostname(h) {
            err(
                &mut out,
                "hostname",
                format!("invalid hostname `{h}`"),
                "use labels of letters, digits and `-` separated by dots, at most 253 characters",
            );
        }
    }
    for (i, pkg) in spec.packages.iter().enumerate() {
        if !valid_package(pkg) {
            err(
                &mut out,
                &format!("packages[{i}]"),
                format!("invalid package name `{pkg}`"),
                "Debian package names use lowercase letters, digits, `+`, `-` and `.`",
            );
        }
    }

    let mut file_paths: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, f) in spec.files.iter().enumerate() {
        let at = format!("files[{i}]");
        match (&f.content, &f.source) {
            (Some(_), Some(_)) => {
                err(&mut out, &format!("{at}.source"), "give either `content` or `source`, not both".into(), "")
            }
            (None, None) => err(
                &mut out,
                &at,
                format!("file {} has neither `content` nor `source`", f.path),
                "add `content = \"...\"` or `source = \"file-next-to-spec\"`",
            ),
            _ => {}
        }
        if let Some(src) = &f.source {
            if !relative_inside(src) {
                err(
                    &mut out,
                    &format!("{at}.source"),
                    format!("source `{src}` leaves the spec's folder"),
                    "name a file next to the spec, without `..` or a leading `/`",
                );
            }
        }
        if let Some(o) = &f.owner {
            if crate::vocab::values::Owner::parse(o).is_err() {
                err(
                    &mut out,
                    &format!("{at}.owner"),
                    format!("invalid owner `{o}`"),
                    "write \"user\" or \"user:group\"",
                );
            }
        }
        if let Some(prev) = file_paths.insert(&f.path.0, i) {
            err(
                &mut out,
                &format!("{at}.path"),
                format!("file {} is also declared in files[{prev}]", f.path),
                "each path may appear once",
            );
        }
    }

    let mut targets: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, m) in spec.mounts.iter().enumerate() {
        let at = format!("mounts[{i}]");
        if let Some(prev) = targets.insert(&m.target.0, i) {
            err(
                &mut out,
                &format!("{at}.target"),
                format!("mount target {} is also used by mounts[{prev}]", m.target),
                "each mount target may appear once",
            );
        }
        if m.target.0 == "/" {
            err(
                &mut out,
                &format!("{at}.target"),
                "cannot mount over the container's root".into(),
                "mount a folder below `/`",
            );
        }
        if m.kind == MountKind::Bind {
            for (field, given) in [("owner", m.owner.is_some()), ("mode", m.mode.is_some())] {
                if given {
                    err(
                        &mut out,
                        &format!("{at}.{field}"),
                        format!(
                            "`{field}` applies to volume and tmpfs mounts only: a bind mount keeps the host folder's"
                        ),
                        "remove it, or change the host folder itself",
                    );
                }
            }
        }
        match m.kind {
            MountKind::Volume => {
                if let Some(src) = &m.source {
                    if crate::vocab::values::volume_source_problem(src).is_some() {
                        err(
                            &mut out,
                            &format!("{at}.source"),
                            format!("volume source `{src}` escapes the container's volume folder"),
                            "use a relative name such as \"data\" or \"mysql/data\", without `..`, a leading `/` or empty parts",
                        );
                    }
                }
                if m.size.is_some() {
                    err(&mut out, &format!("{at}.size"), "`size` applies to tmpfs mounts only".into(), "");
                }
            }
            MountKind::Bind => match &m.source {
                None => err(
                    &mut out,
                    &at,
                    format!("bind mount {} needs a `source`", m.target),
                    "give the absolute host path, e.g. source = \"/srv/data\"",
                ),
                Some(s) if crate::vocab::values::host_path_problem(s).is_some() => err(
                    &mut out,
                    &format!("{at}.source"),
                    format!("bind source `{s}` must be an absolute host path without `..`"),
                    "",
                ),
                _ => {}
            },
            MountKind::Tmpfs => {
                if m.source.is_some() {
                    err(
                        &mut out,
                        &format!("{at}.source"),
                        "a tmpfs has no `source`".into(),
                        "remove `source`, or use type = \"volume\"",
                    );
                }
            }
        }
    }
    for (i, f) in spec.files.iter().enumerate() {
        if let Some(t) = spec.mounts.iter().find(|m| m.target.0 == f.path.0) {
            err(
                &mut out,
                &format!("files[{i}].path"),
                format!("file {} is also a mount target ({})", f.path, t.target),
                "",
            );
        }
    }

    validate_network(&spec.network, &mut out);

    for (name, p) in &spec.processes {
        let at = format!("processes.{name}");
        if !valid_process_name(name) {
            err(
                &mut out,
                &at,
                format!("invalid process name `{name}`"),
                "use 1-63 lowercase letters, digits, `-` and `_`",
            );
        }
        if p.command.is_empty() || p.command[0].is_empty() {
            err(
                &mut out,
                &format!("{at}.command"),
                "the command is empty".into(),
                "give the program and its arguments, e.g. command = [\"/usr/bin/python3\", \"-m\", \"http.server\"]",
            );
        }
        if p.after.iter().any(|a| a == name) {
            err(&mut out, &format!("{at}.after"), format!("`{name}` cannot wait for itself"), "");
        }
        for k in p.env.keys() {
            if k.is_empty() || k.contains('=') || k.contains('\0') {
                err(&mut out, &format!("{at}.env"), format!("invalid environment variable name `{k}`"), "");
            }
        }
        if let Some(sig) = &p.reload_signal {
            if crate::vocab::values::SignalName::parse(sig).is_err() {
                err(
                    &mut out,
                    &format!("{at}.reload_signal"),
                    format!("unknown signal `{sig}`"),
                    &format!("allowed: {}", SIGNALS.join(", ")),
                );
            }
        }
    }

    for (i, h) in spec.hooks.iter().enumerate() {
        let at = format!("hooks[{i}]");
        match (&h.script, &h.inline) {
            (Some(_), Some(_)) => {
                err(&mut out, &format!("{at}.inline"), "give either `script` or `inline`, not both".into(), "")
            }
            (None, None) => {
                err(&mut out, &at, "a hook needs `script` or `inline`".into(), "e.g. script = \"hooks.rhai\"")
            }
            (Some(s), None) if !relative_inside(s) => err(
                &mut out,
                &format!("{at}.script"),
                format!("script `{s}` leaves the spec's folder"),
                "name a file next to the spec",
            ),
            _ => {}
        }
    }

    if let Some(w) = spec.limits.cpu_weight {
        if !(1..=10000).contains(&w) {
            err(
                &mut out,
                "limits.cpu_weight",
                format!("cpu_weight {w} is out of range"),
                "use 1-10000 (100 is the default)",
            );
        }
    }
    if spec.limits.pids == Some(0) {
        err(&mut out, "limits.pids", "pids must be at least 1".into(), "");
    }
    if let Some(m) = &spec.limits.memory {
        if m.0 < (4 << 20) {
            err(
                &mut out,
                "limits.memory",
                format!("memory limit {m} is too small to start anything"),
                "use at least 4M",
            );
        }
    }
    out
}

fn validate_network(n: &NetworkSpec, out: &mut Vec<Problem>) {
    let mut err = |path: &str, msg: String, help: &str| {
        out.push(Problem::new(msg).at(Path::parse(&format!("network.{path}"))).help(help));
    };
    let has_addr = n.ipv4.is_some() || n.ipv6.is_some();
    match n.mode {
        Some(NetMode::None) | Some(NetMode::Host) if has_addr => {
            let which = if n.ipv4.is_some() { "ipv4" } else { "ipv6" };
            err(
                which,
                format!(
                    "addresses need mode \"routed\", but mode is \"{}\"",
                    if n.mode == Some(NetMode::None) { "none" } else { "host" }
                ),
                "remove the address or set mode = \"routed\"",
            );
        }
        Some(NetMode::Routed) if !has_addr => {
            err("mode", "routed mode needs an address".into(), "add ipv4 = \"auto\" and/or ipv6 = \"auto\"");
        }
        _ => {}
    }
    let routed = n.mode == Some(NetMode::Routed) || (n.mode.is_none() && has_addr);
    if !routed {
        for (key, used) in [
            ("nat", n.nat),
            ("proxy_arp", n.proxy_arp.is_some()),
            ("prefixes", !n.prefixes.is_empty()),
            ("publish", !n.publish.is_empty()),
        ] {
            if used {
                err(key, format!("`{key}` needs a routed network"), "give the container an address (ipv4 = \"auto\")");
            }
        }
    }
    if n.nat && n.ipv4.is_none() {
        err("nat", "NAT masquerades IPv4, but the container has no IPv4 address".into(), "add ipv4 = \"auto\"");
    }
    if let Some(ifname) = &n.proxy_arp {
        if crate::vocab::values::IfaceName::parse(ifname).is_err() {
            err(
                "proxy_arp",
                format!("invalid interface name `{ifname}`"),
                "1-15 characters, no `/`, `:` or spaces, e.g. \"eth0\"",
            );
        }
    }
    let mut host_ports = BTreeMap::new();
    for (i, p) in n.publish.iter().enumerate() {
        let r = &p.0;
        if let Some(prev) = host_ports.insert((r.host_ip, r.host_port, r.proto), i) {
            err(
                &format!("publish[{i}]"),
                format!("host port {}/{} is already published by publish[{prev}]", r.host_port, r.proto),
                "each host port may be published once",
            );
        }
        let v6 = matches!(r.host_ip, Some(std::net::IpAddr::V6(_)));
        if (v6 && n.ipv6.is_none()) || (matches!(r.host_ip, Some(std::net::IpAddr::V4(_))) && n.ipv4.is_none()) {
            err(
                &format!("publish[{i}]"),
                format!(
                    "`{p}` forwards {} traffic, but the container has no such address",
                    if v6 { "IPv6" } else { "IPv4" }
                ),
                "",
            );
        }
    }
    for (i, a) in n.prefixes.iter().enumerate() {
        for b in &n.prefixes[..i] {
            if a.0.overlaps(&b.0) {
                err(&format!("prefixes[{i}]"), format!("prefix {a} overlaps {b}"), "");
            }
        }
    }
}

pub use crate::vocab::values::SIGNALS;

fn valid_hostname(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

pub fn valid_package(p: &str) -> bool {
    (2..=128).contains(&p.len())
        && p.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+-.".contains(&b))
        && p.as_bytes()[0].is_ascii_alphanumeric()
}

fn valid_process_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 63
        && n.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}
