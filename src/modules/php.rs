//! php: PHP-FPM of the base's suite (`php8.2-fpm` on bookworm, `php8.4-fpm` on trixie).
//!
//! Renders php-fpm.conf, one pool file per pool and a php.ini override; sessions live
//! on a tmpfs. Web servers (caddy, nginx) reach a pool through `Php::socket`.
//! Every name and path that carries PHP's version comes from [`Php`], built from the
//! suite's [`Facts`](crate::vocab::values::Facts).

use super::{Ctx, Services};
use crate::vocab::plan::ServiceRes;
use crate::vocab::values::Size;
use crate::vocab::values::{Mode, SignalName, Suite};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write;

/// Name of the default pool; its socket is Debian's usual one.
pub const DEFAULT_POOL: &str = "www";
const SESSIONS: &str = "/var/lib/php/sessions";

/// Debian's PHP of one suite: its package names, paths and binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Php {
    /// "8.2", "8.4".
    pub version: &'static str,
}

impl Php {
    pub fn of(suite: Suite) -> Php {
        Php { version: suite.facts().php }
    }

    /// The package of an extension or SAPI, e.g. `php8.4-mysql`, `php8.4-fpm`.
    pub fn package(self, name: &str) -> String {
        format!("php{}-{name}", self.version)
    }

    /// FPM's configuration folder, e.g. /etc/php/8.4/fpm.
    pub fn conf_dir(self) -> String {
        format!("/etc/php/{}/fpm", self.version)
    }

    /// The FPM binary, e.g. `php-fpm8.4`.
    pub fn binary(self) -> String {
        format!("php-fpm{}", self.version)
    }

    /// The FastCGI socket of a pool.
    pub fn socket(self, pool: &str) -> String {
        if pool == DEFAULT_POOL {
            format!("/run/php/php{}-fpm.sock", self.version)
        } else {
            format!("/run/php/php{}-fpm-{pool}.sock", self.version)
        }
    }
}

/// PHP-FPM settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct PhpSettings {
    /// php.ini `memory_limit`.
    pub memory_limit: Size,
    /// php.ini `upload_max_filesize`.
    pub upload_max_filesize: Size,
    /// php.ini `post_max_size`.
    pub post_max_size: Size,
    /// php.ini `max_execution_time`, in seconds.
    pub max_execution_time: u32,
    /// Show errors in pages and log everything (development only).
    pub debug: bool,
    /// Extra php.ini settings, written verbatim as `key = value`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub ini: BTreeMap<String, String>,
    /// PHP extensions to install, e.g. ["mysql", "gd"] (package php<version>-<name>, e.g. php8.4-gd).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub extensions: Vec<String>,
    /// Size of the tmpfs holding sessions.
    pub sessions_size: Size,
    /// FPM pools; default one pool named "www".
    pub pools: Vec<PhpPool>,
}

impl Default for PhpSettings {
    fn default() -> Self {
        PhpSettings {
            memory_limit: Size(128 << 20),
            upload_max_filesize: Size(2 << 20),
            post_max_size: Size(8 << 20),
            max_execution_time: 30,
            debug: false,
            ini: BTreeMap::new(),
            extensions: Vec::new(),
            sessions_size: Size(64 << 20),
            pools: vec![PhpPool::default()],
        }
    }
}

/// How FPM manages a pool's workers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Pm {
    /// A fixed number of workers.
    Static,
    /// Between min and max spare workers (default).
    #[default]
    Dynamic,
    /// Workers start on demand.
    Ondemand,
}

/// An FPM pool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct PhpPool {
    /// Pool name; the socket is /run/php/php<version>-fpm-<name>.sock ("www": php<version>-fpm.sock).
    pub name: String,
    /// User the workers run as.
    pub user: String,
    /// Process manager.
    pub pm: Pm,
    /// Most workers at once.
    #[schemars(range(min = 1))]
    pub max_children: u32,
}

impl Default for PhpPool {
    fn default() -> Self {
        PhpPool { name: DEFAULT_POOL.into(), user: "www-data".into(), pm: Pm::Dynamic, max_children: 5 }
    }
}

impl PhpSettings {
    pub fn has_pool(&self, name: &str) -> bool {
        self.pools.iter().any(|p| p.name == name)
    }
}

pub fn compile(s: &PhpSettings, _all: &Services, cx: &mut Ctx) {
    let php = Php::of(cx.suite());
    let conf_dir = php.conf_dir();
    cx.package(&php.package("fpm"));
    for ext in &s.extensions {
        cx.package(&php.package(ext));
    }

    let fpm_conf = format!("{conf_dir}/php-fpm.conf");
    cx.file(
        &fpm_conf,
        format!(
            "; Rendered by container (php module).\n[global]\npid = /run/php/php{v}-fpm.pid\n\
             error_log = /proc/self/fd/2\nlog_level = notice\ndaemonize = no\n\
             include = {conf_dir}/pool.d/*.conf\n",
            v = php.version
        ),
    );

    let ini_path = format!("{conf_dir}/conf.d/99-container.ini");
    let mut ini = String::from("; Rendered by container (php module).\n");
    let _ = writeln!(ini, "memory_limit = {}", s.memory_limit);
    let _ = writeln!(ini, "upload_max_filesize = {}", s.upload_max_filesize);
    let _ = writeln!(ini, "post_max_size = {}", s.post_max_size);
    let _ = writeln!(ini, "max_execution_time = {}", s.max_execution_time);
    let _ = writeln!(ini, "session.save_path = \"{SESSIONS}\"");
    // Debian sets 0 and leaves the cleanup to a cron job, which no container runs:
    // PHP removes expired sessions itself, or the tmpfs fills up.
    ini.push_str("session.gc_probability = 1\n");
    if s.debug {
        ini.push_str("display_errors = On\ndisplay_startup_errors = On\nerror_reporting = E_ALL\nlog_errors = On\n");
    } else {
        ini.push_str("display_errors = Off\nlog_errors = On\n");
    }
    for (k, v) in &s.ini {
        let _ = writeln!(ini, "{k} = {v}");
    }
    cx.file(&ini_path, ini);

    let mut svc = ServiceRes::new(&[php.binary(), "--nodaemonize".into(), "--fpm-config".into(), fpm_conf.clone()])
        .reload_signal(SignalName::usr2())
        .uses(&fpm_conf)
        .uses(&ini_path);

    if s.pools.is_empty() {
        cx.error("pools", "at least one pool is needed", Some("remove `pools` to get the default pool \"www\""));
    }
    let mut seen = std::collections::BTreeSet::new();
    for (i, pool) in s.pools.iter().enumerate() {
        let valid =
            !pool.name.is_empty() && pool.name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !valid {
            cx.error(
                &format!("pools[{i}].name"),
                format!("invalid pool name `{}`", pool.name),
                Some("use letters, digits, `-` and `_`"),
            );
            continue;
        }
        if !seen.insert(pool.name.clone()) {
            cx.error(&format!("pools[{i}].name"), format!("pool `{}` is defined twice", pool.name), None);
            continue;
        }
        if pool.max_children == 0 {
            cx.error(&format!("pools[{i}].max_children"), "max_children must be at least 1", None);
        }
        let path = format!("{conf_dir}/pool.d/{}.conf", pool.name);
        cx.file(&path, pool_conf(php, pool));
        svc = svc.uses(&path);
    }
    // Debian's own pool would also load from pool.d; ours replaces it when named "www".
    if !s.has_pool(DEFAULT_POOL) {
        cx.file(&format!("{conf_dir}/pool.d/www.conf"), "; Disabled by container: no pool \"www\" in the spec.\n");
    }
    let first = s.pools.first().map_or(DEFAULT_POOL, |p| p.name.as_str());
    svc = svc.ready_unix(&php.socket(first));
    cx.service("php-fpm", svc);
    cx.tmpfs("/run/php", Some(1 << 20), Some("www-data:www-data"), Some(Mode(0o755)));
    cx.tmpfs(SESSIONS, Some(s.sessions_size.0), Some("www-data:www-data"), Some(Mode(0o1733)));
}

fn pool_conf(php: Php, p: &PhpPool) -> String {
    let pm = match p.pm {
        Pm::Static => "static",
        Pm::Dynamic => "dynamic",
        Pm::Ondemand => "ondemand",
    };
    let mut out = format!(
        "; Rendered by container (php module).\n[{name}]\nuser = {user}\ngroup = {user}\n\
         listen = {sock}\nlisten.owner = {user}\nlisten.group = {user}\nlisten.mode = 0666\n\
         pm = {pm}\npm.max_children = {max}\n",
        name = p.name,
        user = p.user,
        sock = php.socket(&p.name),
        max = p.max_children,
    );
    if p.pm == Pm::Dynamic {
        let start = p.max_children.div_ceil(2).max(1);
        let _ = write!(out, "pm.start_servers = {start}\npm.min_spare_servers = 1\npm.max_spare_servers = {start}\n");
    }
    out.push_str("catch_workers_output = yes\ndecorate_workers_output = no\nclear_env = no\n");
    out
}

#[cfg(test)]
mod tests {
    use crate::plan::compile::test_plan;

    #[test]
    fn php_renders_a_pool_on_debians_socket_and_ini_settings() {
        // No base: the default suite, trixie, with PHP 8.4.
        let plan = test_plan("name = \"p\"\n[services.php]\nmemory_limit = \"256M\"\nextensions = [\"mysql\"]\n");
        let pool = plan.files["/etc/php/8.4/fpm/pool.d/www.conf"].content.redacted();
        assert!(pool.contains("listen = /run/php/php8.4-fpm.sock"), "{pool}");
        assert!(pool.contains("pm = dynamic"));
        let ini = plan.files["/etc/php/8.4/fpm/conf.d/99-container.ini"].content.redacted();
        assert!(ini.contains("memory_limit = 256M"), "{ini}");
        assert!(ini.contains("session.save_path = \"/var/lib/php/sessions\"\nsession.gc_probability = 1\n"), "{ini}");
        assert!(plan.layer.packages.contains("php8.4-fpm"));
        assert!(plan.layer.packages.contains("php8.4-mysql"));
        let svc = &plan.services["php-fpm"];
        assert_eq!(svc.command, ["php-fpm8.4", "--nodaemonize", "--fpm-config", "/etc/php/8.4/fpm/php-fpm.conf"]);
        assert!(svc.uses.contains("/etc/php/8.4/fpm/pool.d/www.conf"));
        assert!(plan.mounts.contains_key("/var/lib/php/sessions"));
    }

    /// Every name and path that carries PHP's version follows the base's suite.
    #[test]
    fn php_follows_the_suite_of_the_base() {
        for (base, v) in [("debian:bookworm", "8.2"), ("debian:trixie", "8.4"), ("host", "8.4")] {
            let plan = test_plan(&format!(
                "name = \"p\"\nbase = \"{base}\"\n[services.php]\nextensions = [\"gd\"]\n\
                 [[services.php.pools]]\nname = \"a\"\n"
            ));
            let conf = format!("/etc/php/{v}/fpm/php-fpm.conf");
            let fpm = plan.files[&conf].content.redacted();
            assert!(fpm.contains(&format!("pid = /run/php/php{v}-fpm.pid\n")), "{base}: {fpm}");
            assert!(fpm.contains(&format!("include = /etc/php/{v}/fpm/pool.d/*.conf\n")), "{base}: {fpm}");
            let pool = plan.files[&format!("/etc/php/{v}/fpm/pool.d/a.conf")].content.redacted();
            assert!(pool.contains(&format!("listen = /run/php/php{v}-fpm-a.sock\n")), "{base}: {pool}");
            assert!(plan.files.contains_key(&format!("/etc/php/{v}/fpm/conf.d/99-container.ini")), "{base}");
            assert!(plan.files.contains_key(&format!("/etc/php/{v}/fpm/pool.d/www.conf")), "{base}");
            let pkgs: Vec<&str> = plan.layer.packages.iter().map(String::as_str).collect();
            assert_eq!(pkgs, [format!("php{v}-fpm"), format!("php{v}-gd")], "{base}");
            let svc = &plan.services["php-fpm"];
            assert_eq!(svc.command[0], format!("php-fpm{v}"), "{base}");
            let ready = crate::vocab::plan::ServiceRes::new(&["-"]).ready_unix(&format!("/run/php/php{v}-fpm-a.sock"));
            assert_eq!(svc.ready, ready.ready, "{base}");
            assert!(!plan
                .files
                .keys()
                .any(|k| k.starts_with("/etc/php/") && !k.starts_with(&format!("/etc/php/{v}/"))));
        }
    }

    #[test]
    fn php_pools_get_their_own_sockets() {
        let plan = test_plan(
            "name = \"p\"\n[[services.php.pools]]\nname = \"a\"\n[[services.php.pools]]\nname = \"b\"\npm = \"static\"\n",
        );
        let b = plan.files["/etc/php/8.4/fpm/pool.d/b.conf"].content.redacted();
        assert!(b.contains("listen = /run/php/php8.4-fpm-b.sock"), "{b}");
        assert!(b.contains("pm = static"));
        assert!(plan.files["/etc/php/8.4/fpm/pool.d/www.conf"].content.redacted().contains("Disabled"));
    }
}
