//! caddy: Caddy 2.6 (Debian's `caddy`, 2.6.2 on bookworm and trixie) serving `web::WebSite`s.
//!
//! Renders one /etc/caddy/Caddyfile: plain HTTP only (no ACME, the container has no
//! internet; TLS terminates in front of it), the admin API on localhost for
//! `caddy reload`, the autosaved config on a tmpfs. Sites are checked by `web::check_sites`,
//! shared with nginx, so both servers accept exactly the same sites.

#[path = "caddy_conf.rs"]
mod conf;

use super::web::{check_sites, WebSite};
use super::{Ctx, Services};
use crate::vocab::plan::ServiceRes;
use crate::vocab::values::volume_name;
use crate::vocab::values::Mode;
use crate::vocab::values::Proto;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub const CADDYFILE: &str = "/etc/caddy/Caddyfile";
/// Debian's home of the caddy user; Caddy keeps its data (locks, instance id) here.
pub const HOME: &str = "/var/lib/caddy";
pub const LOG_DIR: &str = "/var/log/caddy";
/// Admin API port on localhost; `caddy reload` posts the new config there.
pub const ADMIN_PORT: u16 = 2019;

/// Settings of the caddy module.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct CaddySettings {
    /// Web sites served.
    pub sites: Vec<WebSite>,
    /// Log every request and internal event in detail (Caddy's `debug` option).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub debug: bool,
}

pub fn compile(s: &CaddySettings, all: &Services, cx: &mut Ctx) {
    let summary = check_sites(&s.sites, all, "caddy", cx);
    // The admin API answers on the container's loopback only (Caddy's default).
    cx.listen_loopback(Proto::Tcp, ADMIN_PORT, "caddy", "");
    cx.package("caddy");
    cx.file(CADDYFILE, conf::caddyfile(s, super::php::Php::of(cx.suite())));

    let run = ["caddy", "run", "--config", CADDYFILE, "--adapter", "caddyfile"];
    let reload = ["caddy", "reload", "--config", CADDYFILE, "--adapter", "caddyfile"];
    // Runs as root: Debian's unit gives the caddy user CAP_NET_BIND_SERVICE for ports
    // below 1024, which our supervisor does not grant; Caddy serves only plain HTTP
    // from read-only roots here, and PHP runs in php-fpm as www-data.
    let mut svc = ServiceRes::new(&run)
        .reload_command(&reload)
        .uses(CADDYFILE)
        .env("HOME", HOME)
        .env("XDG_DATA_HOME", &format!("{HOME}/.local/share"))
        .env("XDG_CONFIG_HOME", &format!("{HOME}/.config"));
    if let Some(port) = summary.first_port {
        svc = svc.ready_tcp(port);
    }
    if summary.php {
        svc = svc.after("php-fpm");
    }
    cx.service("caddy", svc);
    // Nothing here needs to outlive a restart: no certificates (auto_https off) and
    // nothing worth keeping in the autosaved config.
    cx.tmpfs(HOME, Some(16 << 20), Some("caddy:caddy"), Some(Mode(0o750)));
    if summary.log {
        cx.volume(LOG_DIR, &volume_name(LOG_DIR), Some("caddy:caddy"), Some(Mode(0o750)));
    }
}

#[cfg(test)]
mod tests {
    use crate::plan::compile::{test_plan, try_test_plan};
    use crate::vocab::plan::Reload;

    const STATIC: &str = r#"name = "web"
[[services.caddy.sites]]
hosts = ["example.com", "www.example.com"]
root = "/srv/www"
log = true
max_body = "16M"
redirects = [{ from = "/old", to = "/new", status = 308 }]
rewrites = [{ from = "/feed", to = "/feed.xml" }]
proxies = [{ path = "/api/", to = "127.0.0.1:8081" }]
"#;

    #[test]
    fn caddyfile_has_the_site_with_redirect_rewrite_and_proxy() {
        let plan = test_plan(STATIC);
        let c = plan.files["/etc/caddy/Caddyfile"].content.redacted();
        assert!(c.contains("\tauto_https off\n\tadmin 127.0.0.1:2019\n\tstorage file_system"), "{c}");
        assert!(c.contains("\tstorage file_system /var/lib/caddy/.local/share/caddy\n}\n"), "{c}");
        assert!(!c.contains("persist_config"), "Caddy 2.6 rejects it: {c}");
        assert!(c.contains("http://example.com:80, http://www.example.com:80 {\n\troot * /srv/www\n"), "{c}");
        assert!(c.contains("\tredir /old /new 308\n"), "{c}");
        assert!(c.contains("\trewrite /feed /feed.xml\n"), "{c}");
        assert!(c.contains("\treverse_proxy /api/* 127.0.0.1:8081\n"), "{c}");
        assert!(c.contains("\trequest_body {\n\t\tmax_size 16777216\n\t}\n"), "{c}");
        assert!(c.contains("\t\toutput file /var/log/caddy/example.com-80.log\n"), "{c}");
        assert!(c.contains("\tfile_server\n"), "{c}");
        assert!(!c.contains("php_fastcgi"), "{c}");
        assert!(plan.layer.packages.contains("caddy"));
        assert!(plan.mounts.contains_key("/var/log/caddy"));
        assert!(plan.mounts.contains_key("/var/lib/caddy"));
        assert!(!plan.services.contains_key("php-fpm"));
        let svc = &plan.services["caddy"];
        assert_eq!(svc.command, ["caddy", "run", "--config", "/etc/caddy/Caddyfile", "--adapter", "caddyfile"]);
        assert!(matches!(&svc.reload, Some(Reload::Command(c)) if c[1] == "reload"));
        assert_eq!(svc.env["XDG_DATA_HOME"], "/var/lib/caddy/.local/share");
        assert!(svc.uses.contains("/etc/caddy/Caddyfile"));
        assert!(svc.after.is_empty());
        assert_eq!(plan.ports["tcp/80"], "caddy");
    }

    #[test]
    fn php_site_goes_through_php_fpm_and_proxy_for_everything_is_bare() {
        let plan = test_plan(
            "name = \"web\"\n[[services.caddy.sites]]\nroot = \"/srv/www\"\nphp = true\n\
             [[services.caddy.sites]]\nport = 8080\nproxies = [{ path = \"/\", to = \"[::1]:9000\" }]\n",
        );
        let c = plan.files["/etc/caddy/Caddyfile"].content.redacted();
        assert!(c.contains("http://:80 {\n"), "{c}");
        assert!(c.contains("\tphp_fastcgi unix//run/php/php8.4-fpm.sock\n"), "{c}");
        assert!(c.contains("http://:8080 {\n\treverse_proxy [::1]:9000\n}\n"), "{c}");
        assert!(plan.services["caddy"].after.contains("php-fpm"));
        assert!(plan.files.contains_key("/etc/php/8.4/fpm/pool.d/www.conf"));
        assert!(!plan.mounts.contains_key("/var/log/caddy"));
    }

    /// The FastCGI socket is the suite's PHP's.
    #[test]
    fn php_site_on_bookworm_reaches_php_8_2() {
        let plan = test_plan(
            "name = \"web\"\nbase = \"debian:bookworm\"\n[[services.caddy.sites]]\nroot = \"/srv/www\"\nphp = true\n",
        );
        let c = plan.files["/etc/caddy/Caddyfile"].content.redacted();
        assert!(c.contains("\tphp_fastcgi unix//run/php/php8.2-fpm.sock\n"), "{c}");
        assert!(!c.contains("8.4"), "{c}");
        assert!(plan.layer.packages.contains("php8.2-fpm"));
    }

    #[test]
    fn site_without_root_answers_404_outside_its_proxies() {
        let plan = test_plan(
            "name = \"web\"\n[[services.caddy.sites]]\nhosts = [\"*.example.com\"]\nlog = true\n\
             redirects = [{ from = \"/\", to = \"https://example.org/\" }]\n\
             proxies = [{ path = \"/api/\", to = \"localhost:8081\" }]\n",
        );
        let c = plan.files["/etc/caddy/Caddyfile"].content.redacted();
        assert!(c.contains("\tredir / https://example.org/ 301\n"), "{c}");
        assert!(c.contains("\t@unhandled not path /api/*\n\trespond @unhandled 404\n"), "{c}");
        assert!(!c.contains("file_server"), "{c}");
        assert!(c.contains("http://*.example.com:80 {\n"), "{c}");
        assert!(c.contains("output file /var/log/caddy/_wildcard.example.com-80.log\n"), "{c}");
    }

    #[test]
    fn unknown_php_pool_is_an_error() {
        let e = try_test_plan("name = \"web\"\n[[services.caddy.sites]]\nroot = \"/srv\"\nphp = \"shop\"\n")
            .unwrap_err()
            .brief();
        assert_eq!(e, ["test.toml:4:7: there is no PHP pool `shop`"]);
    }

    #[test]
    fn two_sites_on_one_port_and_host_clash() {
        let e = try_test_plan(
            "name = \"web\"\n[[services.caddy.sites]]\nhosts = [\"a.example\", \"b.example\"]\nroot = \"/srv\"\n\
             [[services.caddy.sites]]\nhosts = [\"B.example\"]\nroot = \"/srv\"\n\
             [[services.caddy.sites]]\nhosts = [\"c.example\"]\nroot = \"/srv\"\n",
        )
        .unwrap_err()
        .brief();
        assert_eq!(e, ["test.toml:6:9: sites[0] and sites[1] both answer `B.example` on port 80"]);
        let e = try_test_plan(
            "name = \"web\"\n[[services.caddy.sites]]\nroot = \"/a\"\n[[services.caddy.sites]]\nroot = \"/b\"\n",
        )
        .unwrap_err()
        .brief();
        assert_eq!(e, ["test.toml:4:1: sites[0] and sites[1] both answer any host on port 80"]);
    }

    #[test]
    fn bad_upstreams_and_unsafe_values_are_errors() {
        let e = try_test_plan(
            "name = \"web\"\n[[services.caddy.sites]]\nroot = \"/srv\"\n\
             proxies = [{ path = \"/a/\", to = \"backend\" }, { path = \"/b/\", to = \"a b:80\" }]\n\
             redirects = [{ from = \"/x\", to = \"/{path}\" }]\n",
        )
        .unwrap_err()
        .brief();
        assert_eq!(
            e,
            [
                "test.toml:4:33: invalid upstream `backend`",
                "test.toml:5:34: `/{path}` contains a character that cannot be used here",
                "test.toml:4:67: invalid upstream host `a b`",
            ]
        );
    }
}
