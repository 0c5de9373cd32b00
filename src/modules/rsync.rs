//! rsync: the rsync daemon (Debian's `rsync`, 3.5 on bookworm and trixie).
//!
//! Renders /etc/rsyncd.conf with one section per module and /etc/rsyncd.secrets
//! (0600) with the users' passwords as secrets. Each module's folder is a volume
//! (writable modules: owned by the module's uid:gid). The daemon re-reads both files
//! on every connection, so a changed file needs neither a reload nor a restart: the
//! service lists no files in `uses`. What only a restart applies (the port) is on its
//! command line, so changing it changes the service itself.

use super::{Ctx, Services};
use crate::vocab::plan::ServiceRes;
use crate::vocab::text::Text;
use crate::vocab::values::Mode;
use crate::vocab::values::{AbsPath, Port, Proto, SecretRef};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fmt::Write;
use std::net::IpAddr;

const CONFIG: &str = "/etc/rsyncd.conf";
const SECRETS: &str = "/etc/rsyncd.secrets";
const RUN_DIR: &str = "/run/rsyncd";

/// rsync daemon settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct RsyncSettings {
    /// TCP port of the daemon.
    pub port: Port,
    /// Most simultaneous clients of each module; 0 (default): no limit.
    pub max_connections: u32,
    /// Modules (shared folders) the daemon offers, e.g. `rsync://host/<name>/`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub modules: Vec<RsyncModule>,
    /// Users that modules with `users` accept, each with a password secret.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<RsyncUser>,
}

impl Default for RsyncSettings {
    fn default() -> Self {
        RsyncSettings { port: Port(873), max_connections: 0, modules: Vec::new(), users: Vec::new() }
    }
}

/// One rsync module: a folder offered under a name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RsyncModule {
    /// Module name as clients write it: letters, digits, `.`, `_` and `-`.
    pub name: String,
    /// Folder of the module; default /srv/rsync/<name>.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<AbsPath>,
    /// Description shown when clients list the modules.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub comment: String,
    /// Clients may only download (default true); false lets them upload.
    #[serde(default = "yes")]
    pub read_only: bool,
    /// Users allowed in (declared under `users`); empty: anyone, without a password.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<String>,
    /// Volume holding the folder; default "rsync-<name>". "" when another module or a
    /// `mounts` entry provides the folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<String>,
    /// User the transfer runs as (owner of uploaded files).
    #[serde(default = "nobody")]
    pub uid: String,
    /// Group the transfer runs as.
    #[serde(default = "nogroup")]
    pub gid: String,
    /// Clients allowed in: addresses, networks ("10.0.0.0/8") or host name patterns;
    /// empty: everyone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts_allow: Vec<String>,
}

fn yes() -> bool {
    true
}
fn nobody() -> String {
    "nobody".into()
}
fn nogroup() -> String {
    "nogroup".into()
}

/// A user of authenticated modules.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RsyncUser {
    /// User name (rsync's own, not a system account).
    pub name: String,
    /// Password, e.g. { secret = "rsync-backup" }.
    pub password: SecretRef,
}

fn is_word(s: &str, extra: &[u8]) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || extra.contains(&b))
}

/// An address, network or host name pattern for `hosts allow`.
fn valid_host_pattern(h: &str) -> bool {
    if let Some((a, len)) = h.split_once('/') {
        let max = match a.parse::<IpAddr>() {
            Ok(IpAddr::V4(_)) => 32,
            Ok(IpAddr::V6(_)) => 128,
            Err(_) => return false,
        };
        // rsync also takes a dotted netmask after the slash.
        return len.parse::<u8>().is_ok_and(|l| l <= max) || len.parse::<std::net::Ipv4Addr>().is_ok();
    }
    h.parse::<IpAddr>().is_ok() || is_word(h, b".-*?")
}

/// A config value must stay on its line and not continue onto the next one.
fn plain_value(s: &str) -> bool {
    !s.chars().any(char::is_control) && !s.ends_with('\\')
}

pub fn compile(s: &RsyncSettings, _all: &Services, cx: &mut Ctx) {
    cx.package("rsync");
    let mut users = BTreeSet::new();
    let mut secrets = Text::new();
    for (i, u) in s.users.iter().enumerate() {
        if !is_word(&u.name, b"._-") {
            let msg = format!("invalid user name `{}`", u.name);
            cx.error(&format!("users[{i}].name"), msg, Some("use letters, digits, `.`, `_` and `-`"));
        } else if !users.insert(u.name.as_str()) {
            cx.error(&format!("users[{i}].name"), format!("user `{}` is defined twice", u.name), None);
        } else {
            secrets.push(format!("{}:", u.name));
            secrets.append(cx.secret(&u.password));
            secrets.push("\n");
        }
    }

    let mut conf = String::from("# Rendered by container (rsync module).\n");
    let _ = writeln!(conf, "port = {}", s.port.0);
    conf.push_str(
        "use chroot = yes\n# Opened before chroot; goes to the supervisor's log.\nlog file = /proc/self/fd/2\n",
    );
    let by_name =
        s.modules.iter().flat_map(|m| &m.hosts_allow).any(|h| h.parse::<IpAddr>().is_err() && is_word(h, b".-*?"));
    if !by_name {
        conf.push_str(
            "# No host name patterns in `hosts allow`: skip reverse DNS on every connection.\nreverse lookup = no\n",
        );
    }
    if s.max_connections > 0 {
        let _ = writeln!(conf, "max connections = {}\nlock file = {RUN_DIR}/rsyncd.lock", s.max_connections);
    }

    let mut names = BTreeSet::new();
    for (i, m) in s.modules.iter().enumerate() {
        let at = format!("modules[{i}]");
        if !is_word(&m.name, b"._-") || m.name.eq_ignore_ascii_case("global") {
            let help = "use letters, digits, `.`, `_` and `-` (not \"global\")";
            cx.error(&format!("{at}.name"), format!("invalid module name `{}`", m.name), Some(help));
            continue;
        }
        if !names.insert(m.name.as_str()) {
            cx.error(&format!("{at}.name"), format!("module `{}` is defined twice", m.name), None);
            continue;
        }
        let path = m.path.as_ref().map_or_else(|| format!("/srv/rsync/{}", m.name), |p| p.0.clone());
        if !plain_value(&path) || path == "/" {
            cx.error(&format!("{at}.path"), format!("invalid module path `{path}`"), Some("use a folder other than /"));
        }
        if !plain_value(&m.comment) {
            let help = "write one line without control characters or a trailing `\\`";
            cx.error(&format!("{at}.comment"), "invalid comment", Some(help));
        }
        for (field, v) in [("uid", &m.uid), ("gid", &m.gid)] {
            if !is_word(v, b"_-") {
                let msg = format!("invalid {field} `{v}`");
                cx.error(&format!("{at}.{field}"), msg, Some("use a user or group name of the container, or a number"));
            }
        }
        for (j, u) in m.users.iter().enumerate() {
            if !users.contains(u.as_str()) {
                let declared: Vec<&str> = users.iter().copied().collect();
                let help = if declared.is_empty() {
                    format!(
                        "declare it: [[services.rsync.users]] name = \"{u}\", password = {{ secret = \"rsync-{u}\" }}"
                    )
                } else {
                    format!("declared users: {}", declared.join(", "))
                };
                let msg = format!("auth user `{u}` is not declared in `users`");
                cx.error(&format!("{at}.users[{j}]"), msg, Some(&help));
            }
        }
        for (j, h) in m.hosts_allow.iter().enumerate() {
            if !valid_host_pattern(h) {
                let msg = format!("invalid host `{h}`");
                let help = "use an address, a network such as \"10.0.0.0/8\", or a host name pattern such as \"*.lan\"";
                cx.error(&format!("{at}.hosts_allow[{j}]"), msg, Some(help));
            }
        }

        let _ = writeln!(conf, "\n[{}]\n\tpath = {path}", m.name);
        if !m.comment.is_empty() {
            let _ = writeln!(conf, "\tcomment = {}", m.comment);
        }
        let _ = writeln!(conf, "\tread only = {}", if m.read_only { "yes" } else { "no" });
        let _ = writeln!(conf, "\tuid = {}\n\tgid = {}", m.uid, m.gid);
        if !m.users.is_empty() {
            let _ = writeln!(conf, "\tauth users = {}\n\tsecrets file = {SECRETS}", m.users.join(", "));
        }
        if !m.hosts_allow.is_empty() {
            let _ = writeln!(conf, "\thosts allow = {}", m.hosts_allow.join(" "));
        }

        let volume = m.volume.clone().unwrap_or_else(|| format!("rsync-{}", m.name));
        if volume.is_empty() {
            continue;
        }
        let first = volume.as_bytes()[0];
        if !(first.is_ascii_lowercase() || first.is_ascii_digit()) || !is_word(&volume, b"._-") {
            let help = "use lowercase letters, digits, `.`, `_` and `-`, or \"\" for no volume";
            cx.error(&format!("{at}.volume"), format!("invalid volume name `{volume}`"), Some(help));
            continue;
        }
        // Writable modules need a folder the transfer user may write to.
        let owner = if m.read_only { "root:root".to_string() } else { format!("{}:{}", m.uid, m.gid) };
        cx.volume(&path, &volume, Some(&owner), Some(Mode(0o755)));
    }

    cx.file(CONFIG, conf);
    if !users.is_empty() {
        cx.file_with(SECRETS, secrets, Mode(0o600), "root:root");
    }
    if s.max_connections > 0 {
        cx.tmpfs(RUN_DIR, Some(1 << 20), Some("root:root"), Some(Mode(0o755)));
    }
    cx.listen(Proto::Tcp, s.port.0, "rsyncd", "port");
    let port = format!("--port={}", s.port.0);
    let svc = ServiceRes::new(&["rsync", "--daemon", "--no-detach", &format!("--config={CONFIG}"), &port])
        .ready_tcp(s.port.0);
    cx.service("rsyncd", svc);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::compile::{test_plan, try_test_plan};

    const SPEC: &str = r#"name = "r"
[services.rsync]
max_connections = 4
[[services.rsync.modules]]
name = "public"
comment = "Public files"
hosts_allow = ["10.0.0.0/8", "192.168.1.7"]
[[services.rsync.modules]]
name = "backup"
path = "/srv/backup"
read_only = false
users = ["backup"]
uid = "backup"
gid = "backup"
[[services.rsync.users]]
name = "backup"
password = { secret = "rsync-backup" }
"#;

    #[test]
    fn rsyncd_conf_has_modules_with_auth_users() {
        let plan = test_plan(SPEC);
        let conf = plan.files[CONFIG].content.redacted();
        for want in [
            "port = 873\n",
            "use chroot = yes\n",
            "log file = /proc/self/fd/2\n",
            "reverse lookup = no\n",
            "max connections = 4\nlock file = /run/rsyncd/rsyncd.lock\n",
            "\n[public]\n\tpath = /srv/rsync/public\n\tcomment = Public files\n\tread only = yes\n\tuid = nobody\n\tgid = nogroup\n\thosts allow = 10.0.0.0/8 192.168.1.7\n",
            "\n[backup]\n\tpath = /srv/backup\n\tread only = no\n\tuid = backup\n\tgid = backup\n\tauth users = backup\n\tsecrets file = /etc/rsyncd.secrets\n",
        ] {
            assert!(conf.contains(want), "missing {want:?} in\n{conf}");
        }
        assert!(!conf.split("[backup]").next().unwrap_or("").contains("auth users"), "{conf}");
        let svc = &plan.services["rsyncd"];
        assert_eq!(svc.command, ["rsync", "--daemon", "--no-detach", "--config=/etc/rsyncd.conf", "--port=873"]);
        assert!(svc.reload.is_none() && svc.uses.is_empty());
        assert_eq!(plan.ports["tcp/873"], "rsyncd");
    }

    #[test]
    fn secrets_file_is_private_and_redacted() {
        let plan = test_plan(SPEC);
        let f = &plan.files[SECRETS];
        assert_eq!(f.content.redacted(), "backup:(secret)\n");
        assert_eq!((f.mode.to_string().as_str(), f.owner.as_str()), ("0600", "root:root"));
        assert!(plan.secrets.contains("rsync-backup"));
        assert!(serde_json::to_string(&plan).unwrap().contains(r#"{"secret":"rsync-backup"}"#));
    }

    #[test]
    fn module_folders_are_volumes_owned_by_the_writer() {
        let plan = test_plan(SPEC);
        let public = &plan.mounts["/srv/rsync/public"];
        assert_eq!(public.source.as_deref(), Some("rsync-public"));
        assert_eq!(public.owner.as_deref(), Some("root:root"));
        let backup = &plan.mounts["/srv/backup"];
        assert_eq!(backup.source.as_deref(), Some("rsync-backup"));
        assert_eq!(backup.owner.as_deref(), Some("backup:backup"));
        assert!(plan.mounts.contains_key("/run/rsyncd"));

        let plan =
            test_plan("name = \"r\"\n[[services.rsync.modules]]\nname = \"www\"\npath = \"/var/www\"\nvolume = \"\"\n");
        assert!(!plan.mounts.contains_key("/var/www"));
        assert!(!plan.files.contains_key(SECRETS));
        assert!(plan.files[CONFIG].content.redacted().contains("[www]\n\tpath = /var/www\n"));
    }

    #[test]
    fn undeclared_auth_user_is_pinned() {
        let err = try_test_plan(
            "name = \"r\"\n[[services.rsync.modules]]\nname = \"backup\"\nread_only = false\nusers = [\"bob\"]\n",
        )
        .unwrap_err()
        .brief();
        assert_eq!(err, ["test.toml:5:10: auth user `bob` is not declared in `users`"]);
    }

    #[test]
    fn bad_names_and_hosts_are_refused() {
        let err = try_test_plan(
            "name = \"r\"\n[[services.rsync.modules]]\nname = \"a b\"\n[[services.rsync.modules]]\nname = \"ok\"\n\
             hosts_allow = [\"10.0.0.0/99\"]\ncomment = \"x\\ny\"\n",
        )
        .unwrap_err()
        .brief();
        assert!(err.iter().any(|e| e.starts_with("test.toml:3:8: invalid module name `a b`")), "{err:?}");
        assert!(err.iter().any(|e| e.starts_with("test.toml:6:16: invalid host `10.0.0.0/99`")), "{err:?}");
        assert!(err.iter().any(|e| e.starts_with("test.toml:7:11: invalid comment")), "{err:?}");
    }
}
