//! owncloud: ownCloud Server 10 from a release tarball (not packaged by Debian).
//!
//! Invariant: the code comes from one tarball whose sha256 the spec pins, unpacked
//! into the package layer at /var/www/owncloud (the tarball's top folder is
//! `owncloud/`). ownCloud merges every `config/*.config.php` over config.php, so our
//! settings (database, data folder, trusted domains) live in container.config.php and
//! always win, while ownCloud keeps writing its own config.php (instance id, salts,
//! "installed") on the "owncloud-config" volume. Note: container.config.php therefore
//! sits inside a volume; the executor places rendered files over mounts (bind-mounted
//! files), so it stays ours. `expand` asks mysql for the database and account, php for
//! the extensions, and caddy or nginx for the site.

use super::wordpress::{add_php, add_site};
use super::{web, Ctx, Services, WebServer};
use crate::diag::Problem;
use crate::vocab::plan::{BuildStep, Fetch, InitTask};
use crate::vocab::text::Text;
use crate::vocab::values::{AbsPath, Mode, ShaSum};
use crate::vocab::values::{Port, SecretRef, Size};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

const ROOT: &str = "/var/www/owncloud";
const CONFIG_DIR: &str = "/var/www/owncloud/config";
const DATA: &str = "/var/lib/owncloud/data";
const DB: &str = "owncloud";
/// PHP extensions ownCloud needs (Debian package suffixes: php<version>-<name>).
const EXTENSIONS: &[&str] = &["mysql", "gd", "xml", "mbstring", "curl", "zip", "intl"];

/// ownCloud settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct OwncloudSettings {
    /// Where the release tarball comes from: an "https://" (or "http://") URL, a
    /// "file:///" URL, or a path relative to the spec's folder (offline builds).
    pub url: String,
    /// SHA-256 of the tarball (64 hex digits); the build stops when it differs.
    pub sha256: String,
    /// Host names ownCloud answers to (its trusted domains; "localhost" is always
    /// trusted). Empty: the site answers every host, but ownCloud's pages only trust
    /// "localhost".
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// Port the web server listens on for ownCloud.
    #[serde(default = "default_port")]
    pub port: Port,
    /// Web server that serves ownCloud.
    #[serde(default)]
    pub web: WebServer,
    /// Password of the database account "owncloud". Default: the secret "owncloud-db".
    #[serde(default = "default_db_password")]
    pub db_password: SecretRef,
    /// Install ownCloud on first start (`occ maintenance:install`) with an admin account.
    /// Off: the first visitor runs the web installer.
    #[serde(default = "yes")]
    pub install: bool,
    /// Name of the admin account created by the install.
    #[serde(default = "default_admin_user")]
    pub admin_user: String,
    /// Password of the admin account. Default: the secret "owncloud-admin".
    #[serde(default = "default_admin_password")]
    pub admin_password: SecretRef,
}

fn default_port() -> Port {
    Port(80)
}
fn default_db_password() -> SecretRef {
    super::mysql::secret_ref("owncloud-db")
}
fn default_admin_password() -> SecretRef {
    super::mysql::secret_ref("owncloud-admin")
}
fn default_admin_user() -> String {
    "admin".into()
}
fn yes() -> bool {
    true
}

fn web_site(s: &OwncloudSettings) -> web::WebSite {
    web::WebSite::php_app(s.port.clone(), s.hosts.clone(), ROOT, Size(512 << 20))
}

/// Bring MariaDB with the "owncloud" database and account, PHP with ownCloud's
/// extensions, and the web site.
pub fn expand(s: &OwncloudSettings, all: &mut Services, _problems: &mut Vec<Problem>) {
    let mysql = super::mysql::enable(all);
    mysql.ensure_database(DB);
    // Over the socket only: the account cannot be used from outside the container.
    mysql.ensure_grant(DB, "localhost", &s.db_password, DB);
    add_php(all, EXTENSIONS, 512 << 20);
    add_site(all, s.web, web_site(s));
}

/// Where the tarball comes from, checked: Ok(url) or Err(message).
fn check_url(url: &str) -> Result<(), String> {
    let remote = ["https://", "http://"].iter().find_map(|p| url.strip_prefix(p));
    if let Some(rest) = remote {
        let host = rest.split('/').next().unwrap_or("");
        if host.is_empty() || rest.len() == host.len() {
            return Err(format!("invalid url `{url}`: it needs a host and a path"));
        }
        return Ok(());
    }
    if let Some(path) = url.strip_prefix("file://") {
        if !path.starts_with('/') {
            return Err(format!("invalid url `{url}`: write file:///absolute/path"));
        }
        return Ok(());
    }
    if url.contains("://") || url.starts_with('/') || url.is_empty() {
        return Err(format!("invalid url `{url}`"));
    }
    if url.split('/').any(|c| c == "..") {
        return Err(format!("invalid url `{url}`: a relative path may not leave the spec's folder"));
    }
    Ok(())
}

fn php_str(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

pub fn compile(s: &OwncloudSettings, _all: &Services, cx: &mut Ctx) {
    if let Err(e) = check_url(&s.url) {
        cx.error(
            "url",
            e,
            Some("an https:// URL, a file:/// URL, or a path relative to the spec, e.g. \"owncloud-10.15.0.tar.bz2\""),
        );
    }
    let sha256 = ShaSum::parse(&s.sha256);
    if let Err(e) = &sha256 {
        cx.error(
            "sha256",
            e.clone(),
            Some("compute it with `sha256sum <tarball>`, or copy it from the release's .sha256 file"),
        );
    }
    let mut ok = true;
    web::check(&web_site(s), "", &mut |rel, msg, help| {
        ok = false;
        cx.error(rel.trim_start_matches('.'), msg, (!help.is_empty()).then_some(help));
    });
    if s.hosts.iter().any(|h| h.starts_with('*')) {
        cx.error("hosts", "ownCloud's trusted domains cannot be wildcards", Some("list each host name"));
    }
    let user_ok = !s.admin_user.is_empty()
        && s.admin_user.len() <= 64
        && s.admin_user.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.@-".contains(&b));
    if !user_ok {
        cx.error(
            "admin_user",
            format!("invalid admin user `{}`", s.admin_user),
            Some("letters, digits, `_`, `.`, `@` and `-`"),
        );
    }

    // `occ` (the install task) runs with the PHP command line.
    let cli = super::php::Php::of(cx.suite()).package("cli");
    cx.package(&cli);
    if let Ok(sha256) = sha256 {
        cx.step(BuildStep::Fetch(Fetch { url: s.url.clone(), sha256, dest: AbsPath("/var/www".into()), strip: 0 }));
    }

    let config = container_config(s, cx);
    cx.file_with(&format!("{CONFIG_DIR}/container.config.php"), config, Mode(0o640), "root:www-data");
    // ownCloud writes config.php at install and on changes: the folder must be writable.
    cx.volume(CONFIG_DIR, "owncloud-config", Some("www-data:www-data"), Some(Mode(0o750)));
    // ownCloud refuses a data folder other users can read.
    cx.volume(DATA, "owncloud-data", Some("www-data:www-data"), Some(Mode(0o770)));

    if s.install && ok && user_ok {
        let task = install_task(s, cx);
        cx.init("owncloud-install", task);
    }
}

/// `$CONFIG` values that always win over config.php.
fn container_config(s: &OwncloudSettings, cx: &mut Ctx) -> Text {
    let mut domains = vec!["localhost".to_string()];
    domains.extend(s.hosts.iter().map(|h| h.to_ascii_lowercase()).filter(|h| h != "localhost"));
    let list: Vec<String> = domains.iter().enumerate().map(|(i, d)| format!("    {i} => {},\n", php_str(d))).collect();
    let port = if s.port.0 == 80 { String::new() } else { format!(":{}", s.port.0) };
    let cli_url = format!("http://{}{port}", domains.get(1).unwrap_or(&domains[0]));
    let mut t = Text::new().lit(format!(
        "<?php\n// Rendered by container (owncloud module). ownCloud merges config/*.config.php\n\
         // over config.php: these values always win.\n$CONFIG = array (\n\
         \x20 'datadirectory' => '{DATA}',\n\
         \x20 'dbtype' => 'mysql',\n\
         \x20 // MariaDB's socket: the account exists for 'localhost' only.\n\
         \x20 'dbhost' => 'localhost:{sock}',\n\
         \x20 'dbname' => '{DB}',\n\
         \x20 'dbuser' => '{DB}',\n\
         \x20 'dbpassword' => '",
        sock = super::mysql::SOCKET
    ));
    t.append(cx.secret(&s.db_password));
    t.push(format!(
        "',\n  'trusted_domains' => array (\n{}  ),\n  'overwrite.cli.url' => {},\n\
         \x20 // The code is read-only: no app store, no update checks. Logs: owncloud.log on the data volume.\n\
         \x20 'appstoreenabled' => false,\n  'updatechecker' => false,\n);\n",
        list.concat(),
        php_str(&cli_url),
    ));
    t
}

/// Install once, as www-data, after the database runs. The passwords are secrets, so
/// they cannot be argv: a PHP script on stdin runs occ with an argv array (no shell).
/// Done when the data folder holds `.ocdata`, which the install writes.
fn install_task(s: &OwncloudSettings, cx: &mut Ctx) -> InitTask {
    let mut t = Text::new().lit(format!(
        "<?php\n// Rendered by container (owncloud module): first install.\n$cmd = [PHP_BINARY, '{ROOT}/occ', \
         'maintenance:install', '--no-interaction', '--database=mysql', '--database-name={DB}', \
         '--database-host=localhost:{sock}', '--database-user={DB}', '--database-pass=",
        sock = super::mysql::SOCKET
    ));
    t.append(cx.secret(&s.db_password));
    t.push(format!("', '--admin-user={}', '--admin-pass=", s.admin_user));
    t.append(cx.secret(&s.admin_password));
    t.push(format!(
        "', '--data-dir={DATA}'];\n\
         // The script itself is stdin, so PHP defines no STDIN/STDOUT/STDERR constants.\n\
         $io = [['file', '/dev/null', 'r'], fopen('php://stdout', 'w'), fopen('php://stderr', 'w')];\n\
         $p = proc_open($cmd, $io, $pipes, '{ROOT}');\n\
         exit($p === false ? 1 : proc_close($p));\n"
    ));
    InitTask::new(&["php"]).stdin(t).user("www-data").creates(&format!("{DATA}/.ocdata")).after(super::mysql::SERVICE)
}

#[cfg(test)]
mod tests {
    use crate::plan::compile::{test_plan, try_test_plan};
    use crate::vocab::plan::BuildStep;
    use crate::vocab::text::Seg;

    const SHA: &str = "0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef";

    fn spec(extra: &str) -> String {
        format!(
            "name = \"oc\"\n[services.owncloud]\nurl = \"https://download.owncloud.com/server/stable/owncloud-10.15.0.tar.bz2\"\n\
             sha256 = \"{SHA}\"\n{extra}"
        )
    }

    #[test]
    fn owncloud_fetches_the_pinned_tarball_and_configures_the_database_from_a_secret() {
        let plan = test_plan(&spec("hosts = [\"cloud.example.org\"]\n"));
        let BuildStep::Fetch(f) = &plan.layer.steps[0] else { panic!("{:?}", plan.layer.steps) };
        assert_eq!(f.sha256.as_str(), SHA.to_ascii_lowercase());
        assert_eq!(f.url, "https://download.owncloud.com/server/stable/owncloud-10.15.0.tar.bz2");
        assert_eq!((f.dest.as_str(), f.strip), ("/var/www", 0));
        let c = &plan.files["/var/www/owncloud/config/container.config.php"];
        assert_eq!((c.mode.to_string().as_str(), c.owner.as_str()), ("0640", "root:www-data"));
        let php = c.content.redacted();
        assert!(php.contains("$CONFIG = array ("), "{php}");
        assert!(php.contains("'dbpassword' => '(secret)',"));
        assert!(php.contains("'dbtype' => 'mysql',"));
        assert!(php.contains("'dbname' => 'owncloud',"));
        assert!(php.contains("'datadirectory' => '/var/lib/owncloud/data',"));
        assert!(php.contains("0 => 'localhost',\n    1 => 'cloud.example.org',"));
        assert!(php.contains("'overwrite.cli.url' => 'http://cloud.example.org',"));
        assert!(c.content.0.contains(&Seg::Secret("owncloud-db".into())));
        assert_eq!(plan.mounts["/var/lib/owncloud/data"].mode, Some(crate::vocab::values::Mode(0o770)));
        assert_eq!(plan.mounts["/var/www/owncloud/config"].source.as_deref(), Some("owncloud-config"));
    }

    #[test]
    fn owncloud_brings_mysql_php_and_a_site_and_installs_once() {
        let plan = test_plan(&spec("port = 8080\n"));
        let sql = plan.init["mysql-ensure"].stdin.as_ref().unwrap().redacted();
        assert!(sql.contains("CREATE DATABASE IF NOT EXISTS `owncloud`"));
        assert!(sql.contains("GRANT ALL PRIVILEGES ON `owncloud`.* TO 'owncloud'@'localhost';"), "{sql}");
        for p in ["php8.4-intl", "php8.4-zip", "php8.4-mysql", "php8.4-cli", "mariadb-server"] {
            assert!(plan.layer.packages.contains(p), "{p}");
        }
        let bookworm = test_plan(&spec("port = 8080\n").replacen("\n", "\nbase = \"debian:bookworm\"\n", 1));
        for p in ["php8.2-intl", "php8.2-zip", "php8.2-mysql", "php8.2-cli"] {
            assert!(bookworm.layer.packages.contains(p), "{p}");
        }
        let install = &plan.init["owncloud-install"];
        assert_eq!(install.command, ["php"]);
        assert_eq!(install.user.as_deref(), Some("www-data"));
        assert_eq!(install.creates.as_deref(), Some("/var/lib/owncloud/data/.ocdata"));
        assert!(install.after.contains("mariadb"));
        let script = install.stdin.as_ref().unwrap();
        assert!(script.redacted().contains("'--admin-pass=(secret)'"));
        // No STDIN/STDOUT/STDERR constants when the script is read from stdin.
        assert!(!script.redacted().contains("[STDIN, "), "{}", script.redacted());
        assert!(script.redacted().contains("fopen('php://stderr', 'w')"));
        assert!(script.0.contains(&Seg::Secret("owncloud-admin".into())));
        let php = plan.files["/var/www/owncloud/config/container.config.php"].content.redacted();
        assert!(php.contains("'overwrite.cli.url' => 'http://localhost:8080',"), "{php}");

        let mut services: crate::modules::Services =
            toml::from_str(&format!("[owncloud]\nurl = \"owncloud.tar.bz2\"\nsha256 = \"{SHA}\"\nweb = \"nginx\"\n"))
                .unwrap();
        services.expand(&mut Vec::new());
        let site = &services.nginx.as_ref().unwrap().sites[0];
        assert_eq!(site.root.as_ref().unwrap().0, "/var/www/owncloud");
        assert!(services.caddy.is_none());
    }

    #[test]
    fn owncloud_rejects_a_bad_checksum_and_url() {
        let spec = "name = \"oc\"\n[services.owncloud]\nurl = \"ftp://example.org/oc.tar.bz2\"\nsha256 = \"abc\"\n";
        let brief = try_test_plan(spec).unwrap_err().brief();
        assert!(
            brief.iter().any(|b| b.starts_with("test.toml:3:7: invalid url `ftp://example.org/oc.tar.bz2`")),
            "{brief:#?}"
        );
        assert!(
            brief
                .iter()
                .any(|b| b.starts_with("test.toml:4:10: invalid sha256 `abc`: it must be 64 hexadecimal digits")),
            "{brief:#?}"
        );
    }
}
