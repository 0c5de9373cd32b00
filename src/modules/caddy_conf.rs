//! Caddyfile rendering (Caddy 2.6 syntax).
//!
//! Invariant: every value written here passed `check_sites`, so it is a bare Caddyfile
//! token (no spaces, quotes, braces or placeholders). Caddy orders directives itself
//! (redir, rewrite, reverse_proxy, php_fastcgi, file_server): the order written here
//! is for the reader.

use super::{CaddySettings, ADMIN_PORT, HOME, LOG_DIR};
use crate::modules::php::Php;
use crate::modules::web::site_key;
use crate::modules::web::WebSite;
use std::fmt::Write;

pub fn caddyfile(s: &CaddySettings, php: Php) -> String {
    let mut out = String::from("# Rendered by container (caddy module).\n{\n");
    if s.debug {
        out.push_str("\tdebug\n");
    }
    // No ACME: the container has no internet, TLS terminates in front of it.
    out.push_str("\tauto_https off\n");
    // An address, not "localhost": Go resolves names itself and asks DNS when
    // /etc/hosts does not list it, which fails in a container without a resolver.
    let _ = writeln!(out, "\tadmin 127.0.0.1:{ADMIN_PORT}");
    // No `persist_config off`: Caddy 2.6 (bookworm and trixie) does not know it. Its autosave
    // goes to $XDG_CONFIG_HOME/caddy on the tmpfs HOME, so it never outlives a restart.
    // The one-line form: every Caddy 2 release parses it (the `root` block form is newer).
    let _ = writeln!(out, "\tstorage file_system {HOME}/.local/share/caddy");
    out.push_str("}\n");
    for (i, site) in s.sites.iter().enumerate() {
        let _ = write!(out, "\n# sites[{i}]\n");
        site_block(&mut out, site, php);
    }
    out
}

fn site_block(out: &mut String, site: &WebSite, php: Php) {
    let port = site.port.0;
    let addrs: Vec<String> = if site.hosts.is_empty() {
        vec![format!("http://:{port}")]
    } else {
        site.hosts.iter().map(|h| format!("http://{h}:{port}")).collect()
    };
    let _ = writeln!(out, "{} {{", addrs.join(", "));
    if let Some(root) = &site.root {
        let _ = writeln!(out, "\troot * {}", root.0);
    }
    if let Some(max) = &site.max_body {
        let _ = writeln!(out, "\trequest_body {{\n\t\tmax_size {}\n\t}}", max.0);
    }
    for r in &site.redirects {
        let _ = writeln!(out, "\tredir {} {} {}", r.from, r.to, r.status);
    }
    for r in &site.rewrites {
        let _ = writeln!(out, "\trewrite {} {}", r.from, r.to);
    }
    for p in &site.proxies {
        if p.path == "/" {
            let _ = writeln!(out, "\treverse_proxy {}", p.to);
        } else {
            let _ = writeln!(out, "\treverse_proxy {}* {}", p.path, p.to);
        }
    }
    if let Some(pool) = site.php.pool() {
        let _ = writeln!(out, "\tphp_fastcgi unix/{}", php.socket(pool));
    }
    let catch_all = site.proxies.iter().any(|p| p.path == "/");
    if site.root.is_some() {
        out.push_str("\tfile_server\n");
    } else if !catch_all {
        // Without a root, anything not redirected or proxied is not found (Caddy would
        // answer an empty 200).
        let paths: Vec<String> = site.proxies.iter().map(|p| format!("{}*", p.path)).collect();
        if paths.is_empty() {
            out.push_str("\trespond 404\n");
        } else {
            let _ = writeln!(out, "\t@unhandled not path {}\n\trespond @unhandled 404", paths.join(" "));
        }
    }
    if site.log {
        let _ = writeln!(out, "\tlog {{\n\t\toutput file {LOG_DIR}/{}.log\n\t}}", site_key(site));
    }
    out.push_str("}\n");
}
