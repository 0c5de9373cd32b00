//! mysql: MariaDB (Debian's `mariadb-server`: 10.11 on bookworm, 11.8 on trixie; both
//! ship /usr/sbin/mariadbd and the `mariadb` client this module runs).
//!
//! Invariant: the data directory lives on the "mysql" volume and is created once by
//! `mariadb-install-db`; databases, users and grants are *ensured* on every start
//! and apply by one idempotent SQL script fed to the client over the root socket, so
//! the server converges to the spec without the plan ever holding a password: the
//! script is `Text` with secret references. Other modules (wordpress, owncloud) ask
//! for their database and user through `MysqlSettings::ensure_database` / `ensure_grant`.

#[path = "mysql_conf.rs"]
mod conf;

use super::{Ctx, Services};
use crate::vocab::plan::{InitTask, ServiceRes};
use crate::vocab::values::Mode;
use crate::vocab::values::{Port, Proto, SecretName, SecretRef, Size};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub use conf::{ensure_sql, sql_ident, sql_str};

/// The server's Unix socket (Debian's usual path); local clients use it.
pub const SOCKET: &str = "/run/mysqld/mysqld.sock";
/// The data directory (a volume).
pub const DATADIR: &str = "/var/lib/mysql";
/// Our server options; loaded after Debian's 50-server.cnf, so ours win.
pub const CNF: &str = "/etc/mysql/mariadb.conf.d/90-container.cnf";
/// The supervised service's name.
pub const SERVICE: &str = "mariadb";

/// MariaDB 10.11 settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct MysqlSettings {
    /// TCP port the server listens on.
    pub port: Port,
    /// Address the server listens on: "0.0.0.0" (default: every address, so clients on
    /// the host reach it over the container's routed address), "::" (IPv4 and IPv6),
    /// "127.0.0.1" (only programs inside the container) or one of the container's addresses.
    pub bind_address: String,
    /// Password of the MariaDB account `root`@`localhost`. The system user root inside
    /// the container always logs in over the socket without it (unix_socket); the
    /// password serves other local users (`mariadb -u root -p`). Default: the secret
    /// "mysql-root".
    pub root_password: SecretRef,
    /// Databases ensured on every apply (created when missing; never dropped).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub databases: Vec<Database>,
    /// Accounts ensured on every apply: created when missing, password set from the
    /// secret, grants added. Removing a user (or a grant) from the spec does NOT drop
    /// the account or revoke the privilege: the plan shows the changed ensure task, but
    /// apply never deletes database state. Drop it yourself with `DROP USER` if meant.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<MysqlUser>,
    /// Most client connections at once (`max_connections`; MariaDB's default is 151).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<u32>,
    /// Memory for InnoDB's cache of tables and indexes, e.g. "256M" (MariaDB's default is 128M).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub innodb_buffer_pool_size: Option<Size>,
    /// Extra `[mysqld]` options written verbatim as `key = value` (an empty value writes
    /// the bare option, e.g. `skip-log-bin`), after ours so they win.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub config: BTreeMap<String, String>,
}

impl Default for MysqlSettings {
    fn default() -> Self {
        MysqlSettings {
            port: Port(3306),
            bind_address: "0.0.0.0".into(),
            root_password: secret_ref("mysql-root"),
            databases: Vec::new(),
            users: Vec::new(),
            max_connections: None,
            innodb_buffer_pool_size: None,
            config: BTreeMap::new(),
        }
    }
}

/// A database.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Database {
    /// Name: up to 64 letters, digits, `_` and `$`.
    pub name: String,
    /// Character set of a new database.
    #[serde(default = "default_charset")]
    pub charset: String,
    /// Collation of a new database (must belong to `charset`, or be a `uca1400_` one).
    #[serde(default = "default_collation")]
    pub collation: String,
}

fn default_charset() -> String {
    "utf8mb4".into()
}
fn default_collation() -> String {
    "utf8mb4_unicode_ci".into()
}

/// A MariaDB account.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct MysqlUser {
    /// Account name: up to 64 letters, digits, `_` and `$`.
    pub name: String,
    /// Host the account may connect from: "%" (default: anywhere), "localhost" (the
    /// socket inside the container), an address, or a pattern such as "10.%". Host
    /// names are not resolved (`skip-name-resolve`): use addresses.
    #[serde(default = "default_host")]
    pub host: String,
    /// The account's password.
    pub password: SecretRef,
    /// Privileges granted on databases.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub grants: Vec<Grant>,
}

fn default_host() -> String {
    "%".into()
}

/// Privileges on one database.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Grant {
    /// A database declared under `databases` (or by another module), or "*" for all
    /// databases (server-wide privileges).
    pub database: String,
    /// Privileges, e.g. ["SELECT", "INSERT"]; default ["ALL PRIVILEGES"].
    #[serde(default = "default_privileges")]
    pub privileges: Vec<String>,
}

fn default_privileges() -> Vec<String> {
    vec!["ALL PRIVILEGES".into()]
}

/// A secret reference by name (names used here are valid by construction).
pub fn secret_ref(name: &str) -> SecretRef {
    SecretRef { secret: SecretName(name.to_string()) }
}

impl MysqlSettings {
    /// Declare a database unless one of that name exists.
    pub fn ensure_database(&mut self, name: &str) {
        if !self.databases.iter().any(|d| d.name == name) {
            self.databases.push(Database {
                name: name.to_string(),
                charset: default_charset(),
                collation: default_collation(),
            });
        }
    }

    /// Declare `user`@`host` with `password` and all privileges on `database`. An
    /// account declared by the user keeps its password; the grant is added.
    pub fn ensure_grant(&mut self, user: &str, host: &str, password: &SecretRef, database: &str) {
        let grant = Grant { database: database.to_string(), privileges: default_privileges() };
        match self.users.iter_mut().find(|u| u.name == user && u.host == host) {
            Some(u) => {
                if !u.grants.iter().any(|g| g.database == database) {
                    u.grants.push(grant);
                }
            }
            None => self.users.push(MysqlUser {
                name: user.to_string(),
                host: host.to_string(),
                password: password.clone(),
                grants: vec![grant],
            }),
        }
    }
}

/// Let another module make sure MariaDB runs (with defaults when not configured).
pub fn enable(all: &mut Services) -> &mut MysqlSettings {
    all.mysql.get_or_insert_with(MysqlSettings::default)
}

pub fn compile(s: &MysqlSettings, _all: &Services, cx: &mut Ctx) {
    cx.packages(&["mariadb-server", "mariadb-client"]);
    conf::check(s, cx);

    cx.file(CNF, conf::server_cnf(s));
    cx.volume(DATADIR, "mysql", Some("mysql:mysql"), Some(Mode(0o750)));
    // Socket, pid file and temporary files (tmpdir): empty at every start.
    cx.tmpfs("/run/mysqld", None, Some("mysql:mysql"), Some(Mode(0o755)));

    // Creates the system tables once; `root`@`localhost` logs in over the socket only
    // until the ensure task gives it a password too.
    cx.init(
        "mysql-install",
        InitTask::new(&[
            "mariadb-install-db",
            "--user=mysql",
            "--datadir=/var/lib/mysql",
            "--skip-test-db",
            // Without it the script first asks resolveip for the host name and refuses
            // to run when /etc/hosts does not list it; the accounts it creates are
            // 'root'@'localhost' and 'mysql'@'localhost' only, no host names.
            "--force",
            "--auth-root-authentication-method=socket",
        ])
        .creates("/var/lib/mysql/mysql"),
    );

    // Runs in the foreground and logs to stderr (Debian's 50-server.cnf sets no
    // log_error). MariaDB cannot reload its options: a changed cnf restarts it. Ready
    // when the socket answers: that is what the ensure task needs, whatever
    // bind_address is.
    let svc = ServiceRes::new(&["mariadbd", "--user=mysql"]).ready_unix(SOCKET).uses(CNF);
    cx.service(SERVICE, svc);
    if matches!(s.bind_address.as_str(), "127.0.0.1" | "::1") {
        cx.listen_loopback(Proto::Tcp, s.port.0, SERVICE, "port");
    } else {
        cx.listen(Proto::Tcp, s.port.0, SERVICE, "port");
    }

    let sql = ensure_sql(s);
    // Register every secret the script uses.
    let names: Vec<String> = sql.secrets().map(str::to_string).collect();
    for n in names {
        let _ = cx.secret(&secret_ref(&n));
    }
    cx.init(
        "mysql-ensure",
        InitTask::new(&["mariadb", "--protocol=socket", &format!("--socket={SOCKET}"), "-uroot"])
            .stdin(sql)
            .after(SERVICE),
    );
}

#[cfg(test)]
mod tests {
    use crate::plan::compile::{test_plan, try_test_plan};
    use crate::vocab::text::Seg;

    const SPEC: &str = r#"name = "db"
[services.mysql]
port = 3307
innodb_buffer_pool_size = "256M"
config = { "skip-log-bin" = "", "max_allowed_packet" = "64M" }
[[services.mysql.databases]]
name = "app"
[[services.mysql.databases]]
name = "stats"
charset = "latin1"
collation = "latin1_swedish_ci"
[[services.mysql.users]]
name = "app"
password = { secret = "app-db" }
grants = [{ database = "app" }, { database = "stats", privileges = ["select"] }]
"#;

    #[test]
    fn mysql_ensure_sql_creates_databases_users_and_grants_from_secrets() {
        let plan = test_plan(SPEC);
        let task = &plan.init["mysql-ensure"];
        assert_eq!(task.command, ["mariadb", "--protocol=socket", "--socket=/run/mysqld/mysqld.sock", "-uroot"]);
        assert!(task.after.contains("mariadb"));
        let stdin = task.stdin.as_ref().unwrap();
        let sql = stdin.redacted();
        assert!(sql.contains(
            "ALTER USER 'root'@'localhost' IDENTIFIED VIA unix_socket OR mysql_native_password USING PASSWORD('(secret)');"
        ), "{sql}");
        assert!(sql.contains("CREATE DATABASE IF NOT EXISTS `app` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;"));
        assert!(sql.contains("CREATE DATABASE IF NOT EXISTS `stats` CHARACTER SET latin1 COLLATE latin1_swedish_ci;"));
        assert!(sql.contains("CREATE USER IF NOT EXISTS 'app'@'%' IDENTIFIED BY '(secret)';"), "{sql}");
        assert!(sql.contains("ALTER USER 'app'@'%' IDENTIFIED BY '(secret)';"));
        assert!(sql.contains("GRANT ALL PRIVILEGES ON `app`.* TO 'app'@'%';"));
        assert!(sql.contains("GRANT SELECT ON `stats`.* TO 'app'@'%';"), "{sql}");
        assert!(sql.trim_end().ends_with("FLUSH PRIVILEGES;"));
        assert!(!sql.contains("DROP"));
        assert!(stdin.0.contains(&Seg::Secret("app-db".into())));
        assert!(stdin.0.contains(&Seg::Secret("mysql-root".into())));
        assert!(plan.secrets.contains("app-db") && plan.secrets.contains("mysql-root"));
    }

    #[test]
    fn mysql_cnf_listens_on_the_port_and_keeps_state_on_volumes() {
        let plan = test_plan(SPEC);
        let cnf = plan.files["/etc/mysql/mariadb.conf.d/90-container.cnf"].content.redacted();
        assert!(cnf.starts_with("# Rendered by container"));
        assert!(cnf.contains("[mysqld]\n"));
        assert!(cnf.contains("bind-address = 0.0.0.0\n"), "{cnf}");
        assert!(cnf.contains("port = 3307\n"));
        assert!(cnf.contains("datadir = /var/lib/mysql\n"));
        assert!(cnf.contains("socket = /run/mysqld/mysqld.sock\n"));
        assert!(cnf.contains("pid-file = /run/mysqld/mysqld.pid\n"));
        assert!(cnf.contains("skip-name-resolve\n"));
        assert!(cnf.contains("innodb_buffer_pool_size = 256M\n"));
        assert!(cnf.contains("\nskip-log-bin\n") && cnf.contains("max_allowed_packet = 64M\n"), "{cnf}");
        assert!(!cnf.contains("log_error"));
        assert!(plan.layer.packages.contains("mariadb-server"));
        assert_eq!(plan.mounts["/var/lib/mysql"].source.as_deref(), Some("mysql"));
        assert_eq!(plan.mounts["/var/lib/mysql"].owner.as_deref(), Some("mysql:mysql"));
        assert!(plan.mounts.contains_key("/run/mysqld"));
        let svc = &plan.services["mariadb"];
        assert_eq!(svc.command, ["mariadbd", "--user=mysql"]);
        assert!(svc.uses.contains("/etc/mysql/mariadb.conf.d/90-container.cnf"));
        assert!(svc.reload.is_none());
        assert_eq!(plan.ports["tcp/3307"], "mariadb");
        let install = &plan.init["mysql-install"];
        assert_eq!(install.creates.as_deref(), Some("/var/lib/mysql/mysql"));
        assert!(install.command.contains(&"--auth-root-authentication-method=socket".to_string()));
    }

    #[test]
    fn mysql_defaults_need_no_settings() {
        let plan = test_plan("name = \"db\"\n[services.mysql]\n");
        let cnf = plan.files["/etc/mysql/mariadb.conf.d/90-container.cnf"].content.redacted();
        assert!(cnf.contains("port = 3306\n"));
        assert_eq!(plan.ports["tcp/3306"], "mariadb");
        let install = &plan.init["mysql-install"].command;
        // No host name lookup (fails without /etc/hosts entries).
        assert!(install.contains(&"--force".to_string()), "{install:?}");
        assert!(plan.secrets.contains("mysql-root"));
    }

    #[test]
    fn mysql_grant_on_an_undeclared_database_suggests_the_close_one() {
        let spec = "name = \"db\"\n[services.mysql]\ndatabases = [{ name = \"shop\" }]\n\
                    users = [{ name = \"u\", password = { secret = \"u\" }, grants = [{ database = \"shp\" }] }]\n";
        let err = try_test_plan(spec).unwrap_err();
        let brief = err.brief();
        assert_eq!(brief.len(), 1, "{brief:?}");
        assert!(brief[0].starts_with("test.toml:4:76: grant on database `shp`, which is not declared"), "{brief:?}");
        assert_eq!(err.problems[0].1.help.as_deref(), Some("did you mean `shop`?"));
    }

    #[test]
    fn mysql_dual_stack_is_star() {
        // "::" would be IPv6 only in MariaDB.
        let plan = test_plan("name = \"db\"\n[services.mysql]\nbind_address = \"::\"\n");
        let cnf = plan.files["/etc/mysql/mariadb.conf.d/90-container.cnf"].content.redacted();
        assert!(cnf.contains("bind-address = *\n"), "{cnf}");
    }

    #[test]
    fn mysql_rejects_duplicates_bad_names_and_unknown_privileges() {
        let spec = r#"name = "db"
[services.mysql]
bind_address = "everywhere"
[[services.mysql.databases]]
name = "my-db"
[[services.mysql.databases]]
name = "a"
[[services.mysql.databases]]
name = "a"
[[services.mysql.users]]
name = "u"
password = { secret = "u" }
grants = [{ database = "a", privileges = ["SELECT", "FLY"] }]
[[services.mysql.users]]
name = "u"
password = { secret = "u2" }
"#;
        let brief = try_test_plan(spec).unwrap_err().brief();
        let want = [
            "test.toml:3:16: invalid bind_address `everywhere`",
            "test.toml:5:8: invalid database name `my-db`",
            "test.toml:9:8: database `a` is declared twice",
            "test.toml:13:53: unknown privilege `FLY`",
            "test.toml:15:8: user `u`@`%` is declared twice",
        ];
        for w in want {
            assert!(brief.iter().any(|b| b.starts_with(w)), "missing {w} in {brief:#?}");
        }
    }
}
