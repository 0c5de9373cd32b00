//! samba: Samba file server (Debian's `samba`: 4.17 on bookworm, 4.22 on trixie), standalone, SMB2/3 on 445.
//!
//! Renders /etc/samba/smb.conf; every share is a volume. Users become Unix accounts at
//! build time (no home, no shell) and get their Samba password from a secret through
//! `smbpasswd -a -s` at every start (idempotent: it sets the same password again).
//! Only smbd runs: nmbd (NetBIOS name service and browsing) is not needed for SMB2/3
//! clients that connect by address or DNS name, so NetBIOS is disabled altogether.
//! smbd writes its databases to /var/lib/samba (volume; passwords in ./private) and
//! locks, caches and logs to tmpfs.

use super::{Ctx, Services};
use crate::vocab::plan::{BuildStep, InitTask, ServiceRes};
use crate::vocab::text::Text;
use crate::vocab::values::SignalName;
use crate::vocab::values::{AbsPath, Mode, Proto, SecretRef};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fmt::Write;

const CONF: &str = "/etc/samba/smb.conf";
const STATE: &str = "/var/lib/samba";
const PRIVATE: &str = "/var/lib/samba/private";

/// Samba settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct SambaSettings {
    /// Workgroup (Windows domain name shown to clients).
    pub workgroup: String,
    /// Server description shown to clients.
    pub server_string: String,
    /// NetBIOS name of the server (at most 15 characters); default: the host name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub netbios_name: Option<String>,
    /// Unix account that guests act as.
    pub guest_account: String,
    /// "bad user": logins with an unknown user name become guests (needed for guest
    /// shares); "never": unknown users are refused.
    pub map_to_guest: MapToGuest,
    /// Samba users; each also becomes a Unix account without login.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<SambaUser>,
    /// Shares.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub shares: Vec<Share>,
}

impl Default for SambaSettings {
    fn default() -> Self {
        SambaSettings {
            workgroup: "WORKGROUP".into(),
            server_string: "Samba file server".into(),
            netbios_name: None,
            guest_account: "nobody".into(),
            map_to_guest: MapToGuest::BadUser,
            users: Vec::new(),
            shares: Vec::new(),
        }
    }
}

/// What happens to logins with an unknown user name.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum MapToGuest {
    /// Refuse them.
    #[serde(rename = "never")]
    Never,
    /// Treat them as guests.
    #[default]
    #[serde(rename = "bad user")]
    BadUser,
}

/// A Samba user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SambaUser {
    /// User name (lowercase letters, digits, `_`, `-`; up to 32 characters).
    pub name: String,
    /// Password, e.g. { secret = "samba-alice" }.
    pub password: SecretRef,
}

/// A share.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Share {
    /// Share name as clients see it (letters, digits, `.`, `_`, `-`).
    pub name: String,
    /// Folder shared; default /srv/samba/<name>.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<AbsPath>,
    /// Description shown to clients.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// Clients cannot write (except users in `write_list`).
    #[serde(default = "yes")]
    pub read_only: bool,
    /// Clients may connect without a password, as `guest_account`.
    #[serde(default)]
    pub guest_ok: bool,
    /// Listed when clients browse the server.
    #[serde(default = "yes")]
    pub browseable: bool,
    /// Only these users may connect (declared under `users`); empty: any user.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub valid_users: Vec<String>,
    /// These users may write even when the share is read-only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub write_list: Vec<String>,
    /// Volume holding the folder; default "share-<name>".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<String>,
    /// Permission bits of new files, e.g. "0664".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create_mask: Option<Mode>,
    /// Permission bits of new folders, e.g. "2775".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub directory_mask: Option<Mode>,
}

fn yes() -> bool {
    true
}

/// Accounts of Debian's base system that a Samba user must not replace.
const SYSTEM_USERS: [&str; 20] = [
    "root",
    "daemon",
    "bin",
    "sys",
    "sync",
    "games",
    "man",
    "lp",
    "mail",
    "news",
    "uucp",
    "proxy",
    "www-data",
    "backup",
    "list",
    "irc",
    "_apt",
    "nobody",
    "systemd-network",
    "messagebus",
];

fn valid_user(n: &str) -> bool {
    let b = n.as_bytes();
    !b.is_empty()
        && b.len() <= 32
        && (b[0].is_ascii_lowercase() || b[0] == b'_')
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_' || *c == b'-')
}

fn valid_share(n: &str) -> bool {
    !n.is_empty() && n.len() <= 64 && n.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// Values written into smb.conf as they are: one line, no section brackets at the start.
fn plain(s: &str) -> bool {
    !s.chars().any(|c| c.is_control()) && !s.starts_with('[') && s.trim() == s
}

pub fn compile(s: &SambaSettings, _all: &Services, cx: &mut Ctx) {
    cx.package("samba");
    for (field, v) in [("workgroup", &s.workgroup), ("server_string", &s.server_string)] {
        if !plain(v) || v.is_empty() {
            cx.error(
                field,
                format!("`{v}` cannot be written to smb.conf"),
                Some("use one line of text without surrounding spaces"),
            );
        }
    }
    if s.workgroup.len() > 15 {
        cx.error("workgroup", format!("workgroup `{}` is longer than 15 characters", s.workgroup), None);
    }
    if let Some(n) = &s.netbios_name {
        if n.is_empty() || n.len() > 15 || !n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            cx.error("netbios_name", format!("invalid NetBIOS name `{n}`"), Some("use 1-15 letters, digits and `-`"));
        }
    }
    if !valid_user(&s.guest_account) {
        cx.error("guest_account", format!("invalid user name `{}`", s.guest_account), None);
    }

    let mut users = BTreeSet::new();
    let svc = ServiceRes::new(&["smbd", "--foreground", "--no-process-group", "--debug-stdout", "--configfile", CONF])
        .ready_tcp(445)
        .reload_signal(SignalName::hup())
        .uses(CONF);
    for (i, u) in s.users.iter().enumerate() {
        let at = format!("users[{i}].name");
        if !valid_user(&u.name) {
            cx.error(
                &at,
                format!("invalid user name `{}`", u.name),
                Some("use up to 32 lowercase letters, digits, `_` and `-`, starting with a letter"),
            );
            continue;
        }
        if SYSTEM_USERS.contains(&u.name.as_str()) || u.name == s.guest_account {
            let what = if u.name == s.guest_account { "the guest account" } else { "a system account" };
            cx.error(&at, format!("`{}` is {what}", u.name), Some("choose another user name"));
            continue;
        }
        if !users.insert(u.name.clone()) {
            cx.error(&at, format!("user `{}` is declared twice", u.name), None);
            continue;
        }
        cx.step(BuildStep::Run(
            ["useradd", "--no-create-home", "--user-group", "--shell", "/usr/sbin/nologin", &u.name]
                .map(str::to_string)
                .to_vec(),
        ));
        let pw = cx.secret(&u.password);
        let mut stdin = Text::new();
        for _ in 0..2 {
            stdin.append(pw.clone());
            stdin.push("\n");
        }
        cx.init(&format!("samba-user-{}", u.name), InitTask::new(&["smbpasswd", "-a", "-s", &u.name]).stdin(stdin));
    }

    let mut conf = global(s);
    let mut names = BTreeSet::new();
    for (i, sh) in s.shares.iter().enumerate() {
        let at = format!("shares[{i}]");
        if !valid_share(&sh.name)
            || ["global", "homes", "printers", "print$"].contains(&sh.name.to_ascii_lowercase().as_str())
        {
            cx.error(
                &format!("{at}.name"),
                format!("invalid share name `{}`", sh.name),
                Some("use letters, digits, `.`, `_` and `-` (not global, homes or printers)"),
            );
            continue;
        }
        if !names.insert(sh.name.to_ascii_lowercase()) {
            cx.error(&format!("{at}.name"), format!("share `{}` is defined twice", sh.name), None);
            continue;
        }
        let mut ok = true;
        for (field, list) in [("valid_users", &sh.valid_users), ("write_list", &sh.write_list)] {
            for (j, u) in list.iter().enumerate() {
                if !users.contains(u) {
                    ok = false;
                    cx.error(
                        &format!("{at}.{field}[{j}]"),
                        format!("unknown user `{u}`"),
                        Some("declare the user under services.samba.users"),
                    );
                }
            }
        }
        if let Some(c) = &sh.comment {
            if !plain(c) {
                ok = false;
                cx.error(&format!("{at}.comment"), "the comment must be one line without surrounding spaces", None);
            }
        }
        let path = sh.path.as_ref().map_or_else(|| format!("/srv/samba/{}", sh.name), |p| p.0.clone());
        if path == "/" || path.starts_with("/etc") || path.starts_with(STATE) || path.starts_with("/run") {
            ok = false;
            cx.error(
                &format!("{at}.path"),
                format!("`{path}` cannot hold a share"),
                Some("use a folder of its own, e.g. under /srv/samba"),
            );
        }
        let volume = sh.volume.clone().unwrap_or_else(|| format!("share-{}", sh.name.to_ascii_lowercase()));
        if !crate::vocab::values::relative_inside(&volume) {
            ok = false;
            cx.error(
                &format!("{at}.volume"),
                format!("invalid volume name `{volume}`"),
                Some("use a plain name such as \"share-public\""),
            );
        }
        if !ok {
            continue;
        }
        let (owner, writable) = share_owner(sh, s);
        cx.volume(
            &path,
            &volume,
            Some(&format!("{owner}:{}", group_of(&owner))),
            Some(Mode(if writable { 0o2775 } else { 0o755 })),
        );
        conf.push_str(&share_section(sh, &path, &owner, writable));
    }
    cx.file(CONF, conf);
    cx.volume(STATE, "samba", Some("root:root"), Some(Mode(0o755)));
    cx.volume(PRIVATE, "samba-private", Some("root:root"), Some(Mode(0o700)));
    cx.tmpfs("/run/samba", Some(16 << 20), Some("root:root"), Some(Mode(0o755)));
    cx.tmpfs("/var/cache/samba", Some(16 << 20), Some("root:root"), Some(Mode(0o755)));
    cx.tmpfs("/var/log/samba", Some(16 << 20), Some("root:root"), Some(Mode(0o750)));
    cx.listen(Proto::Tcp, 445, "smbd", "");
    cx.service("smbd", svc);
}

fn group_of(user: &str) -> &str {
    if user == "nobody" {
        "nogroup"
    } else {
        user
    }
}

/// Who owns a share's folder and whether anyone may write. Writers all act as the
/// owner (`force user`), so files stay accessible to every user of the share.
fn share_owner(sh: &Share, s: &SambaSettings) -> (String, bool) {
    let writable = !sh.read_only || !sh.write_list.is_empty();
    let owner = if sh.guest_ok {
        s.guest_account.clone()
    } else {
        let first = if sh.read_only { sh.write_list.first() } else { None };
        first.or(sh.valid_users.first()).or(sh.write_list.first()).cloned().unwrap_or_else(|| s.guest_account.clone())
    };
    (owner, writable)
}

fn yn(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

fn global(s: &SambaSettings) -> String {
    let mut g = String::from("# Rendered by container (samba module).\n[global]\n");
    let _ = writeln!(g, "\tworkgroup = {}", s.workgroup);
    let _ = writeln!(g, "\tserver string = {}", s.server_string);
    if let Some(n) = &s.netbios_name {
        let _ = writeln!(g, "\tnetbios name = {n}");
    }
    g.push_str("\tserver role = standalone server\n\tsecurity = user\n\tpassdb backend = tdbsam\n");
    let _ = writeln!(g, "\tprivate dir = {PRIVATE}");
    let _ = writeln!(
        g,
        "\tmap to guest = {}",
        match s.map_to_guest {
            MapToGuest::Never => "never",
            MapToGuest::BadUser => "bad user",
        }
    );
    let _ = writeln!(g, "\tguest account = {}", s.guest_account);
    g.push_str(
        "\t# SMB2/3 over TCP 445 only: no NetBIOS, so nmbd is not run.\n\
         \tsmb ports = 445\n\tdisable netbios = yes\n\
         \t# smbd runs with --debug-stdout: the log goes to the supervisor.\n\tlog level = 1\n\
         \t# No printing.\n\tload printers = no\n\tprinting = bsd\n\tprintcap name = /dev/null\n\
         \tdisable spoolss = yes\n",
    );
    g
}

fn share_section(sh: &Share, path: &str, owner: &str, writable: bool) -> String {
    let mut o = format!("\n[{}]\n\tpath = {path}\n", sh.name);
    if let Some(c) = &sh.comment {
        let _ = writeln!(o, "\tcomment = {c}");
    }
    let _ = writeln!(o, "\tread only = {}", yn(sh.read_only));
    let _ = writeln!(o, "\tguest ok = {}", yn(sh.guest_ok));
    let _ = writeln!(o, "\tbrowseable = {}", yn(sh.browseable));
    if !sh.valid_users.is_empty() {
        let _ = writeln!(o, "\tvalid users = {}", sh.valid_users.join(" "));
    }
    if !sh.write_list.is_empty() {
        let _ = writeln!(o, "\twrite list = {}", sh.write_list.join(" "));
    }
    if writable {
        let _ = writeln!(o, "\tforce user = {owner}\n\tforce group = {}", group_of(owner));
    }
    if let Some(m) = &sh.create_mask {
        let _ = writeln!(o, "\tcreate mask = {m}");
    }
    if let Some(m) = &sh.directory_mask {
        let _ = writeln!(o, "\tdirectory mask = {m}");
    }
    o
}

#[cfg(test)]
mod tests {
    use crate::plan::compile::{test_plan, try_test_plan};

    const SPEC: &str = r#"name = "files"
[services.samba]
workgroup = "HOME"
[[services.samba.users]]
name = "alice"
password = { secret = "samba-alice" }
[[services.samba.shares]]
name = "public"
comment = "Read-only for everyone"
guest_ok = true
[[services.samba.shares]]
name = "alice"
read_only = false
browseable = false
valid_users = ["alice"]
create_mask = "0660"
"#;

    #[test]
    fn smb_conf_has_the_shares_with_their_flags() {
        let plan = test_plan(SPEC);
        let conf = plan.files["/etc/samba/smb.conf"].content.redacted();
        assert!(conf.contains("\tworkgroup = HOME\n"), "{conf}");
        assert!(conf.contains("\tmap to guest = bad user\n"), "{conf}");
        assert!(conf.contains("\tdisable netbios = yes\n"), "{conf}");
        assert!(conf.contains(
            "[public]\n\tpath = /srv/samba/public\n\tcomment = Read-only for everyone\n\tread only = yes\n\tguest ok = yes\n\tbrowseable = yes\n"
        ), "{conf}");
        assert!(conf.contains(
            "[alice]\n\tpath = /srv/samba/alice\n\tread only = no\n\tguest ok = no\n\tbrowseable = no\n\tvalid users = alice\n\tforce user = alice\n\tforce group = alice\n\tcreate mask = 0660\n"
        ), "{conf}");
        let public = &plan.mounts["/srv/samba/public"];
        assert_eq!(public.source.as_deref(), Some("share-public"));
        assert_eq!(public.owner.as_deref(), Some("nobody:nogroup"));
        let private = &plan.mounts["/srv/samba/alice"];
        assert_eq!(
            (private.owner.as_deref(), private.mode.clone()),
            (Some("alice:alice"), Some(crate::vocab::values::Mode(0o2775)))
        );
        let svc = &plan.services["smbd"];
        assert_eq!(svc.command[..4], ["smbd", "--foreground", "--no-process-group", "--debug-stdout"]);
        assert!(plan.ports.contains_key("tcp/445"));
    }

    #[test]
    fn users_get_an_account_and_a_password_from_their_secret() {
        let plan = test_plan(SPEC);
        let want = crate::vocab::plan::BuildStep::Run(
            ["useradd", "--no-create-home", "--user-group", "--shell", "/usr/sbin/nologin", "alice"]
                .map(String::from)
                .to_vec(),
        );
        assert!(plan.layer.steps.contains(&want));
        let task = &plan.init["samba-user-alice"];
        assert_eq!(task.command, ["smbpasswd", "-a", "-s", "alice"]);
        let stdin = task.stdin.as_ref().unwrap();
        assert_eq!(stdin.redacted(), "(secret)\n(secret)\n");
        assert_eq!(stdin.secrets().collect::<Vec<_>>(), ["samba-alice", "samba-alice"]);
        assert!(plan.secrets.contains("samba-alice"));
        assert!(plan.mounts.contains_key("/var/lib/samba/private"));
        assert!(plan.mounts.contains_key("/run/samba"));
    }

    #[test]
    fn a_share_with_an_unknown_user_is_refused() {
        let spec = SPEC.replace("valid_users = [\"alice\"]", "valid_users = [\"alice\", \"bob\"]");
        let err = try_test_plan(&spec).unwrap_err();
        let brief = err.brief().join("\n");
        assert!(brief.contains("test.toml:15:25: unknown user `bob`"), "{brief}");
    }
}
