//! wordpress: WordPress from Debian's `wordpress` package, one instance per site.
//!
//! Invariant: all sites share the code in /usr/share/wordpress. Debian's
//! /usr/share/wordpress/wp-config.php picks /etc/wordpress/config-<host>.php by the
//! request's Host (without port), then config-<host minus its first label>.php, then
//! config-default.php. We render only config-default.php ([`CONFIG`]): a lone site
//! without hosts is that file as it is; otherwise it is a dispatcher that makes the
//! same lookup in a table of host → site and holds each site's database, password and
//! keys (secrets). A host name is thus content of one file, never a file of its own:
//! adding one to a running container rewrites that file live (and reloads the web
//! server for its site block) instead of recreating the container for a new bind
//! mount. `expand` asks mysql for the database and account, php for the extensions,
//! and caddy or nginx for the site.
//!
//! Content: Debian's default WP_CONTENT_DIR (/var/lib/wordpress/wp-content, themes and
//! plugins as symlinks) needs an `/wp-content` alias the shared site model does not
//! have, and a fresh volume over it would hide the symlinks. So WP_CONTENT_DIR is the
//! package's own /usr/share/wordpress/wp-content (under the web root: no alias needed;
//! bundled themes and plugins, read-only like the rest of the root), and only uploads
//! persist: one volume at its `uploads/` folder, a sub-folder per site (`UPLOADS`).

use super::web;
use super::{Ctx, Services, WebServer};
use crate::diag::Problem;
use crate::vocab::values::Mode;
use crate::vocab::values::{Port, SecretRef, Size};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write;

const ROOT: &str = "/usr/share/wordpress";
const UPLOADS: &str = "/usr/share/wordpress/wp-content/uploads";
/// The one config file Debian's wp-config.php finds for every host.
const CONFIG: &str = "/etc/wordpress/config-default.php";
/// PHP extensions WordPress uses (Debian package suffixes: php<version>-<name>).
const EXTENSIONS: &[&str] = &["mysql", "gd", "curl", "xml", "mbstring", "zip"];
/// The eight keys and salts of wp-config, each its own secret.
const KEYS: &[&str] = &[
    "AUTH_KEY",
    "SECURE_AUTH_KEY",
    "LOGGED_IN_KEY",
    "NONCE_KEY",
    "AUTH_SALT",
    "SECURE_AUTH_SALT",
    "LOGGED_IN_SALT",
    "NONCE_SALT",
];

/// WordPress settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct WordpressSettings {
    /// WordPress instances; default one site named "default" answering any host.
    pub sites: Vec<WordpressSite>,
    /// Web server that serves the sites.
    pub web: WebServer,
}

impl Default for WordpressSettings {
    fn default() -> Self {
        WordpressSettings { sites: vec![WordpressSite::default()], web: WebServer::Caddy }
    }
}

/// One WordPress instance with its own database.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct WordpressSite {
    /// Site name: 1-32 lowercase letters, digits and `_`, starting with a letter. The
    /// database and its account are "wordpress_<name>".
    pub name: String,
    /// Host names of the site, e.g. ["blog.example.org"]; "*.example.org" covers one
    /// level of sub-domains. Empty: the site answers every host no other site claims.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// Port the web server listens on for this site.
    pub port: Port,
    /// Password of the site's database account. Default: the secret "wordpress-<name>".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub db_password: Option<SecretRef>,
    /// Prefix of the site's table names.
    pub table_prefix: String,
    /// WP_DEBUG: show PHP notices and warnings in pages (development only).
    pub debug: bool,
}

impl Default for WordpressSite {
    fn default() -> Self {
        WordpressSite {
            name: "default".into(),
            hosts: Vec::new(),
            port: Port(80),
            db_password: None,
            table_prefix: "wp_".into(),
            debug: false,
        }
    }
}

impl WordpressSite {
    fn db(&self) -> String {
        format!("wordpress_{}", self.name)
    }
    fn password(&self) -> SecretRef {
        self.db_password.clone().unwrap_or_else(|| super::mysql::secret_ref(&format!("wordpress-{}", self.name)))
    }
    /// The keys Debian's lookup would find this site's config file by (the file
    /// config-<key>.php), or "default" for a site without hosts.
    fn lookup_keys(&self) -> Vec<String> {
        if self.hosts.is_empty() {
            return vec!["default".into()];
        }
        let mut v: Vec<String> = self
            .hosts
            .iter()
            // "*.example.org": Debian falls back to the host minus its first label.
            .map(|h| h.strip_prefix("*.").unwrap_or(h).to_ascii_lowercase())
            .collect();
        v.dedup();
        v
    }
}

fn valid_name(s: &str) -> bool {
    s.len() <= 32
        && s.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

fn valid_prefix(s: &str) -> bool {
    !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// The web site a WordPress site needs.
fn web_site(site: &WordpressSite) -> web::WebSite {
    web::WebSite::php_app(site.port.clone(), site.hosts.clone(), ROOT, Size(64 << 20))
}

/// Bring MariaDB with a database and account per site, PHP with WordPress's
/// extensions, and a web site per site. Invalid sites are left to `compile` to report.
pub fn expand(s: &WordpressSettings, all: &mut Services, _problems: &mut Vec<Problem>) {
    let sites: Vec<&WordpressSite> = s.sites.iter().filter(|site| valid_name(&site.name)).collect();
    if sites.is_empty() {
        return;
    }
    let mysql = super::mysql::enable(all);
    for site in &sites {
        mysql.ensure_database(&site.db());
        // Over the socket only: the account cannot be used from outside the container.
        mysql.ensure_grant(&site.db(), "localhost", &site.password(), &site.db());
    }
    add_php(all, EXTENSIONS, 64 << 20);
    for site in sites {
        add_site(all, s.web, web_site(site));
    }
}

/// Make sure PHP runs with `extensions`; a PHP brought by us (not configured by the
/// user) also accepts uploads up to `upload` bytes.
pub fn add_php(all: &mut Services, extensions: &[&str], upload: u64) {
    let php = all.php.get_or_insert_with(|| super::php::PhpSettings {
        upload_max_filesize: Size(upload),
        post_max_size: Size(upload),
        ..Default::default()
    });
    for e in extensions {
        if !php.extensions.iter().any(|x| x == e) {
            php.extensions.push(e.to_string());
        }
    }
}

/// Add `site` to the chosen web server (enabled with defaults when needed).
pub fn add_site(all: &mut Services, server: WebServer, site: web::WebSite) {
    match server {
        WebServer::Caddy => all.caddy.get_or_insert_with(Default::default).sites.push(site),
        WebServer::Nginx => all.nginx.get_or_insert_with(Default::default).sites.push(site),
    }
}

pub fn compile(s: &WordpressSettings, _all: &Services, cx: &mut Ctx) {
    // The theme is only a Recommends of `wordpress`: without it (--no-install-recommends)
    // the site renders a blank page.
    cx.packages(&["wordpress", "wordpress-theme-twentytwentythree"]);
    if s.sites.is_empty() {
        cx.error("sites", "at least one site is needed", Some("remove `sites` to get one site named \"default\""));
    }
    let mut names = BTreeMap::new();
    let mut keys: BTreeMap<String, usize> = BTreeMap::new();
    let mut rendered: Vec<(&WordpressSite, crate::vocab::text::Text)> = Vec::new();
    for (i, site) in s.sites.iter().enumerate() {
        let at = format!("sites[{i}]");
        if !valid_name(&site.name) {
            cx.error(
                &format!("{at}.name"),
                format!("invalid site name `{}`", site.name),
                Some("use 1-32 lowercase letters, digits and `_`, starting with a letter"),
            );
            continue;
        }
        if names.insert(site.name.clone(), i).is_some() {
            cx.error(&format!("{at}.name"), format!("site `{}` is declared twice", site.name), None);
            continue;
        }
        if !valid_prefix(&site.table_prefix) {
            cx.error(
                &format!("{at}.table_prefix"),
                format!("invalid table prefix `{}`", site.table_prefix),
                Some("use up to 20 letters, digits and `_`, e.g. \"wp_\""),
            );
        }
        let mut host_ok = true;
        web::check(&web_site(site), &at, &mut |rel, msg, help| {
            host_ok = false;
            cx.error(rel, msg, (!help.is_empty()).then_some(help));
        });
        if !host_ok {
            continue;
        }
        let mut clash = false;
        for key in site.lookup_keys() {
            if let Some(other) = keys.insert(key.clone(), i) {
                clash = true;
                let other = &s.sites[other].name;
                let msg = if site.hosts.is_empty() {
                    format!(
                        "site `{}` has no hosts, like site `{other}`: only one site may answer every host",
                        site.name
                    )
                } else {
                    format!("a host of site `{}` is already served by site `{other}` ({key})", site.name)
                };
                let field = if site.hosts.is_empty() { "name" } else { "hosts" };
                cx.error(
                    &format!("{at}.{field}"),
                    msg,
                    Some("give each site its own host names; one site may have none"),
                );
            }
        }
        if !clash {
            rendered.push((site, site_config(site, cx)));
        }
    }
    if let Some(content) = config_file(rendered) {
        cx.file_with(CONFIG, content, Mode(0o640), "root:www-data");
    }
    // Uploads of every site (a folder each); WordPress creates the folders.
    cx.volume(UPLOADS, "wordpress-uploads", Some("www-data:www-data"), Some(Mode(0o750)));
}

/// [`CONFIG`] for the valid sites: a lone site without hosts as it is, otherwise
/// Debian's lookup of config-<host>.php done in PHP over a table, then the site's
/// settings. `None` without a valid site.
fn config_file(sites: Vec<(&WordpressSite, crate::vocab::text::Text)>) -> Option<crate::vocab::text::Text> {
    let mut t = crate::vocab::text::Text::new();
    if let [(site, body)] = &sites[..] {
        if site.hosts.is_empty() {
            t.push(format!(
                "<?php\n// Rendered by container (wordpress module, site \"{name}\"): loaded by Debian's\n\
                 // {ROOT}/wp-config.php, which sets ABSPATH and loads WordPress.\n",
                name = site.name
            ));
            t.append(body.clone());
            return Some(t);
        }
    }
    if sites.is_empty() {
        return None;
    }
    let mut head = format!(
        "<?php\n// Rendered by container (wordpress module): loaded by Debian's {ROOT}/wp-config.php\n\
         // (which sets ABSPATH and loads WordPress) for every host. It picks the site as Debian\n\
         // picks config-<host>.php: the request's host, then the host minus its first label,\n\
         // then the site without hosts.\n\
         $container_host = preg_replace('/[^a-z0-9.\\-]/', '', strtolower(preg_replace('/:.*/', '', $_SERVER['HTTP_HOST'] ?? '')));\n\
         $container_sites = array(\n"
    );
    let mut fallback = "null".to_string();
    for (site, _) in &sites {
        if site.hosts.is_empty() {
            fallback = format!("'{}'", site.name);
        }
        for key in site.lookup_keys().into_iter().filter(|_| !site.hosts.is_empty()) {
            let _ = writeln!(head, "    '{key}' => '{}',", site.name);
        }
    }
    let _ = write!(
        head,
        ");\n$container_site = $container_sites[$container_host]\n    \
         ?? $container_sites[preg_replace('/^[^.]*\\./', '', $container_host)] ?? {fallback};\n\
         if ($container_site === null) {{\n    header('HTTP/1.0 404 Not Found');\n    \
         echo 'No WordPress site for this host.';\n    exit(1);\n}}\n"
    );
    t.push(head);
    for (site, body) in sites {
        t.push(format!("if ($container_site === '{}') {{\n", site.name));
        t.append(body);
        t.push("}\n");
    }
    Some(t)
}

/// A site's settings in [`CONFIG`]; secrets stay references.
fn site_config(site: &WordpressSite, cx: &mut Ctx) -> crate::vocab::text::Text {
    let db = site.db();
    let mut t = crate::vocab::text::Text::new();
    t.push(format!("define('DB_NAME', '{db}');\ndefine('DB_USER', '{db}');\ndefine('DB_PASSWORD', '"));
    t.append(cx.secret(&site.password()));
    t.push(format!(
        "');\n// MariaDB's socket: the account exists for 'localhost' only.\n\
         define('DB_HOST', 'localhost:{sock}');\ndefine('DB_CHARSET', 'utf8mb4');\ndefine('DB_COLLATE', '');\n",
        sock = super::mysql::SOCKET
    ));
    for key in KEYS {
        let secret = format!("wordpress-{}-{}", site.name, key.to_ascii_lowercase().replace('_', "-"));
        t.push(format!("define('{key}', '"));
        t.append(cx.secret(&super::mysql::secret_ref(&secret)));
        t.push("');\n");
    }
    let mut tail = String::new();
    let _ = write!(
        tail,
        "$table_prefix = '{prefix}';\n\
         // The package's wp-content is under the web root; only uploads are writable (a volume).\n\
         define('WP_CONTENT_DIR', '{ROOT}/wp-content');\n\
         define('UPLOADS', 'wp-content/uploads/{name}');\n\
         // The root filesystem is read-only: no installing or updating from the dashboard.\n\
         define('DISALLOW_FILE_MODS', true);\n\
         define('AUTOMATIC_UPDATER_DISABLED', true);\n",
        prefix = site.table_prefix,
        name = site.name,
    );
    if site.debug {
        tail.push_str("define('WP_DEBUG', true);\ndefine('WP_DEBUG_DISPLAY', true);\ndefine('WP_DEBUG_LOG', false);\n");
    } else {
        tail.push_str("define('WP_DEBUG', false);\n");
    }
    t.push(tail);
    t
}

#[cfg(test)]
mod tests {
    use crate::modules::web::PhpUse;
    use crate::plan::compile::{test_plan, try_test_plan};
    use crate::vocab::text::Seg;

    #[test]
    fn wordpress_default_site_takes_its_password_and_keys_from_secrets() {
        let plan = test_plan("name = \"wp\"\n[services.wordpress]\n");
        let f = &plan.files["/etc/wordpress/config-default.php"];
        assert_eq!((f.mode.to_string().as_str(), f.owner.as_str()), ("0640", "root:www-data"));
        let php = f.content.redacted();
        assert!(php.starts_with("<?php\n"));
        assert!(php.contains("define('DB_NAME', 'wordpress_default');"), "{php}");
        assert!(php.contains("define('DB_USER', 'wordpress_default');"));
        assert!(php.contains("define('DB_PASSWORD', '(secret)');"));
        assert!(php.contains("define('DB_HOST', 'localhost:/run/mysqld/mysqld.sock');"));
        assert!(php.contains("define('NONCE_SALT', '(secret)');"));
        assert!(php.contains("$table_prefix = 'wp_';"));
        assert!(php.contains("define('UPLOADS', 'wp-content/uploads/default');"));
        assert!(php.contains("define('WP_DEBUG', false);"));
        assert!(f.content.0.contains(&Seg::Secret("wordpress-default".into())));
        assert!(f.content.0.contains(&Seg::Secret("wordpress-default-secure-auth-salt".into())));
        assert_eq!(f.content.secrets().count(), 9);
        assert!(plan.layer.packages.contains("wordpress"));
        // A Recommends of wordpress: without a theme the site is a blank page.
        assert!(plan.layer.packages.contains("wordpress-theme-twentytwentythree"));
        assert_eq!(plan.mounts["/usr/share/wordpress/wp-content/uploads"].owner.as_deref(), Some("www-data:www-data"));
    }

    #[test]
    fn wordpress_brings_mysql_database_and_grant_and_php_extensions() {
        let plan = test_plan("name = \"wp\"\n[services.wordpress]\n");
        let task = &plan.init["mysql-ensure"];
        let sql = task.stdin.as_ref().unwrap().redacted();
        assert!(sql.contains("CREATE DATABASE IF NOT EXISTS `wordpress_default`"), "{sql}");
        assert!(sql.contains("CREATE USER IF NOT EXISTS 'wordpress_default'@'localhost' IDENTIFIED BY '(secret)';"));
        assert!(sql.contains("GRANT ALL PRIVILEGES ON `wordpress_default`.* TO 'wordpress_default'@'localhost';"));
        assert!(task.stdin.as_ref().unwrap().0.contains(&Seg::Secret("wordpress-default".into())));
        assert!(plan.services.contains_key("mariadb"));
        for p in ["php8.4-fpm", "php8.4-mysql", "php8.4-gd", "php8.4-xml", "php8.4-mbstring"] {
            assert!(plan.layer.packages.contains(p), "{p}");
        }
        let ini = plan.files["/etc/php/8.4/fpm/conf.d/99-container.ini"].content.redacted();
        assert!(ini.contains("upload_max_filesize = 64M"), "{ini}");
        let bookworm = test_plan("name = \"wp\"\nbase = \"debian:bookworm\"\n[services.wordpress]\n");
        for p in ["php8.2-fpm", "php8.2-mysql", "php8.2-gd", "php8.2-xml", "php8.2-mbstring"] {
            assert!(bookworm.layer.packages.contains(p), "{p}");
        }
        assert!(!bookworm.layer.packages.iter().any(|p| p.starts_with("php8.4")));
        assert!(bookworm.files.contains_key("/etc/php/8.2/fpm/conf.d/99-container.ini"));
    }

    #[test]
    fn wordpress_site_goes_to_caddy_by_default_and_to_nginx_when_asked() {
        let spec = "name = \"wp\"\n[[services.wordpress.sites]]\nname = \"blog\"\nhosts = [\"Blog.example.org\", \"*.example.net\"]\n";
        let mut services: crate::modules::Services =
            toml::from_str(&spec.replace("name = \"wp\"\n", "").replace("services.", "")).unwrap();
        services.expand(&mut Vec::new());
        let caddy = services.caddy.as_ref().expect("caddy enabled");
        let site = &caddy.sites[0];
        assert_eq!(site.root.as_ref().unwrap().0, "/usr/share/wordpress");
        assert_eq!(site.php, PhpUse::Default);
        assert_eq!(site.hosts, ["Blog.example.org", "*.example.net"]);
        assert!(services.nginx.is_none());
        let plan = test_plan(spec);
        // One config file for every host: a dispatcher by host, as Debian's lookup.
        let wp: Vec<&String> = plan.files.keys().filter(|p| p.starts_with("/etc/wordpress/")).collect();
        assert_eq!(wp, ["/etc/wordpress/config-default.php"]);
        let php = plan.files["/etc/wordpress/config-default.php"].content.redacted();
        assert!(php.contains("    'blog.example.org' => 'blog',\n    'example.net' => 'blog',\n"), "{php}");
        assert!(php.contains("?? null;"), "no site without hosts: other hosts get a 404\n{php}");
        assert!(php.contains("if ($container_site === 'blog') {\ndefine('DB_NAME', 'wordpress_blog');"), "{php}");

        let mut services: crate::modules::Services = toml::from_str("[wordpress]\nweb = \"nginx\"\n").unwrap();
        services.expand(&mut Vec::new());
        assert!(services.caddy.is_none());
        let site = &services.nginx.as_ref().expect("nginx enabled").sites[0];
        assert_eq!(site.php, PhpUse::Default);
        assert!(site.hosts.is_empty());
    }

    #[test]
    fn wordpress_rejects_bad_names_and_two_catch_all_sites() {
        let spec = "name = \"wp\"\n[[services.wordpress.sites]]\nname = \"My-Blog\"\n\
                    [[services.wordpress.sites]]\nname = \"a\"\n[[services.wordpress.sites]]\nname = \"b\"\n";
        let brief = try_test_plan(spec).unwrap_err().brief();
        assert!(brief.iter().any(|b| b.starts_with("test.toml:3:8: invalid site name `My-Blog`")), "{brief:#?}");
        assert!(
            brief.iter().any(|b| b.starts_with("test.toml:7:8: site `b` has no hosts, like site `a`")),
            "{brief:#?}"
        );
    }

    /// The shipped spec, applied, then with `hosts` added to its site (and more).
    fn shipped_with(hosts: &str) -> crate::plan::types::Plan {
        let spec = include_str!("../../specs/wordpress.toml");
        let site = "name = \"default\"\n";
        assert!(spec.contains(site));
        test_plan(&spec.replacen(site, &format!("{site}{hosts}"), 1))
    }

    #[test]
    fn a_new_host_name_rewrites_the_config_and_reloads_caddy_without_a_recreate() {
        use crate::plan::diff::{diff, ChangeOp, Effect, ResourceKind};
        let applied = shipped_with("");
        let one = shipped_with("hosts = [\"blog.example.org\"]\n");
        let two = shipped_with("hosts = [\"blog.example.org\", \"*.example.net\"]\n");
        for (old, new) in [(&applied, &one), (&one, &two), (&two, &applied)] {
            let changes = diff(Some(old), new);
            assert!(!changes.recreates(), "{:#?}", changes.changes);
            assert_eq!(changes.destroyed(), 0);
            let got: Vec<(ChangeOp, ResourceKind, &str, &[Effect])> =
                changes.changes.iter().map(|c| (c.op, c.kind, c.name.as_str(), c.effects.as_slice())).collect();
            assert_eq!(
                got,
                [
                    (
                        ChangeOp::Update,
                        ResourceKind::File,
                        "/etc/caddy/Caddyfile",
                        &[Effect::WriteFile("/etc/caddy/Caddyfile".into()), Effect::ReloadService("caddy".into())][..]
                    ),
                    (
                        ChangeOp::Update,
                        ResourceKind::File,
                        "/etc/wordpress/config-default.php",
                        &[Effect::WriteFile("/etc/wordpress/config-default.php".into())][..]
                    ),
                ]
            );
            assert_eq!(old.layer, new.layer, "host names stay out of the layer");
        }
        let php = one.files["/etc/wordpress/config-default.php"].content.redacted();
        assert!(php.contains("'blog.example.org' => 'default',"), "{php}");
    }
}
