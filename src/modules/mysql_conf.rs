//! Rendering and checks for the mysql module: the server options file, the ensure
//! script, SQL quoting and the validation of names and privileges.

use super::{MysqlSettings, CNF, DATADIR, SOCKET};
use crate::modules::Ctx;
use crate::vocab::text::Text;
use std::collections::BTreeSet;
use std::fmt::Write;

/// Privileges that may be granted on one database (`db`.*).
const DB_PRIVILEGES: &[&str] = &[
    "ALL PRIVILEGES",
    "ALL",
    "ALTER",
    "ALTER ROUTINE",
    "CREATE",
    "CREATE ROUTINE",
    "CREATE TEMPORARY TABLES",
    "CREATE VIEW",
    "DELETE",
    "DELETE HISTORY",
    "DROP",
    "EVENT",
    "EXECUTE",
    "GRANT OPTION",
    "INDEX",
    "INSERT",
    "LOCK TABLES",
    "REFERENCES",
    "SELECT",
    "SHOW VIEW",
    "TRIGGER",
    "UPDATE",
];

/// Privileges that exist only server-wide (`*`.*).
const GLOBAL_PRIVILEGES: &[&str] = &[
    "BINLOG MONITOR",
    "CONNECTION ADMIN",
    "CREATE TABLESPACE",
    "CREATE USER",
    "FILE",
    "PROCESS",
    "READ_ONLY ADMIN",
    "RELOAD",
    "REPLICATION CLIENT",
    "REPLICATION SLAVE",
    "SHOW DATABASES",
    "SHUTDOWN",
    "SLAVE MONITOR",
    "SUPER",
];

/// A name MariaDB takes as is: 1-64 letters, digits, `_` and `$`.
pub fn valid_ident(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'$')
}

/// A host pattern: "%", "localhost", an address, "10.%", "10.0.0.0/255.0.0.0".
fn valid_host(s: &str) -> bool {
    !s.is_empty() && s.len() <= 255 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-%:/".contains(&b))
}

/// A charset or collation name.
fn valid_word(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// Quote an identifier with backticks.
pub fn sql_ident(s: &str) -> String {
    format!("`{}`", s.replace('`', "``"))
}

/// Quote a string literal (default sql_mode: backslash escapes are on).
pub fn sql_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\'' => out.push_str("\\'"),
            '\\' => out.push_str("\\\\"),
            '\0' => out.push_str("\\0"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            _ => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// Privilege as MariaDB spells it: upper case, single spaces.
fn norm_privilege(p: &str) -> String {
    p.split_whitespace().map(str::to_ascii_uppercase).collect::<Vec<_>>().join(" ")
}

fn account(name: &str, host: &str) -> String {
    format!("{}@{}", sql_str(name), sql_str(host))
}

/// The idempotent script run after every start: root password, databases, accounts
/// (password converged with ALTER USER), grants. Nothing is ever dropped or revoked.
/// Secret values are inserted unescaped inside '...': generated secrets must not
/// contain `'` or `\`.
pub fn ensure_sql(s: &MysqlSettings) -> Text {
    let mut t = Text::new().lit("-- Rendered by container (mysql module): ensured on every start and apply.\n");
    t.push("ALTER USER 'root'@'localhost' IDENTIFIED VIA unix_socket OR mysql_native_password USING PASSWORD('");
    t.push_secret(s.root_password.name());
    t.push("');\n");
    for d in &s.databases {
        t.push(format!(
            "CREATE DATABASE IF NOT EXISTS {} CHARACTER SET {} COLLATE {};\n",
            sql_ident(&d.name),
            d.charset,
            d.collation
        ));
    }
    for u in &s.users {
        let acct = account(&u.name, &u.host);
        t.push(format!("CREATE USER IF NOT EXISTS {acct} IDENTIFIED BY '"));
        t.push_secret(u.password.name());
        t.push(format!("';\nALTER USER {acct} IDENTIFIED BY '"));
        t.push_secret(u.password.name());
        t.push("';\n");
        for g in &u.grants {
            let privs: Vec<String> = g.privileges.iter().map(|p| norm_privilege(p)).collect();
            let on = if g.database == "*" { "*.*".to_string() } else { format!("{}.*", sql_ident(&g.database)) };
            t.push(format!("GRANT {} ON {on} TO {acct};\n", privs.join(", ")));
        }
    }
    t.push("FLUSH PRIVILEGES;\n");
    t
}

/// `/etc/mysql/mariadb.conf.d/90-container.cnf`. No `log_error`: in the foreground
/// MariaDB then logs to stderr, which the supervisor captures.
pub fn server_cnf(s: &MysqlSettings) -> String {
    let mut c = format!(
        "# Rendered by container (mysql module): {CNF}\n\
         # Read after Debian's 50-server.cnf, so these options win.\n\
         [mysqld]\n\
         user = mysql\n\
         bind-address = {bind}\n\
         port = {port}\n\
         datadir = {DATADIR}\n\
         socket = {SOCKET}\n\
         pid-file = /run/mysqld/mysqld.pid\n\
         # The root filesystem is read-only: temporary files go to the /run/mysqld tmpfs.\n\
         tmpdir = /run/mysqld\n\
         skip-name-resolve\n\
         character-set-server = utf8mb4\n\
         collation-server = utf8mb4_unicode_ci\n",
        // MariaDB takes "::" literally (IPv6 only: the socket gets IPV6_V6ONLY);
        // "*" is its spelling of every IPv4 and IPv6 address.
        bind = if s.bind_address == "::" { "*" } else { s.bind_address.as_str() },
        port = s.port.0,
    );
    if let Some(n) = s.max_connections {
        let _ = writeln!(c, "max_connections = {n}");
    }
    if let Some(b) = &s.innodb_buffer_pool_size {
        let _ = writeln!(c, "innodb_buffer_pool_size = {b}");
    }
    for (k, v) in &s.config {
        if v.is_empty() {
            let _ = writeln!(c, "{k}");
        } else {
            let _ = writeln!(c, "{k} = {v}");
        }
    }
    let _ = write!(c, "\n[client]\nport = {}\nsocket = {SOCKET}\n", s.port.0);
    c
}

/// Report every problem of the settings (paths relative to `services.mysql`).
pub fn check(s: &MysqlSettings, cx: &mut Ctx) {
    if s.bind_address.parse::<std::net::IpAddr>().is_err() {
        cx.error(
            "bind_address",
            format!("invalid bind_address `{}`", s.bind_address),
            Some("use an IP address: \"0.0.0.0\" (all IPv4), \"::\" (all), \"127.0.0.1\" (inside only)"),
        );
    }
    if s.max_connections == Some(0) {
        cx.error("max_connections", "max_connections must be at least 1", None);
    }
    let ident_help = "use up to 64 letters, digits, `_` and `$`";
    let mut dbs = BTreeSet::new();
    for (i, d) in s.databases.iter().enumerate() {
        if !valid_ident(&d.name) {
            cx.error(&format!("databases[{i}].name"), format!("invalid database name `{}`", d.name), Some(ident_help));
        } else if !dbs.insert(d.name.as_str()) {
            cx.error(&format!("databases[{i}].name"), format!("database `{}` is declared twice", d.name), None);
        }
        if !valid_word(&d.charset) {
            cx.error(
                &format!("databases[{i}].charset"),
                format!("invalid character set `{}`", d.charset),
                Some("e.g. \"utf8mb4\" or \"latin1\""),
            );
        }
        let belongs = d.collation.strip_prefix(d.charset.as_str()).is_some_and(|r| r.starts_with('_'))
            || d.collation.starts_with("uca1400_");
        if !valid_word(&d.collation) || !belongs {
            cx.error(
                &format!("databases[{i}].collation"),
                format!("invalid collation `{}` for character set `{}`", d.collation, d.charset),
                Some("a collation of the character set, e.g. \"utf8mb4_unicode_ci\" for utf8mb4"),
            );
        }
    }
    let mut users = BTreeSet::new();
    for (i, u) in s.users.iter().enumerate() {
        if !valid_ident(&u.name) {
            cx.error(&format!("users[{i}].name"), format!("invalid user name `{}`", u.name), Some(ident_help));
        } else if !users.insert((u.name.as_str(), u.host.as_str())) {
            cx.error(
                &format!("users[{i}].name"),
                format!("user `{}`@`{}` is declared twice", u.name, u.host),
                Some("one entry per account; list all its grants there"),
            );
        }
        if !valid_host(&u.host) {
            cx.error(
                &format!("users[{i}].host"),
                format!("invalid host `{}`", u.host),
                Some("\"%\" (anywhere), \"localhost\", an address, or a pattern such as \"10.%\""),
            );
        }
        for (j, g) in u.grants.iter().enumerate() {
            let at = format!("users[{i}].grants[{j}]");
            let global = g.database == "*";
            if !global && !dbs.contains(g.database.as_str()) {
                let help = match crate::diag::did_you_mean(&g.database, dbs.iter().copied()) {
                    Some(d) => format!("did you mean `{d}`?"),
                    None => "declare it under `databases`, or use \"*\" for all databases".to_string(),
                };
                cx.error(
                    &format!("{at}.database"),
                    format!("grant on database `{}`, which is not declared", g.database),
                    Some(&help),
                );
            }
            if g.privileges.is_empty() {
                cx.error(&format!("{at}.privileges"), "a grant needs at least one privilege", None);
            }
            for (k, p) in g.privileges.iter().enumerate() {
                let n = norm_privilege(p);
                let known = DB_PRIVILEGES.contains(&n.as_str()) || (global && GLOBAL_PRIVILEGES.contains(&n.as_str()));
                if !known {
                    let help = if GLOBAL_PRIVILEGES.contains(&n.as_str()) {
                        format!("{n} is a server-wide privilege: grant it on database \"*\"")
                    } else {
                        format!("allowed: {}", DB_PRIVILEGES.join(", "))
                    };
                    cx.error(&format!("{at}.privileges[{k}]"), format!("unknown privilege `{p}`"), Some(&help));
                }
            }
        }
    }
    for (k, v) in &s.config {
        let key_ok = !k.is_empty() && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !key_ok {
            cx.error(
                &format!("config.{k}"),
                format!("invalid option name `{k}`"),
                Some("letters, digits, `_` and `-`, e.g. \"max_allowed_packet\""),
            );
        }
        if v.chars().any(char::is_control) {
            cx.error(
                &format!("config.{k}"),
                format!("the value of `{k}` contains a line break or control character"),
                None,
            );
        }
    }
}
