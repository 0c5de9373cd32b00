//! The host configuration: what this host gives every spec by default, read from
//! `/etc/container/config.toml` (or `--config FILE`, `CONTAINER_CONFIG`):
//!
//! ```toml
//! [network]
//! ipv4_pool = "100.72.0.0/16"          # where "auto" IPv4 addresses come from
//! ipv6_pool = "fd63:6f6e:7461:696e::/64"
//! nameservers = ["100.64.0.53"]        # for specs that name none
//!
//! [debian]
//! mirror = "http://deb.debian.org/debian"
//! security_mirror = "http://deb.debian.org/debian-security"
//! ```
//!
//! Invariant: like a spec, it loads completely valid or yields every problem, each
//! located in the file (unknown keys included); no I/O of its own (the caller reads
//! the file). Every key is optional: an absent one keeps the compiled-in default, and
//! a spec's own value always wins over the host's.

use super::node::{self, Path};
use super::values::{Cidr, Mirror};
use crate::diag::{Problem, SpecErrors};
use serde::Deserialize;
use std::net::IpAddr;

/// Where the host configuration is looked for when none is named.
pub const DEFAULT_PATH: &str = "/etc/container/config.toml";

/// Largest configuration file accepted.
pub const MAX_BYTES: u64 = 1 << 20;

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostConfig {
    #[serde(default)]
    pub network: HostNetwork,
    #[serde(default)]
    pub debian: HostDebian,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostNetwork {
    /// IPv4 network "auto" addresses are taken from (default 100.72.0.0/16).
    #[serde(default)]
    pub ipv4_pool: Option<Cidr>,
    /// IPv6 network "auto" addresses are taken from (default fd63:6f6e:7461:696e::/64).
    #[serde(default)]
    pub ipv6_pool: Option<Cidr>,
    /// Name servers for a container whose spec names none.
    #[serde(default)]
    pub nameservers: Vec<IpAddr>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostDebian {
    /// Mirror of `<suite>` and `<suite>-updates` for a spec that names none.
    #[serde(default)]
    pub mirror: Option<Mirror>,
    /// Mirror of `<suite>-security` for a spec that names none.
    #[serde(default)]
    pub security_mirror: Option<Mirror>,
}

/// A loaded host configuration and the file it came from (none: the defaults).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoadedHost {
    pub config: HostConfig,
    pub file: Option<String>,
    /// Line of each key given, by dotted path ("network.ipv4_pool"), for `plan` to say
    /// where a value came from.
    pub lines: Vec<(String, usize)>,
}

impl LoadedHost {
    /// "FILE:LINE" of `key` ("debian.mirror"), if the file gave it.
    pub fn origin(&self, key: &str) -> Option<String> {
        let file = self.file.as_ref()?;
        self.lines.iter().find(|(k, _)| k == key).map(|(_, l)| format!("{file}:{l}"))
    }
}

/// Parse and check the text of a host configuration file `file`.
pub fn parse(file: &str, bytes: &[u8]) -> Result<LoadedHost, SpecErrors> {
    let text = String::from_utf8_lossy(bytes).into_owned();
    let mut errs = SpecErrors::new(file, &text);
    if std::str::from_utf8(bytes).is_err() {
        errs.push(Problem::new("the host configuration is not UTF-8 text").span(0..0));
        return Err(errs);
    }
    let tree = match node::parse_toml(&text) {
        Ok(t) => t,
        Err(syntax) => {
            for s in syntax {
                errs.push(Problem::new(s.message).span(s.span).label("here"));
            }
            return Err(errs);
        }
    };
    let (config, problems, _) = super::deserialize::<HostConfig>(&tree);
    let clean = problems.is_empty();
    for p in problems {
        errs.push(p);
    }
    let Some(config) = config.filter(|_| clean) else { return Err(errs) };
    for p in validate(&config) {
        errs.push(super::locate(&tree, p));
    }
    if !errs.is_empty() {
        return Err(errs);
    }
    let line_of = |at: usize| text[..at.min(text.len())].matches('\n').count() + 1;
    let mut lines = Vec::new();
    for key in
        ["network.ipv4_pool", "network.ipv6_pool", "network.nameservers", "debian.mirror", "debian.security_mirror"]
    {
        let path = Path::parse(key);
        if tree.get(&path.0).is_some() {
            lines.push((key.to_string(), line_of(tree.span_of(&path.0).start)));
        }
    }
    Ok(LoadedHost { config, file: Some(file.to_string()), lines })
}

/// Pools must be unicast networks of the right family with room for containers.
fn validate(c: &HostConfig) -> Vec<Problem> {
    let mut out = Vec::new();
    if let Some(p) = &c.network.ipv4_pool {
        if !p.0.addr.is_ipv4() || !(8..=29).contains(&p.0.len) {
            out.push(
                Problem::new(format!("ipv4_pool `{p}` must be an IPv4 network from /8 to /29"))
                    .at(Path::parse("network.ipv4_pool"))
                    .help("e.g. \"100.72.0.0/16\" (inside the shared address space 100.64.0.0/10)"),
            );
        }
    }
    if let Some(p) = &c.network.ipv6_pool {
        if !p.0.addr.is_ipv6() || !(16..=120).contains(&p.0.len) {
            out.push(
                Problem::new(format!("ipv6_pool `{p}` must be an IPv6 network from /16 to /120"))
                    .at(Path::parse("network.ipv6_pool"))
                    .help("e.g. a /64 of your own ULA: \"fd12:3456:789a:1::/64\""),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_file_loads_with_the_line_of_each_key() {
        let text = "[network]\nipv4_pool = \"100.80.0.0/16\"\nnameservers = [\"100.64.0.53\"]\n\n[debian]\nmirror = \"http://mirror.example/debian\"\n";
        let l = parse("config.toml", text.as_bytes()).unwrap();
        assert_eq!(l.config.network.ipv4_pool.as_ref().unwrap().to_string(), "100.80.0.0/16");
        assert_eq!(l.config.network.nameservers, vec!["100.64.0.53".parse::<IpAddr>().unwrap()]);
        assert_eq!(l.config.debian.mirror.as_ref().unwrap().to_string(), "http://mirror.example/debian");
        assert_eq!(l.origin("network.ipv4_pool").as_deref(), Some("config.toml:2"));
        assert_eq!(l.origin("debian.mirror").as_deref(), Some("config.toml:6"));
        assert_eq!(l.origin("debian.security_mirror"), None);
    }

    #[test]
    fn every_problem_is_located() {
        let text = "[network]\nipv4_pool = \"fd00::/64\"\nipv6_pool = \"10.0.0.0/99\"\n[debian]\nmirorr = \"x\"\n";
        let e = parse("config.toml", text.as_bytes()).unwrap_err();
        let shown = e.brief().join("\n");
        assert!(shown.contains("config.toml:3") && shown.contains("prefix length is at most 32"), "{shown}");
        assert!(shown.contains("config.toml:5") && shown.contains("mirorr"), "{shown}");
        // A value of the wrong family is refused once it parses.
        let e = parse("c.toml", b"[network]\nipv4_pool = \"fd00::/64\"\n").unwrap_err();
        let shown = e.brief().join("\n");
        assert!(shown.contains("c.toml:2") && shown.contains("must be an IPv4 network"), "{shown}");
    }
}
