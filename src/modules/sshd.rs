//! sshd: OpenSSH server (Debian's `openssh-server`: 9.2 on bookworm, 10.0 on trixie).
//!
//! Renders our full /etc/ssh/sshd_config and one authorized_keys file per user under
//! /etc/ssh/authorized_keys (home folders are in the read-only root). Host keys are made
//! by init tasks on first start into the volume "ssh-host-keys", so they survive the
//! container being re-created and clients keep trusting it.
//!
//! Root password: /etc/shadow lives in the read-only root and cannot be rendered (it
//! needs a hash of a secret the plan never sees), and chpasswd cannot edit it in place
//! (it locks and renames files next to it in /etc). The init task `sshd-root-password`
//! (root, at every start, "root:<secret>" on its standard input) therefore copies
//! passwd, group, shadow and login.defs into the tmpfs /run/root-password/etc, runs
//! `chpasswd --root /run/root-password` on the copy, and binds the new shadow read-only
//! over /etc/shadow in the container's mount namespace (undoing the previous bind
//! first, so reruns do not stack). Bookworm's chpasswd has no `--prefix`. The task
//! needs CAP_SYS_ADMIN in the container's mount namespace, as container root has.

use super::{Ctx, Services};
use crate::vocab::plan::{BuildStep, InitTask, ServiceRes};
use crate::vocab::text::Text;
use crate::vocab::values::{AbsPath, Port, Proto, SecretRef};
use crate::vocab::values::{Mode, SignalName};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::net::IpAddr;

#[path = "sshd_conf.rs"]
mod conf;
pub(super) use conf::base64_decode;
pub use conf::check_public_key;
use conf::{keys_file, sshd_config};

const CONFIG: &str = "/etc/ssh/sshd_config";
const KEYS_DIR: &str = "/etc/ssh/authorized_keys";
const HOST_KEYS: &str = "/var/lib/ssh-host-keys";
/// Sets root's password (stdin "root:<password>") on a tmpfs copy of /etc/shadow bound
/// over the read-only original.
const ROOT_PASSWORD_SCRIPT: &str = concat!(
    "set -e; d=/run/root-password; ",
    "if mountpoint -q /etc/shadow; then umount /etc/shadow; fi; ",
    "rm -rf \"$d\"; mkdir -m 0700 -p \"$d/etc\"; ",
    "cp -p /etc/passwd /etc/group /etc/shadow /etc/login.defs \"$d/etc/\"; ",
    "chpasswd --crypt-method SHA512 --root \"$d\"; ",
    "mount --bind \"$d/etc/shadow\" /etc/shadow; mount -o remount,bind,ro /etc/shadow",
);
/// Accounts of a Debian base system and its daemons: not available as login users.
#[rustfmt::skip]
const RESERVED_USERS: &[&str] = &[
    "root", "daemon", "bin", "sys", "sync", "games", "man", "lp", "mail", "news", "uucp", "proxy", "www-data",
    "backup", "list", "irc", "gnats", "nobody", "_apt", "sshd", "messagebus", "mysql", "bind", "tinc",
];

/// OpenSSH server settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct SshdSettings {
    /// TCP port sshd listens on.
    pub port: Port,
    /// Addresses to listen on, e.g. ["100.72.0.3"]; empty (default): all addresses.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub listen_addresses: Vec<IpAddr>,
    /// Whether root may log in: "no", "prohibit-password" (keys only, default) or "yes".
    pub permit_root_login: PermitRootLogin,
    /// Allow logins with a password (default false: keys only).
    pub password_authentication: bool,
    /// Public keys that may log in as root: lines of a `.pub` file, e.g.
    /// "ssh-ed25519 AAAAC3Nza... alice@laptop" (types ssh-ed25519, ssh-rsa, ecdsa-sha2-*, sk-*).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub authorized_keys: Vec<String>,
    /// Login users created in the image (no password; they log in with their keys).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<SshUser>,
    /// Password for root, e.g. { secret = "root-password" }: for logins over ssh when
    /// `password_authentication` and `permit_root_login = "yes"`, otherwise for the console.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub root_password: Option<SecretRef>,
}

impl Default for SshdSettings {
    fn default() -> Self {
        SshdSettings {
            port: Port(22),
            listen_addresses: Vec::new(),
            permit_root_login: PermitRootLogin::ProhibitPassword,
            password_authentication: false,
            authorized_keys: Vec::new(),
            users: Vec::new(),
            root_password: None,
        }
    }
}

/// sshd's `PermitRootLogin`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum PermitRootLogin {
    /// Root may not log in.
    No,
    /// Root may log in with a key, never with a password (default).
    #[default]
    ProhibitPassword,
    /// Root may log in with a key or a password.
    Yes,
}

impl PermitRootLogin {
    fn keyword(self) -> &'static str {
        match self {
            PermitRootLogin::No => "no",
            PermitRootLogin::ProhibitPassword => "prohibit-password",
            PermitRootLogin::Yes => "yes",
        }
    }
}

/// A login user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SshUser {
    /// User name: lowercase letters, digits, `_` and `-`, starting with a letter or `_`.
    pub name: String,
    /// Public keys that may log in as this user (lines of a `.pub` file).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub authorized_keys: Vec<String>,
    /// Login shell.
    #[serde(default = "default_shell")]
    pub shell: AbsPath,
}

fn default_shell() -> AbsPath {
    AbsPath("/bin/bash".into())
}

pub fn compile(s: &SshdSettings, _all: &Services, cx: &mut Ctx) {
    // passwd (chpasswd) and mount (mount, mountpoint) serve the root password task.
    cx.packages(&["openssh-server", "openssh-sftp-server", "passwd", "mount"]);

    // Host keys: generated once into the volume, before any service starts.
    cx.volume(HOST_KEYS, "ssh-host-keys", Some("root:root"), Some(Mode(0o700)));
    let mut host_keys = Vec::new();
    for (kind, extra) in [("ed25519", &[][..]), ("rsa", &["-b", "3072"][..])] {
        let path = format!("{HOST_KEYS}/ssh_host_{kind}_key");
        let mut argv = vec!["ssh-keygen", "-q", "-t", kind];
        argv.extend_from_slice(extra);
        argv.extend_from_slice(&["-N", "", "-f", path.as_str()]);
        cx.init(&format!("sshd-host-key-{kind}"), InitTask::new(&argv).creates(&path));
        host_keys.push(path);
    }
    // Privilege separation directory, compiled into Debian's sshd.
    cx.tmpfs("/run/sshd", Some(1 << 20), Some("root:root"), Some(Mode(0o755)));

    // Authorized keys: one root-owned 0644 file per user (StrictModes accepts it).
    check_keys(cx, "authorized_keys", &s.authorized_keys);
    if !s.authorized_keys.is_empty() {
        cx.file(&format!("{KEYS_DIR}/root"), keys_file("root", &s.authorized_keys));
    }
    let mut seen = BTreeSet::new();
    for (i, u) in s.users.iter().enumerate() {
        let at = format!("users[{i}]");
        if !valid_user(&u.name) {
            cx.error(
                &format!("{at}.name"),
                format!("invalid user name `{}`", u.name),
                Some("use up to 32 lowercase letters, digits, `_` and `-`, starting with a letter or `_`"),
            );
            continue;
        }
        if RESERVED_USERS.contains(&u.name.as_str()) {
            let help = if u.name == "root" { "root's keys go in `authorized_keys`" } else { "choose another name" };
            cx.error(&format!("{at}.name"), format!("`{}` is a system account", u.name), Some(help));
            continue;
        }
        if !seen.insert(u.name.clone()) {
            cx.error(&format!("{at}.name"), format!("user `{}` is defined twice", u.name), None);
            continue;
        }
        check_keys(cx, &format!("{at}.authorized_keys"), &u.authorized_keys);
        // Password "*": no password login, but the account is not locked ("!"), which
        // sshd without PAM would refuse even for key logins.
        let argv = ["useradd", "--create-home", "--shell", u.shell.0.as_str(), "--password", "*", u.name.as_str()];
        cx.step(BuildStep::Run(argv.iter().map(|a| a.to_string()).collect()));
        if !u.authorized_keys.is_empty() {
            cx.file(&format!("{KEYS_DIR}/{}", u.name), keys_file(&u.name, &u.authorized_keys));
        }
    }

    if let Some(secret) = &s.root_password {
        // Runs at every start, so the password follows the secret (see the module
        // documentation for why it edits a copy of /etc/shadow).
        let mut line = Text::new().lit("root:");
        line.append(cx.secret(secret));
        line.push("\n");
        // The script bind-mounts the new shadow file over the read-only one: that
        // takes CAP_SYS_ADMIN (which also lets its seccomp filter allow mount). Only
        // this short task gets it; sshd itself keeps the default set.
        cx.init(
            "sshd-root-password",
            InitTask::new(&["sh", "-c", ROOT_PASSWORD_SCRIPT]).stdin(line).cap_add("SYS_ADMIN"),
        );
    }

    cx.file(CONFIG, sshd_config(s, &host_keys));
    cx.listen(Proto::Tcp, s.port.0, "sshd", "port");
    // authorized_keys files are read at each login: only the config needs a reload.
    let mut svc =
        ServiceRes::new(&["/usr/sbin/sshd", "-D", "-e", "-f", CONFIG]).reload_signal(SignalName::hup()).uses(CONFIG);
    // The supervisor probes 127.0.0.1 and ::1: only when sshd listens there.
    if s.listen_addresses.is_empty() || s.listen_addresses.iter().any(|a| a.is_loopback() || a.is_unspecified()) {
        svc = svc.ready_tcp(s.port.0);
    }
    cx.service("sshd", svc);
}

fn valid_user(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 32
        && (b[0].is_ascii_lowercase() || b[0] == b'_')
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_' || *c == b'-')
}

fn check_keys(cx: &mut Ctx, at: &str, keys: &[String]) {
    for (i, k) in keys.iter().enumerate() {
        if let Err(e) = check_public_key(k) {
            cx.error(
                &format!("{at}[{i}]"),
                format!("invalid public key: {e}"),
                Some(
                    "paste one line of a .pub file: `TYPE BASE64 [comment]` with TYPE ssh-ed25519, ssh-rsa, \
                     ecdsa-sha2-nistp256/384/521, sk-ssh-ed25519@openssh.com or sk-ecdsa-sha2-nistp256@openssh.com \
                     (authorized_keys options such as from= are not supported)",
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::compile::{test_plan, try_test_plan};

    const ED: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAICLgP6dHm6/jknbHsuL1KmT15+51qxp2FKY3TvN5MHZv alice@laptop";
    const EC: &str = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBBM+FDzQKMFb7PCfI36rU3icZw2wsSEzCz9xqVOKpFRIas1jYjj77z6Gpvz1+9f98w2Mo8bMog4+9FDNsnYsGxQ= e";

    #[test]
    fn sshd_config_points_at_persistent_host_keys_and_our_key_files() {
        let plan = test_plan(&format!(
            "name = \"s\"\n[services.sshd]\nport = 2222\nlisten_addresses = [\"::1\"]\nauthorized_keys = [\"{ED}\"]\n"
        ));
        let conf = plan.files[CONFIG].content.redacted();
        for want in [
            "Port 2222\n",
            "ListenAddress ::1\n",
            "HostKey /var/lib/ssh-host-keys/ssh_host_ed25519_key\n",
            "HostKey /var/lib/ssh-host-keys/ssh_host_rsa_key\n",
            "PermitRootLogin prohibit-password\n",
            "PasswordAuthentication no\n",
            "UsePAM no\n",
            "AuthorizedKeysFile /etc/ssh/authorized_keys/%u\n",
            "Subsystem sftp /usr/lib/openssh/sftp-server\n",
        ] {
            assert!(conf.contains(want), "missing {want:?} in\n{conf}");
        }
        let keys = &plan.files["/etc/ssh/authorized_keys/root"];
        assert!(keys.content.redacted().ends_with(&format!("\n{ED}\n")), "{}", keys.content);
        assert_eq!((keys.mode.to_string().as_str(), keys.owner.as_str()), ("0644", "root:root"));
        let gen = &plan.init["sshd-host-key-rsa"];
        assert_eq!(
            gen.command.join(" "),
            "ssh-keygen -q -t rsa -b 3072 -N  -f /var/lib/ssh-host-keys/ssh_host_rsa_key"
        );
        assert_eq!(gen.creates.as_deref(), Some("/var/lib/ssh-host-keys/ssh_host_rsa_key"));
        assert_eq!(plan.mounts["/var/lib/ssh-host-keys"].source.as_deref(), Some("ssh-host-keys"));
        assert!(plan.mounts.contains_key("/run/sshd"));
        let svc = &plan.services["sshd"];
        assert_eq!(svc.command, ["/usr/sbin/sshd", "-D", "-e", "-f", CONFIG]);
        assert_eq!(svc.ready, Some(crate::vocab::kinds::Ready::Tcp(Port(2222))), "::1 is probed");
        let other = test_plan("name = \"s\"\n[services.sshd]\nlisten_addresses = [\"192.0.2.1\"]\n");
        assert_eq!(other.services["sshd"].ready, None, "the supervisor cannot probe 192.0.2.1");
        assert_eq!(plan.ports["tcp/2222"], "sshd");
    }

    #[test]
    fn users_are_created_in_the_image_and_get_their_key_files() {
        let plan = test_plan(&format!(
            "name = \"s\"\n[[services.sshd.users]]\nname = \"deploy\"\nauthorized_keys = [\"{EC}\"]\nshell = \"/bin/sh\"\n"
        ));
        let step = BuildStep::Run(
            ["useradd", "--create-home", "--shell", "/bin/sh", "--password", "*", "deploy"].map(String::from).to_vec(),
        );
        assert!(plan.layer.steps.contains(&step), "{:?}", plan.layer.steps);
        let keys = plan.files["/etc/ssh/authorized_keys/deploy"].content.redacted();
        assert!(keys.contains(EC), "{keys}");
        assert!(!plan.files.contains_key("/etc/ssh/authorized_keys/root"));
    }

    #[test]
    fn root_password_is_set_by_chpasswd_on_a_copy_and_never_shown() {
        let plan = test_plan(
            "name = \"s\"\n[services.sshd]\npermit_root_login = \"yes\"\npassword_authentication = true\n\
             root_password = { secret = \"root-pw\" }\n",
        );
        let task = &plan.init["sshd-root-password"];
        assert_eq!(task.command[..2], ["sh", "-c"]);
        assert!(task.command[2].contains("chpasswd --crypt-method SHA512 --root \"$d\"; "), "{}", task.command[2]);
        assert!(task.command[2].contains("mount --bind \"$d/etc/shadow\" /etc/shadow; "), "{}", task.command[2]);
        assert!(task.user.is_none());
        assert_eq!(task.stdin.as_ref().map(Text::redacted).as_deref(), Some("root:(secret)\n"));
        assert!(plan.secrets.contains("root-pw"));
        let conf = plan.files[CONFIG].content.redacted();
        assert!(conf.contains("PermitRootLogin yes\n") && conf.contains("PasswordAuthentication yes\n"), "{conf}");
        assert!(!serde_json::to_string(&plan).unwrap().contains("root:\\n"));
    }

    #[test]
    fn bad_public_keys_are_pinned_with_what_is_allowed() {
        let err = try_test_plan(&format!(
            "name = \"s\"\n[services.sshd]\nauthorized_keys = [\n  \"{ED}\",\n  \"ssh-dss AAAAB3NzaC1kc3M= old\",\n]\n"
        ))
        .unwrap_err()
        .brief();
        assert_eq!(err.len(), 1, "{err:?}");
        assert!(err[0].starts_with("test.toml:5:3: invalid public key: unknown key type `ssh-dss`"), "{err:?}");

        let mismatch = ED.replacen("ssh-ed25519", "ssh-rsa", 1);
        let err = try_test_plan(&format!(
            "name = \"s\"\n[[services.sshd.users]]\nname = \"ann\"\nauthorized_keys = [\"{mismatch}\"]\n"
        ))
        .unwrap_err()
        .brief();
        assert!(err[0].contains("test.toml:4:20: invalid public key: the key data is a `ssh-ed25519` key"), "{err:?}");
    }

    #[test]
    fn system_accounts_and_bad_names_are_refused() {
        let err = try_test_plan(
            "name = \"s\"\n[[services.sshd.users]]\nname = \"sshd\"\n[[services.sshd.users]]\nname = \"Bad Name\"\n",
        )
        .unwrap_err()
        .brief();
        assert!(err.iter().any(|e| e.starts_with("test.toml:3:8: `sshd` is a system account")), "{err:?}");
        assert!(err.iter().any(|e| e.starts_with("test.toml:5:8: invalid user name `Bad Name`")), "{err:?}");
    }
}
