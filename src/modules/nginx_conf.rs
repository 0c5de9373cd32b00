//! nginx.conf and server block rendering (nginx 1.22 syntax).
//!
//! Invariant: every value written here passed `check_sites`, so it is a bare nginx
//! token (no spaces, quotes, braces, `;`, `#` or `$`). Location precedence mirrors
//! Caddy's directive order: exact redirects first, then proxy prefixes (`^~`, so the
//! PHP regex cannot take a proxied path), then PHP, then static files.

use super::{NginxSettings, RUN_DIR, SITES_CONF, TEMP_DIR};
use crate::modules::php::Php;
use crate::modules::web::site_key;
use crate::modules::web::WebSite;
use crate::modules::Services;
use std::fmt::Write;

pub fn nginx_conf(s: &NginxSettings) -> String {
    let workers = s.worker_processes.map_or_else(|| "auto".to_string(), |n| n.to_string());
    let mut out = String::from("# Rendered by container (nginx module).\n");
    out.push_str("daemon off;\nuser www-data;\n");
    let _ = writeln!(out, "worker_processes {workers};");
    let _ = writeln!(out, "pid {RUN_DIR}/nginx.pid;");
    out.push_str("error_log stderr;\n\n");
    let _ = writeln!(out, "events {{\n\tworker_connections {};\n}}\n", s.worker_connections);
    out.push_str("http {\n");
    out.push_str("\tinclude /etc/nginx/mime.types;\n\tdefault_type application/octet-stream;\n");
    out.push_str("\tsendfile on;\n\ttcp_nopush on;\n\ttypes_hash_max_size 2048;\n\tserver_tokens off;\n");
    // Relative Location headers, like Caddy: the container's own port may be
    // published under another one.
    out.push_str("\tabsolute_redirect off;\n\taccess_log off;\n");
    for (directive, dir) in [
        ("client_body_temp_path", "body"),
        ("proxy_temp_path", "proxy"),
        ("fastcgi_temp_path", "fastcgi"),
        ("uwsgi_temp_path", "uwsgi"),
        ("scgi_temp_path", "scgi"),
    ] {
        let _ = writeln!(out, "\t{directive} {TEMP_DIR}/{dir};");
    }
    let _ = writeln!(out, "\tinclude {SITES_CONF};\n}}");
    out
}

pub fn sites_conf(s: &NginxSettings, all: &Services, php: Php) -> String {
    let mut out = String::from("# Rendered by container (nginx module).\n");
    for (i, site) in s.sites.iter().enumerate() {
        let _ = write!(out, "\n# sites[{i}]\n");
        server_block(&mut out, site, all, php);
    }
    out
}

/// `s` as an anchored regex matching exactly that path.
fn exact_regex(s: &str) -> String {
    let mut out = String::from("^");
    for c in s.chars() {
        if "\\.+*?()[]{}|^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('$');
    out
}

fn server_block(out: &mut String, site: &WebSite, all: &Services, php: Php) {
    let port = site.port.0;
    let default = if site.hosts.is_empty() { " default_server" } else { "" };
    let names = if site.hosts.is_empty() { "_".to_string() } else { site.hosts.join(" ") };
    let _ = writeln!(out, "server {{\n\tlisten {port}{default};\n\tlisten [::]:{port}{default};");
    let _ = writeln!(out, "\tserver_name {names};");
    let pool = site.php.pool();
    if let Some(root) = &site.root {
        let index = if pool.is_some() { "index.php index.html index.htm" } else { "index.html index.htm" };
        let _ = writeln!(out, "\troot {};\n\tindex {index};", root.0);
    }
    // Without max_body a PHP site accepts what PHP accepts (nginx's default is 1M).
    let max_body =
        site.max_body.as_ref().map(|m| m.0).or_else(|| pool.and(all.php.as_ref()).map(|p| p.post_max_size.0));
    if let Some(max) = max_body {
        let _ = writeln!(out, "\tclient_max_body_size {max};");
    }
    if site.log {
        let _ = writeln!(out, "\taccess_log {}/{}.log;", super::LOG_DIR, site_key(site));
    }
    for r in &site.rewrites {
        let _ = writeln!(out, "\trewrite {} {} last;", exact_regex(&r.from), r.to);
    }
    for r in &site.redirects {
        let _ = writeln!(out, "\tlocation = {} {{\n\t\treturn {} {};\n\t}}", r.from, r.status, r.to);
    }
    for p in &site.proxies {
        let _ = writeln!(
            out,
            "\tlocation ^~ {} {{\n\t\tproxy_pass http://{};\n\t\tproxy_set_header Host $host;\n\
             \t\tproxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n\
             \t\tproxy_set_header X-Forwarded-Proto $scheme;\n\t}}",
            p.path, p.to
        );
    }
    if !site.proxies.iter().any(|p| p.path == "/") {
        let fallback = match (&site.root, pool) {
            (Some(_), Some(_)) => "try_files $uri $uri/ /index.php?$args",
            (Some(_), None) => "try_files $uri $uri/ =404",
            // Nothing to serve outside the redirects and proxies.
            (None, _) => "return 404",
        };
        let _ = writeln!(out, "\tlocation / {{\n\t\t{fallback};\n\t}}");
    }
    if let Some(pool) = pool {
        let _ = writeln!(
            out,
            "\tlocation ~ \\.php$ {{\n\t\tinclude /etc/nginx/snippets/fastcgi-php.conf;\n\
             \t\tfastcgi_pass unix:{};\n\t}}",
            php.socket(pool)
        );
    }
    out.push_str("}\n");
}
