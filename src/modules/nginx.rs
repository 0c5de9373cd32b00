//! nginx: nginx (Debian's: 1.22 on bookworm, 1.26 on trixie) serving `web::WebSite`s.
//!
//! Renders our own /etc/nginx/nginx.conf (foreground, errors to stderr, temp files
//! on a tmpfs) and one server block per site. Debian's sites-enabled and conf.d are
//! never included, so only what the spec says is served. Sites are checked by the
//! same `check_sites` as caddy's, so a site means the same on either server.

#[path = "nginx_conf.rs"]
mod conf;

use super::web::check_sites;
use super::web::WebSite;
use super::{Ctx, Services};
use crate::vocab::plan::ServiceRes;
use crate::vocab::values::volume_name;
use crate::vocab::values::{Mode, SignalName};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub const NGINX_CONF: &str = "/etc/nginx/nginx.conf";
pub const SITES_CONF: &str = "/etc/nginx/conf.d/container-sites.conf";
pub const LOG_DIR: &str = "/var/log/nginx";
/// Temp files (request bodies, proxy and FastCGI buffers): Debian's compiled-in paths.
pub const TEMP_DIR: &str = "/var/lib/nginx";
/// The pid file lives on its own tmpfs: the container's /run may be read-only.
pub const RUN_DIR: &str = "/run/nginx";

/// Settings of the nginx module.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct NginxSettings {
    /// Web sites served.
    pub sites: Vec<WebSite>,
    /// Number of worker processes; default one per CPU ("auto").
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub worker_processes: Option<u32>,
    /// Most simultaneous connections per worker (clients and upstreams together).
    #[schemars(range(min = 1))]
    pub worker_connections: u32,
}

impl Default for NginxSettings {
    fn default() -> Self {
        NginxSettings { sites: Vec::new(), worker_processes: None, worker_connections: 768 }
    }
}

pub fn compile(s: &NginxSettings, all: &Services, cx: &mut Ctx) {
    let summary = check_sites(&s.sites, all, "nginx", cx);
    if s.worker_processes == Some(0) {
        cx.error("worker_processes", "worker_processes must be at least 1", Some("remove it for one per CPU"));
    }
    if s.worker_connections == 0 {
        cx.error("worker_connections", "worker_connections must be at least 1", Some("the default is 768"));
    }
    cx.package("nginx");
    cx.file(NGINX_CONF, conf::nginx_conf(s));
    cx.file(SITES_CONF, conf::sites_conf(s, all, super::php::Php::of(cx.suite())));

    // `-e stderr`: nginx opens its compiled-in error log before reading the config;
    // on the read-only root that would log an alert at every start.
    let mut svc = ServiceRes::new(&["nginx", "-c", NGINX_CONF, "-e", "stderr"])
        .reload_signal(SignalName::hup())
        .uses(NGINX_CONF)
        .uses(SITES_CONF);
    if let Some(port) = summary.first_port {
        svc = svc.ready_tcp(port);
    }
    if summary.php {
        svc = svc.after("php-fpm");
    }
    cx.service("nginx", svc);
    // The master runs as root and creates the temp folders for the www-data workers.
    cx.tmpfs(TEMP_DIR, Some(256 << 20), None, Some(Mode(0o755)));
    cx.tmpfs(RUN_DIR, Some(1 << 20), None, Some(Mode(0o755)));
    if summary.log {
        cx.volume(LOG_DIR, &volume_name(LOG_DIR), Some("root:adm"), Some(Mode(0o755)));
    }
}

#[cfg(test)]
mod tests {
    use crate::plan::compile::{test_plan, try_test_plan};

    const PHP_SITE: &str = r#"name = "web"
[services.php]
post_max_size = "32M"
[[services.nginx.sites]]
hosts = ["example.com"]
port = 8080
root = "/srv/www"
php = true
log = true
redirects = [{ from = "/old.html", to = "/new", status = 302 }]
rewrites = [{ from = "/feed.xml", to = "/index.php?feed=rss2" }]
proxies = [{ path = "/api/", to = "127.0.0.1:8081" }]
[[services.nginx.sites]]
proxies = [{ path = "/", to = "localhost:3000" }]
max_body = "1G"
"#;

    #[test]
    fn server_blocks_have_listen_names_php_proxy_and_redirects() {
        let plan = test_plan(PHP_SITE);
        let c = plan.files["/etc/nginx/conf.d/container-sites.conf"].content.redacted();
        assert!(c.contains("\tlisten 8080;\n\tlisten [::]:8080;\n\tserver_name example.com;\n"), "{c}");
        assert!(c.contains("\troot /srv/www;\n\tindex index.php index.html index.htm;\n"), "{c}");
        assert!(c.contains("\tclient_max_body_size 33554432;\n"), "{c}");
        assert!(c.contains("\taccess_log /var/log/nginx/example.com-8080.log;\n"), "{c}");
        assert!(c.contains("\trewrite ^/feed\\.xml$ /index.php?feed=rss2 last;\n"), "{c}");
        assert!(c.contains("\tlocation = /old.html {\n\t\treturn 302 /new;\n\t}\n"), "{c}");
        assert!(c.contains("\tlocation ^~ /api/ {\n\t\tproxy_pass http://127.0.0.1:8081;\n"), "{c}");
        assert!(c.contains("\t\tproxy_set_header Host $host;\n"), "{c}");
        assert!(c.contains("\t\tproxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n"), "{c}");
        assert!(c.contains("\tlocation / {\n\t\ttry_files $uri $uri/ /index.php?$args;\n\t}\n"), "{c}");
        assert!(c.contains(
            "\tlocation ~ \\.php$ {\n\t\tinclude /etc/nginx/snippets/fastcgi-php.conf;\n\
             \t\tfastcgi_pass unix:/run/php/php8.4-fpm.sock;\n\t}\n"
        ));
        let bookworm = test_plan(&PHP_SITE.replacen("\n", "\nbase = \"debian:bookworm\"\n", 1));
        let c = bookworm.files["/etc/nginx/conf.d/container-sites.conf"].content.redacted();
        assert!(c.contains("\t\tfastcgi_pass unix:/run/php/php8.2-fpm.sock;\n"), "{c}");
        // The second site: host-less default server proxying everything.
        assert!(c.contains("\tlisten 80 default_server;\n\tlisten [::]:80 default_server;\n\tserver_name _;\n"), "{c}");
        assert!(c.contains(
            "\tclient_max_body_size 1073741824;\n\tlocation ^~ / {\n\t\tproxy_pass http://localhost:3000;\n"
        ));
        assert_eq!(c.matches("location / {").count(), 1, "{c}");
        let svc = &plan.services["nginx"];
        assert_eq!(svc.command, ["nginx", "-c", "/etc/nginx/nginx.conf", "-e", "stderr"]);
        assert!(svc.after.contains("php-fpm"));
        assert!(svc.uses.contains("/etc/nginx/conf.d/container-sites.conf"));
        assert_eq!(plan.ports["tcp/8080"], "nginx");
        assert_eq!(plan.ports["tcp/80"], "nginx");
    }

    #[test]
    fn nginx_conf_runs_in_the_foreground_and_includes_only_our_sites() {
        let plan = test_plan("name = \"web\"\n[[services.nginx.sites]]\nroot = \"/srv/www\"\n");
        let n = plan.files["/etc/nginx/nginx.conf"].content.redacted();
        for want in [
            "daemon off;\n",
            "user www-data;\n",
            "worker_processes auto;\n",
            "pid /run/nginx/nginx.pid;\n",
            "error_log stderr;\n",
            "\tworker_connections 768;\n",
            "\tinclude /etc/nginx/mime.types;\n",
            "\taccess_log off;\n",
            "\tclient_body_temp_path /var/lib/nginx/body;\n",
            "\tinclude /etc/nginx/conf.d/container-sites.conf;\n",
        ] {
            assert!(n.contains(want), "{want:?} missing in\n{n}");
        }
        assert!(!n.contains("sites-enabled"));
        let c = plan.files["/etc/nginx/conf.d/container-sites.conf"].content.redacted();
        assert!(c.contains("\tindex index.html index.htm;\n\tlocation / {\n\t\ttry_files $uri $uri/ =404;\n"), "{c}");
        assert!(!c.contains("fastcgi"), "{c}");
        assert!(!c.contains("client_max_body_size"), "{c}");
        assert!(plan.mounts.contains_key("/var/lib/nginx"));
        assert!(!plan.mounts.contains_key("/var/log/nginx"));
        assert!(plan.layer.packages.contains("nginx"));
        assert_eq!(plan.services["nginx"].ready, Some(crate::vocab::kinds::Ready::Tcp(crate::vocab::values::Port(80))));
    }

    #[test]
    fn nginx_site_errors_point_at_the_value() {
        let e = try_test_plan(
            "name = \"web\"\n[services.php]\npools = [{ name = \"a\" }]\n\
             [[services.nginx.sites]]\nhosts = [\"x.example\"]\nroot = \"/srv\"\nphp = true\n\
             [[services.nginx.sites]]\nhosts = [\"x.example\"]\nproxies = [{ path = \"/\", to = \"127.0.0.1:0\" }]\n",
        )
        .unwrap_err()
        .brief();
        assert_eq!(
            e,
            [
                "test.toml:7:7: there is no PHP pool `www`",
                "test.toml:10:31: invalid upstream `127.0.0.1:0`",
                "test.toml:9:9: sites[0] and sites[1] both answer `x.example` on port 80",
            ]
        );
    }

    #[test]
    fn nginx_and_caddy_cannot_share_a_port() {
        let e = try_test_plan(
            "name = \"web\"\n[[services.caddy.sites]]\nroot = \"/a\"\n[[services.nginx.sites]]\nroot = \"/b\"\n",
        )
        .unwrap_err()
        .brief();
        assert_eq!(e, ["test.toml:4:1: port tcp/80 is used by both caddy and nginx"]);
    }
}
