//! The infrastructure modules end to end, as root: real Debian containers built by the
//! real tool, real daemons, real clients on the host (dig, smbclient, ssh, rsync, curl)
//! or in network namespaces the tests make themselves (`support::net::Netns`). Traffic goes only
//! to these containers and namespaces, all inside this binary's address slice.
//!
//! Package sets (each one layer, built once into the shared cache): bind (+dns-root-data),
//! nat64 + bind, samba, sshd, rsync, tinc + ping.

mod support;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::process::{Command, Output, Stdio};
use support::net::Netns;
use support::*;

const SALT: u32 = 3;

fn name(tag: &str) -> String {
    format!("i{}{tag}", slice(SALT))
}

fn both(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// `dig` with a short timeout and one try, its whole output.
fn dig(server: &str, args: &[&str]) -> String {
    let mut argv = vec!["dig", "+time=2", "+tries=1"];
    let at = format!("@{server}");
    argv.push(&at);
    argv.extend_from_slice(args);
    both(&host(&argv))
}

/// The header flags of a dig answer ("qr", "aa", "rd", "ra", ...).
fn flags(out: &str) -> Vec<String> {
    let line = out.lines().find(|l| l.contains(";; flags:")).unwrap_or_else(|| panic!("no header: {out}"));
    let f = line.split("flags:").nth(1).unwrap().split(';').next().unwrap();
    f.split_whitespace().map(str::to_string).collect()
}

fn status(out: &str) -> String {
    out.split("status: ").nth(1).and_then(|s| s.split(',').next()).unwrap_or("none").to_string()
}

// ---------------------------------------------------------------------------------------
// bind

fn bind_master(s4: &str, c4: &str, serial: u32, extra: &str) -> String {
    let m4 = v4(SALT, 10);
    let m6 = v6(SALT, 10);
    let c6 = v6(SALT, 12);
    format!(
        r#"base = "debian:trixie"
[network]
ipv4 = "{m4}"
ipv6 = "{m6}"
[services.bind]
allow_query = ["localhost", "169.254.0.1", "{s4}", "{c4}", "{c6}"]
recursion = true
allow_recursion = ["localhost", "169.254.0.1"]
# Every recursive query (and named's root key refresh) goes to the test's own slave,
# never to the Internet.
forwarders = ["{s4}"]
forward_only = true
rate_limit = {{ responses_per_second = 2, window = 5 }}
[[services.bind.zones]]
name = "test.lan"
serial = {serial}
ns = ["ns1"]
allow_transfer = ["{s4}"]
also_notify = ["{s4}"]
records = [
  {{ name = "ns1", type = "A", value = "{m4}" }},
  {{ name = "www", type = "A", value = "100.64.7.1" }},
  {{ name = "rrl", type = "A", value = "100.64.7.2" }},
  {extra}
]
"#
    )
}

/// Rate limiting: identical answers to one client beyond the limit are dropped or
/// truncated ("slip"). Sends `n` queries at once; (full answers, truncated answers).
fn burst(server: &str, qname: &str, n: u32) -> (u32, u32) {
    let script = r#"
import socket, struct, sys
ip, name, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
qn = b"".join(bytes([len(l)]) + l.encode() for l in name.split(".")) + b"\0"
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(1.5)
for i in range(n):
    s.sendto(struct.pack(">HHHHHH", i, 0x0100, 1, 0, 0, 0) + qn + struct.pack(">HH", 1, 1), (ip, 53))
full = tc = 0
try:
    while True:
        d, _ = s.recvfrom(4096)
        if struct.unpack(">H", d[2:4])[0] & 0x0200:
            tc += 1
        else:
            full += 1
except socket.timeout:
    pass
print(full, tc)
"#;
    let out = host_ok(&["python3", "-c", script, server, qname, &n.to_string()]);
    let v: Vec<u32> = out.split_whitespace().map(|x| x.parse().unwrap()).collect();
    (v[0], v[1])
}

#[test]
fn bind_master_slave_acls_recursion_and_rate_limit() {
    require_e2e!();
    let (m4, m6, s4, c4, d4) = (v4(SALT, 10), v6(SALT, 10), v4(SALT, 11), v4(SALT, 12), v4(SALT, 13));
    // A client namespace with an address bind admits (c4) and one it does not (d4).
    let c6 = v6(SALT, 12);
    let client = Netns::routed(&name("q"), &[&c4, &d4], &[&c6]);
    let master = Ct::new(&name("bm"), &bind_master(&s4, &c4, 1, ""));
    // The secondary: a copy of test.lan, and the original of other.lan (which the
    // master reaches through its forwarder). dns-root-data only to share the master's layer.
    let slave = Ct::new(
        &name("bs"),
        &format!(
            r#"base = "debian:trixie"
packages = ["dns-root-data"]
[network]
ipv4 = "{s4}"
ipv6 = "{}"
[services.bind]
[[services.bind.zones]]
name = "test.lan"
type = "slave"
masters = ["{m4}"]
[[services.bind.zones]]
name = "other.lan"
ns = ["ns2"]
records = [
  {{ name = "ns2", type = "A", value = "{s4}" }},
  {{ name = "fw", type = "A", value = "100.64.7.9" }},
]
"#,
            v6(SALT, 11)
        ),
    );
    master.apply_ok();
    slave.apply_ok();
    let logs = || format!("master: {}\nslave: {}", master.logs(), slave.logs());

    // The master answers from its zone authoritatively; the host
    // may recurse (ra), and recursion goes through the forwarder only.
    let out = dig(&m4, &["www.test.lan", "A"]);
    assert_eq!(status(&out), "NOERROR", "{out}\n{}", logs());
    assert!(out.contains("IN\tA\t100.64.7.1"), "{out}");
    let f = flags(&out);
    assert!(f.contains(&"aa".into()) && f.contains(&"ra".into()), "{out}");
    // +cd: the forwarder's zone is unsigned and the root key cannot be fetched offline.
    let out = dig(&m4, &["+cd", "+short", "fw.other.lan", "A"]);
    assert_eq!(out.trim(), "100.64.7.9", "recursion through the forwarder: {out}\n{}", logs());

    // allow-query: c4 (and c6, over IPv6) may ask but not recurse; d4 may not ask at all.
    let out = both(&client.run(&["dig", "+time=2", "+tries=1", "-b", &c4, &format!("@{m4}"), "www.test.lan"]));
    assert_eq!(status(&out), "NOERROR", "{out}");
    assert!(!flags(&out).contains(&"ra".into()), "c4 is not in allow_recursion: {out}");
    let out = both(&client.run(&["dig", "+time=2", "+tries=1", "-b", &c4, &format!("@{m4}"), "fw.other.lan"]));
    assert_eq!(status(&out), "REFUSED", "recursion for c4: {out}");
    let out = both(&client.run(&["dig", "+time=2", "+tries=1", "-b", &d4, &format!("@{m4}"), "www.test.lan"]));
    assert_eq!(status(&out), "REFUSED", "d4 is not in allow_query: {out}");
    let out = both(&client.run(&["dig", "+time=2", "+tries=1", &format!("@{m6}"), "+short", "www.test.lan"]));
    assert_eq!(out.trim(), "100.64.7.1", "over IPv6: {out}");

    // allow-transfer: the host may not copy the zone; the slave did.
    let out = dig(&m4, &["test.lan", "AXFR"]);
    assert!(out.contains("Transfer failed"), "{out}");
    let out = eventually("the slave's copy of test.lan", 30, || {
        let out = dig(&s4, &["+norec", "www.test.lan", "A"]);
        (status(&out) == "NOERROR").then_some(out)
    });
    assert!(flags(&out).contains(&"aa".into()) && out.contains("100.64.7.1"), "{out}");

    // A changed zone (new serial) reaches the slave at once: reload, NOTIFY, transfer.
    master.write(&bind_master(&s4, &c4, 2, r#"{ name = "new", type = "A", value = "100.64.7.3" },"#));
    let applied = master.apply_ok();
    assert!(master.exec_ok(&["cat", "/etc/bind/zones/db.test.lan"]).contains("100.64.7.3"), "{applied}");
    eventually("the slave's copy of serial 2", 30, || {
        let out = dig(&s4, &["+norec", "+short", "new.test.lan", "A"]);
        (out.trim() == "100.64.7.3").then_some(())
    });

    // Rate limiting, last (it throttles the host for a few seconds): 40 identical
    // queries at once get a few full answers, some truncated ones (slip), the rest none.
    let (full, tc) = burst(&m4, "rrl.test.lan", 40);
    assert!((1..=10).contains(&full) && tc >= 1, "40 queries: {full} answered, {tc} truncated\n{}", logs());
    drop(client);
}

// ---------------------------------------------------------------------------------------
// samba

/// smbclient against `//ip/share`: `auth` is ["-N"] (guest) or ["-U", "user%password"].
fn smb(ip: &str, share: &str, auth: &[&str], cmd: &str) -> Output {
    let svc = format!("//{ip}/{share}");
    let mut argv = vec!["smbclient", svc.as_str(), "-t", "10"];
    argv.extend_from_slice(auth);
    argv.extend_from_slice(&["-c", cmd]);
    host(&argv)
}

#[test]
fn samba_lists_writes_refuses_and_admits_guests() {
    require_e2e!();
    let ip = v4(SALT, 40);
    let hidden = r#"
[[services.samba.shares]]
name = "hidden"
comment = "Guest drop box, not listed"
read_only = false
guest_ok = true
browseable = false
"#;
    let body = format!("{}{hidden}", shipped("specs/samba.toml", &ip, &v6(SALT, 40)));
    let ct = Ct::new(&name("smb"), &body);
    ct.apply_ok();
    let pw = ct.secret("samba-alice");
    let alice = format!("alice%{pw}");
    let as_alice = ["-U", alice.as_str()];

    // Browsing (as a guest): the browseable shares, not the hidden one.
    let out = host(&["smbclient", "-t", "10", "-N", "-g", "-L", &format!("//{ip}")]);
    let list = both(&out);
    assert!(list.contains("Disk|public|Public files (read-only)"), "{list}\n{}", ct.logs());
    assert!(list.contains("Disk|alice|Alice's files"), "{list}");
    assert!(!list.contains("hidden"), "a share with browseable = false is listed: {list}");

    // alice writes into her share: the file lands in the share's volume on the host.
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("note.txt");
    std::fs::write(&src, "written over SMB\n").unwrap();
    let put = format!("lcd {}; put note.txt", dir.path().display());
    let out = smb(&ip, "alice", &as_alice, &put);
    assert!(out.status.success(), "put as alice: {}\n{}", both(&out), ct.logs());
    let on_host = ct.volume("share-alice").join("note.txt");
    assert_eq!(std::fs::read_to_string(&on_host).unwrap(), "written over SMB\n");
    assert!(both(&smb(&ip, "alice", &as_alice, "ls")).contains("note.txt"));

    // A wrong password is refused (not mapped to guest: alice exists).
    let out = smb(&ip, "alice", &["-U", "alice%wrong-password"], "ls");
    assert!(!out.status.success() && both(&out).contains("NT_STATUS_LOGON_FAILURE"), "{}", both(&out));

    // The read-only share: readable by guests, writable by nobody.
    std::fs::write(ct.volume("share-public").join("readme.txt"), "public\n").unwrap();
    let out = smb(&ip, "public", &["-N"], "ls");
    assert!(out.status.success() && both(&out).contains("readme.txt"), "guest ls public: {}", both(&out));
    for auth in [&["-N"][..], &as_alice[..]] {
        let out = smb(&ip, "public", auth, &put);
        let msg = both(&out);
        assert!(msg.contains("NT_STATUS_ACCESS_DENIED") || msg.contains("NT_STATUS_MEDIA_WRITE_PROTECTED"), "{msg}");
    }
    assert!(!ct.volume("share-public").join("note.txt").exists());

    // Guests: not into alice's share (valid_users), but into a guest_ok writable share.
    let out = smb(&ip, "alice", &["-N"], "ls");
    assert!(!out.status.success(), "a guest listed alice's share: {}", both(&out));
    let out = smb(&ip, "hidden", &["-N"], &put);
    assert!(out.status.success(), "guest put into hidden: {}", both(&out));
    assert!(ct.volume("share-hidden").join("note.txt").exists());
}

fn shipped(path: &str, ipv4: &str, ipv6: &str) -> String {
    shipped_body(&repo_file(path), ipv4, ipv6) + "\n"
}

// ---------------------------------------------------------------------------------------
// sshd

fn ssh_base(kh: &str, batch: bool) -> Vec<String> {
    [
        "ssh",
        "-o",
        if batch { "BatchMode=yes" } else { "BatchMode=no" },
        "-o",
        "ConnectTimeout=10",
        "-o",
        &format!("UserKnownHostsFile={kh}"),
        "-o",
        "GlobalKnownHostsFile=/dev/null",
        "-o",
        "LogLevel=ERROR",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

#[test]
fn sshd_keys_root_password_and_persistent_host_keys() {
    require_e2e!();
    let ip = v4(SALT, 50);
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("id");
    let kh = dir.path().join("known_hosts").display().to_string();
    host_ok(&["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "e2e", "-f", key.to_str().unwrap()]);
    let public = std::fs::read_to_string(dir.path().join("id.pub")).unwrap();
    let ct = Ct::new(
        &name("ssh"),
        &format!(
            r#"base = "debian:trixie"
[network]
ipv4 = "{ip}"
ipv6 = "{}"
[services.sshd]
permit_root_login = "yes"
password_authentication = true
authorized_keys = ["{k}"]
root_password = {{ secret = "ssh-root" }}
[[services.sshd.users]]
name = "deploy"
authorized_keys = ["{k}"]
"#,
            v6(SALT, 50),
            k = public.trim()
        ),
    );
    ct.apply_ok();
    let with_key = |user: &str, strict: &str| {
        let mut argv = ssh_base(&kh, true);
        argv.extend(
            [
                "-o",
                &format!("StrictHostKeyChecking={strict}"),
                "-o",
                "IdentitiesOnly=yes",
                "-i",
                key.to_str().unwrap(),
                &format!("{user}@{ip}"),
                "id -un",
            ]
            .map(String::from),
        );
        Command::new(&argv[0]).args(&argv[1..]).stdin(Stdio::null()).output().unwrap()
    };
    // Key logins from the spec, root and deploy; the host key is learnt on the way.
    let out = with_key("root", "accept-new");
    assert!(out.status.success(), "ssh root: {}\n{}", both(&out), ct.logs());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "root");
    let out = with_key("deploy", "yes");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "deploy", "{}", both(&out));

    // The root password is the generated secret: it logs in over ssh, a wrong one does not.
    let pw = ct.secret("ssh-root");
    assert!(pw.trim().len() >= 32, "secret too short");
    let with_password = |password: &str| {
        let askpass = dir.path().join("askpass");
        std::fs::write(dir.path().join("pw"), password).unwrap();
        std::fs::write(&askpass, format!("#!/bin/sh\ncat {}\n", dir.path().join("pw").display())).unwrap();
        host_ok(&["chmod", "755", askpass.to_str().unwrap()]);
        let mut argv = ssh_base(&kh, false);
        argv.extend(
            [
                "-o",
                "StrictHostKeyChecking=yes",
                "-o",
                "PubkeyAuthentication=no",
                "-o",
                "PreferredAuthentications=password",
                "-o",
                "NumberOfPasswordPrompts=1",
                &format!("root@{ip}"),
                "id -un",
            ]
            .map(String::from),
        );
        Command::new(&argv[0])
            .args(&argv[1..])
            .env("SSH_ASKPASS", &askpass)
            .env("SSH_ASKPASS_REQUIRE", "force")
            .env("DISPLAY", ":0")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let out = with_password(pw.trim());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "root", "password login: {}\n{}", both(&out), ct.logs());
    let out = with_password("not-the-password");
    assert!(!out.status.success(), "a wrong password logged in");
    // Never in clear outside the secrets folder: not in the plan, not in the state.
    let plan = both(&run(&["plan", "--json", ct.spec().to_str().unwrap()]));
    assert!(!plan.contains(pw.trim()), "plan shows the password");
    let hits = host(&[
        "grep",
        "-rlF",
        "--exclude-dir=secrets",
        "--exclude-dir=volumes",
        pw.trim(),
        ct.dirs().to_str().unwrap(),
    ]);
    assert!(hits.stdout.is_empty(), "password in clear in: {}", text(&hits.stdout));

    // Host keys survive re-creation (destroy without --volumes, apply): strict checking
    // against the known_hosts of the first container passes.
    let before = ct.exec_ok(&["cat", "/var/lib/ssh-host-keys/ssh_host_ed25519_key.pub"]);
    ok(&["destroy", &ct.name]);
    ct.apply_ok();
    assert_eq!(ct.exec_ok(&["cat", "/var/lib/ssh-host-keys/ssh_host_ed25519_key.pub"]), before);
    let out = with_key("root", "yes");
    assert!(out.status.success(), "host key changed after re-creation: {}", both(&out));
}

// ---------------------------------------------------------------------------------------
// rsync

#[test]
fn rsync_daemon_authenticated_upload_from_the_host() {
    require_e2e!();
    let ip = v4(SALT, 60);
    let c4 = v4(SALT, 61);
    // The shipped spec, with the backup module admitting the host (which reaches a
    // routed container from its gateway address) instead of 100.64.0.0/10.
    let body = shipped("specs/rsync.toml", &ip, &v6(SALT, 60))
        .replace(r#"hosts_allow = ["10.0.0.0/8", "100.64.0.0/10", "fc00::/7"]"#, r#"hosts_allow = ["169.254.0.1"]"#);
    assert!(body.contains("169.254.0.1"), "the shipped spec changed: {body}");
    let ct = Ct::new(&name("rsy"), &body);
    ct.apply_ok();
    let pw = ct.secret("rsync-backup");
    let data = tempfile::tempdir().unwrap();
    std::fs::create_dir(data.path().join("sub")).unwrap();
    std::fs::write(data.path().join("sub/file.txt"), "backed up\n").unwrap();
    let src = format!("{}/", data.path().display());
    let url = format!("rsync://backup@{ip}/backup/");
    let upload = |password: &str| {
        Command::new("rsync")
            .args(["-a", "--timeout=20", &src, &url])
            .env("RSYNC_PASSWORD", password)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };

    // The modules are listed; the authenticated user uploads into the volume.
    let list = host_ok(&["rsync", "--timeout=20", &format!("rsync://{ip}/")]);
    assert!(list.contains("public") && list.contains("backup"), "{list}");
    let out = upload(pw.trim());
    assert!(out.status.success(), "upload: {}\n{}", both(&out), ct.logs());
    let stored = ct.volume("rsync-backup").join("sub/file.txt");
    assert_eq!(std::fs::read_to_string(&stored).unwrap(), "backed up\n");
    assert_eq!(ct.exec_ok(&["stat", "-c", "%U", "/srv/backup/sub/file.txt"]).trim(), "backup");

    // A wrong password, and no password, are refused.
    std::fs::write(data.path().join("sub/file.txt"), "tampered\n").unwrap();
    let out = upload("wrong");
    assert!(!out.status.success() && both(&out).contains("auth failed"), "{}", both(&out));
    assert_eq!(std::fs::read_to_string(&stored).unwrap(), "backed up\n");

    // hosts_allow: a client namespace outside the list is refused, even with the password.
    let client = Netns::routed(&name("r"), &[&c4], &[]);
    let out =
        client.cmd(&["rsync", "-a", "--timeout=20", &src, &url]).env("RSYNC_PASSWORD", pw.trim()).output().unwrap();
    assert!(!out.status.success() && both(&out).contains("access denied"), "{}", both(&out));

    // The public module: read-only, readable anonymously.
    std::fs::write(ct.volume("rsync-public").join("mirror.txt"), "mirrored\n").unwrap();
    let down = tempfile::tempdir().unwrap();
    host_ok(&["rsync", "-a", "--timeout=20", &format!("rsync://{ip}/public/"), &format!("{}/", down.path().display())]);
    assert_eq!(std::fs::read_to_string(down.path().join("mirror.txt")).unwrap(), "mirrored\n");
    let out = host(&["rsync", "-a", "--timeout=20", &src, &format!("rsync://{ip}/public/")]);
    assert!(!out.status.success() && both(&out).contains("read only"), "{}", both(&out));
}

// ---------------------------------------------------------------------------------------
// tinc

/// Node `me` (0: alpha, 1: beta) at 100.75.<slice>.(70 + me) and 10.10.0.(me + 1) on the
/// VPN, with the other node as its peer; alpha connects to beta's address.
fn tinc_spec(me: u32, peer_key: &str) -> String {
    let names = ["alpha", "beta"];
    let peer = 1 - me;
    let connect = if me == 0 { format!("address = \"{}\"\n", v4(SALT, 71)) } else { String::new() };
    format!(
        r#"base = "debian:trixie"
packages = ["iputils-ping"]
[network]
ipv4 = "{}"
ipv6 = "{}"
[services.tinc]
name = "{}"
address = "10.10.0.{}/24"
[[services.tinc.peers]]
name = "{}"
{connect}subnets = ["10.10.0.{}/32"]
public_key = '''
{peer_key}'''
"#,
        v4(SALT, 70 + me),
        v6(SALT, 70 + me),
        names[me as usize],
        me + 1,
        names[peer as usize],
        peer + 1,
    )
}

#[test]
fn tinc_nodes_ping_each_other() {
    require_e2e!();
    // A well-formed stand-in key until the peer has made its own.
    let stand_in =
        host_ok(&["sh", "-c", "openssl genrsa 1024 2>/dev/null | openssl rsa -RSAPublicKey_out 2>/dev/null"]);
    let alpha = Ct::new(&name("ta"), &tinc_spec(0, &stand_in));
    alpha.apply_ok();
    // The documented exchange: each node's rsa_key.pub goes into the other's spec.
    let alpha_key = alpha.exec_ok(&["cat", "/var/lib/tinc/vpn/rsa_key.pub"]);
    let beta = Ct::new(&name("tb"), &tinc_spec(1, &alpha_key));
    beta.apply_ok();
    let beta_key = beta.exec_ok(&["cat", "/var/lib/tinc/vpn/rsa_key.pub"]);
    alpha.write(&tinc_spec(0, &beta_key));
    alpha.apply_ok();
    let logs = || format!("alpha: {}\nbeta: {}", alpha.logs(), beta.logs());
    // The VPN addresses go into the tunnel, never to the host's default route.
    for (ct, peer) in [(&alpha, "10.10.0.2"), (&beta, "10.10.0.1")] {
        let route = ct.exec_ok(&["ip", "route", "get", peer]);
        assert!(route.contains("dev tinc-vpn"), "{route}\n{}", logs());
    }
    // tincd connects after the reload (SIGHUP) with beta's real key.
    let start = std::time::Instant::now();
    let pinged = std::iter::repeat_with(|| alpha.exec(&["ping", "-c", "1", "-W", "1", "10.10.0.2"]).status.success())
        .take_while(|_| start.elapsed().as_secs() < 60)
        .any(|ok| ok);
    assert!(pinged, "alpha pings beta over tinc\n{}", logs());
    let out = beta.exec(&["ping", "-c", "2", "-W", "2", "10.10.0.1"]);
    assert!(out.status.success(), "beta pings alpha: {}\n{}", both(&out), logs());
}

// ---------------------------------------------------------------------------------------
// nat64

#[test]
fn nat64_ipv6_only_client_reaches_ipv4_server_with_dns64() {
    require_e2e!();
    let s = slice(SALT);
    let (n4, n6) = (v4(SALT, 80), v6(SALT, 80));
    let o4 = v4(SALT, 81);
    let c6 = v6(SALT, 82);
    // A /96 of this binary's own ULA space (the well-known prefix would be routed on the
    // host for everyone), next to the slice's /96 of container addresses.
    let prefix = format!("fd63:6f6e:7461:696e:64:{s:x}::/96");
    let server: Ipv4Addr = o4.parse().unwrap();
    let base: Ipv6Addr = prefix.trim_end_matches("/96").parse().unwrap();
    let mapped = Ipv6Addr::from(u128::from(base) | u128::from(u32::from(server)));

    // The "outside": an IPv4-only namespace with a web server; the client: IPv6 only.
    let outside = Netns::routed(&name("o"), &[&o4], &[]);
    let client = Netns::routed(&name("c"), &[], &[&c6]);
    let www = tempfile::tempdir().unwrap();
    std::fs::write(www.path().join("hello.txt"), "hello from IPv4\n").unwrap();
    let log = www.path().join("access.log");
    let _server = Bg(outside
        .cmd(&["python3", "-m", "http.server", "8080", "--bind", &o4, "--directory", www.path().to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap());

    let gw = Ct::new(
        &name("n64"),
        &format!(
            r#"base = "debian:trixie"
[network]
ipv4 = "{n4}"
ipv6 = "{n6}"
[services.nat64]
prefix = "{prefix}"
dns64 = true
[services.bind]
[[services.bind.zones]]
name = "v4.lan"
ns = ["ns1"]
records = [
  {{ name = "ns1", type = "A", value = "{n4}" }},
  {{ name = "server", type = "A", value = "{o4}" }},
]
"#
        ),
    );
    gw.apply_ok();
    let logs = || gw.logs();

    // DNS64: the client asks the gateway's bind over IPv6 for the IPv4-only name and gets
    // an AAAA inside the prefix (the zone has no AAAA record).
    let out = both(&client.run(&["dig", "+time=2", "+tries=1", &format!("@{n6}"), "+short", "server.v4.lan", "AAAA"]));
    let aaaa: Ipv6Addr = out.trim().parse().unwrap_or_else(|_| panic!("no AAAA: {out}\n{}", logs()));
    assert_eq!(aaaa, mapped, "{out}");
    assert!(gw.exec_ok(&["cat", "/etc/bind/zones/db.v4.lan"]).lines().all(|l| !l.contains("AAAA")));

    // The client has no IPv4 at all, and reaches the IPv4 server through the prefix.
    let out = both(&client.run(&["ip", "-4", "addr", "show", "scope", "global"]));
    assert!(!out.contains("inet "), "{out}");
    let url = format!("http://[{aaaa}]:8080/hello.txt");
    let body = eventually("HTTP through NAT64", 30, || {
        let out = client.run(&["curl", "-sS", "-m", "5", &url]);
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    });
    assert_eq!(body, "hello from IPv4\n", "{}", logs());
    let out = client.run(&["ping", "-6", "-c", "1", "-W", "3", &aaaa.to_string()]);
    assert!(out.status.success(), "ping through NAT64: {}\n{}", both(&out), logs());
    // The server saw the gateway's own IPv4 address (tayga's pool, masqueraded).
    let access = std::fs::read_to_string(&log).unwrap();
    assert!(access.lines().any(|l| l.starts_with(&format!("{n4} ")) && l.contains("GET /hello.txt")), "{access}");
}
