//! The web site model shared by the caddy and nginx modules.
//!
//! Invariant: one description of a site, two renderers. Modules that bring a site
//! (wordpress, owncloud) build a `WebSite` and push it into whichever server the user
//! picked, so they never write server syntax themselves.

use super::{Ctx, Services};
use crate::vocab::values::{AbsPath, Port, Proto};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// A web site.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct WebSite {
    /// Port to listen on (plain HTTP; TLS terminates in front of the container).
    #[serde(default = "default_port")]
    pub port: Port,
    /// Host names this site answers to; empty answers any host.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// Folder served as static files (and PHP scripts, with `php`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<AbsPath>,
    /// Run `*.php` through PHP-FPM: `true` for the default pool, or a pool name.
    #[serde(default, skip_serializing_if = "PhpUse::is_off")]
    pub php: PhpUse,
    /// Redirects of exact paths.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub redirects: Vec<Redirect>,
    /// Internal rewrites of exact paths.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rewrites: Vec<Rewrite>,
    /// Reverse proxies by path prefix.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub proxies: Vec<Proxy>,
    /// Write an access log to the server's log volume.
    #[serde(default)]
    pub log: bool,
    /// Largest request body accepted, e.g. "64M" (uploads).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_body: Option<crate::vocab::values::Size>,
}

impl WebSite {
    /// A PHP application's site: `root` served with the default PHP pool.
    pub fn php_app(port: Port, hosts: Vec<String>, root: &str, max_body: crate::vocab::values::Size) -> WebSite {
        WebSite {
            port,
            hosts,
            root: Some(AbsPath(root.into())),
            php: PhpUse::Default,
            redirects: Vec::new(),
            rewrites: Vec::new(),
            proxies: Vec::new(),
            log: false,
            max_body: Some(max_body),
        }
    }
}

fn default_port() -> Port {
    Port(80)
}

/// `php = true`, `php = false` or `php = "pool-name"`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum PhpUse {
    #[default]
    Off,
    /// The default pool ("www").
    Default,
    /// A named pool.
    Pool(String),
}

impl PhpUse {
    pub fn is_off(&self) -> bool {
        *self == PhpUse::Off
    }
    /// The pool name, if PHP is on.
    pub fn pool(&self) -> Option<&str> {
        match self {
            PhpUse::Off => None,
            PhpUse::Default => Some(super::php::DEFAULT_POOL),
            PhpUse::Pool(p) => Some(p),
        }
    }
}

impl Serialize for PhpUse {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            PhpUse::Off => s.serialize_bool(false),
            PhpUse::Default => s.serialize_bool(true),
            PhpUse::Pool(p) => s.serialize_str(p),
        }
    }
}

impl<'de> Deserialize<'de> for PhpUse {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = PhpUse;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("true, false or a PHP pool name")
            }
            fn visit_bool<E: serde::de::Error>(self, b: bool) -> Result<PhpUse, E> {
                Ok(if b { PhpUse::Default } else { PhpUse::Off })
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<PhpUse, E> {
                Ok(PhpUse::Pool(s.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for PhpUse {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "PhpUse".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": ["boolean", "string"],
            "description": "true: the default PHP pool; a string: that pool; false: no PHP."
        })
    }
}

/// A redirect of one exact path.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Redirect {
    /// Exact request path, e.g. "/old".
    pub from: String,
    /// Target path or URL.
    pub to: String,
    /// HTTP status: 301 (default), 302, 303, 307 or 308.
    #[serde(default = "default_status")]
    pub status: u16,
}

fn default_status() -> u16 {
    301
}

/// An internal rewrite of one exact path.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Rewrite {
    /// Exact request path, e.g. "/feed".
    pub from: String,
    /// Path served instead, e.g. "/index.php?feed=rss2".
    pub to: String,
}

/// A reverse proxy for a path prefix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Proxy {
    /// Path prefix ending in `/`, e.g. "/api/" ("/" proxies everything).
    pub path: String,
    /// Upstream "host:port", e.g. "127.0.0.1:9000".
    pub to: String,
}

/// Check a site's fields; problems are reported through `err(relative_path, message, help)`.
pub fn check(site: &WebSite, at: &str, err: &mut dyn FnMut(&str, String, &str)) {
    for h in &site.hosts {
        if h.is_empty() || !h.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.*".contains(&b)) {
            err(
                &format!("{at}.hosts"),
                format!("invalid host name `{h}`"),
                "letters, digits, `-`, `.` and a leading `*.` wildcard",
            );
        }
    }
    for (i, r) in site.redirects.iter().enumerate() {
        if !r.from.starts_with('/') {
            err(&format!("{at}.redirects[{i}].from"), format!("redirect source `{}` must start with `/`", r.from), "");
        }
        if ![301, 302, 303, 307, 308].contains(&r.status) {
            err(
                &format!("{at}.redirects[{i}].status"),
                format!("invalid redirect status {}", r.status),
                "allowed: 301, 302, 303, 307, 308",
            );
        }
    }
    for (i, r) in site.rewrites.iter().enumerate() {
        if !r.from.starts_with('/') || !r.to.starts_with('/') {
            err(&format!("{at}.rewrites[{i}]"), "rewrite paths must start with `/`".into(), "");
        }
    }
    for (i, p) in site.proxies.iter().enumerate() {
        if !p.path.starts_with('/') || !p.path.ends_with('/') {
            err(
                &format!("{at}.proxies[{i}].path"),
                format!("proxy path `{}` must start and end with `/`", p.path),
                "e.g. \"/api/\", or \"/\" for everything",
            );
        }
        let ok =
            p.to.rsplit_once(':').is_some_and(|(h, port)| !h.is_empty() && port.parse::<u16>().is_ok_and(|n| n > 0));
        if !ok {
            err(
                &format!("{at}.proxies[{i}].to"),
                format!("invalid upstream `{}`", p.to),
                "write host:port, e.g. \"127.0.0.1:9000\"",
            );
        }
    }
    if site.root.is_none() && site.proxies.iter().all(|p| p.path != "/") && site.redirects.is_empty() {
        err(at, "a site needs a `root`, a proxy for \"/\" or a redirect".into(), "add root = \"/srv/www\"");
    }
}

/// File name (without `.log`) of a site's access log: first host (or "_default") and port.
pub(super) fn site_key(site: &WebSite) -> String {
    // `_` cannot occur in a host name, so these keys never equal a real host's.
    let host = site.hosts.first().map_or("_default", String::as_str).replace('*', "_wildcard");
    format!("{host}-{}", site.port.0)
}

/// What the sites of one server need from it.
pub(super) struct SiteSummary {
    /// The first site's port: the server's readiness check.
    pub first_port: Option<u16>,
    /// Some site runs PHP.
    pub php: bool,
    /// Some site writes an access log.
    pub log: bool,
}

/// Characters that mean the same to Caddy and nginx when written bare in a config
/// token (no quoting, comments, variables or placeholders).
const PLAIN: &[u8] = b"-._~/%+,@!:=&()";

fn plain(s: &str, extra: &[u8]) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || PLAIN.contains(&b) || extra.contains(&b))
}

const PLAIN_HELP: &str = "use letters, digits and - . _ ~ / % + , @ ! : = & ( ); percent-encode anything else";

/// Check the sites of one server (`owner` is "caddy" or "nginx") and claim their ports.
pub(super) fn check_sites(sites: &[WebSite], all: &Services, owner: &str, cx: &mut Ctx) -> SiteSummary {
    if sites.is_empty() {
        cx.error(
            "",
            format!("{owner} has no sites"),
            Some(&format!("add a site: [[services.{owner}.sites]] with root = \"/srv/www\"")),
        );
    }
    for (i, site) in sites.iter().enumerate() {
        let at = format!("sites[{i}]");
        let mut found: Vec<(String, String, String)> = Vec::new();
        check(site, &at, &mut |p, m, h| found.push((p.to_string(), m, h.to_string())));
        for (p, m, h) in found {
            cx.error(&p, m, (!h.is_empty()).then_some(h.as_str()));
        }
        check_tokens(site, &at, cx);
        if let Some(pool) = site.php.pool() {
            if !all.php.as_ref().is_some_and(|p| p.has_pool(pool)) {
                let pools: Vec<&str> = all.php.iter().flat_map(|p| &p.pools).map(|p| p.name.as_str()).collect();
                cx.error(
                    &format!("{at}.php"),
                    format!("there is no PHP pool `{pool}`"),
                    Some(&format!(
                        "pools defined under [services.php]: {}; use `php = true` for the default pool",
                        pools.join(", ")
                    )),
                );
            }
            if site.root.is_none() {
                cx.error(&format!("{at}.php"), "a PHP site needs a `root`", Some("add root = \"/srv/www\""));
            }
        }
        cx.listen(Proto::Tcp, site.port.0, owner, &format!("{at}.port"));
        for (j, other) in sites[..i].iter().enumerate() {
            if other.port != site.port {
                continue;
            }
            let clash = if site.hosts.is_empty() && other.hosts.is_empty() {
                Some("any host".to_string())
            } else {
                site.hosts
                    .iter()
                    .find(|h| other.hosts.iter().any(|o| o.eq_ignore_ascii_case(h)))
                    .map(|h| format!("`{h}`"))
            };
            if let Some(what) = clash {
                let field = if site.hosts.is_empty() { "port" } else { "hosts" };
                cx.error(
                    &format!("{at}.{field}"),
                    format!("sites[{j}] and sites[{i}] both answer {what} on port {}", site.port.0),
                    Some("give one of them another port or other host names"),
                );
            }
        }
    }
    SiteSummary {
        first_port: sites.first().map(|s| s.port.0),
        php: sites.iter().any(|s| !s.php.is_off()),
        log: sites.iter().any(|s| s.log),
    }
}

/// Values written into both servers' configs must read the same to both.
fn check_tokens(site: &WebSite, at: &str, cx: &mut Ctx) {
    let bad = |cx: &mut Ctx, path: String, v: &str| {
        cx.error(&path, format!("`{v}` contains a character that cannot be used here"), Some(PLAIN_HELP));
    };
    if let Some(root) = &site.root {
        if !plain(&root.0, b"") {
            bad(cx, format!("{at}.root"), &root.0);
        }
    }
    let mut froms = BTreeSet::new();
    for (k, r) in site.redirects.iter().enumerate() {
        if r.from.starts_with('/') && !plain(&r.from, b"") {
            bad(cx, format!("{at}.redirects[{k}].from"), &r.from);
        } else if !froms.insert(r.from.as_str()) {
            cx.error(&format!("{at}.redirects[{k}].from"), format!("`{}` is redirected twice", r.from), None);
        }
        if !plain(&r.to, b"?[]") {
            bad(cx, format!("{at}.redirects[{k}].to"), &r.to);
        }
    }
    for (k, r) in site.rewrites.iter().enumerate() {
        for (field, v, extra) in [("from", &r.from, &b""[..]), ("to", &r.to, &b"?"[..])] {
            if v.starts_with('/') && !plain(v, extra) {
                bad(cx, format!("{at}.rewrites[{k}].{field}"), v);
            }
        }
        if froms.contains(r.from.as_str()) {
            cx.error(
                &format!("{at}.rewrites[{k}].from"),
                format!("`{}` is both redirected and rewritten", r.from),
                Some("keep either the redirect or the rewrite"),
            );
        }
    }
    let mut paths = BTreeSet::new();
    for (k, p) in site.proxies.iter().enumerate() {
        if p.path.starts_with('/') && p.path.ends_with('/') && !plain(&p.path, b"") {
            bad(cx, format!("{at}.proxies[{k}].path"), &p.path);
        } else if !paths.insert(p.path.as_str()) {
            cx.error(&format!("{at}.proxies[{k}].path"), format!("`{}` is proxied twice", p.path), None);
        }
        // web::check has judged the shape host:port; here only the host's characters.
        if let Some((host, _)) = p.to.rsplit_once(':') {
            let ok = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
                Some(v6) => !v6.is_empty() && v6.bytes().all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.'),
                None => host.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b)),
            };
            if !ok && !host.is_empty() {
                cx.error(
                    &format!("{at}.proxies[{k}].to"),
                    format!("invalid upstream host `{host}`"),
                    Some("a host name, an IPv4 address or an IPv6 address in brackets, e.g. \"[::1]:9000\""),
                );
            }
        }
    }
}
