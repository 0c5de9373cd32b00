//! tinc: a tinc 1.0.36 VPN node (Debian's `tinc`, bookworm and trixie).
//!
//! Renders /etc/tinc/<network>/{tinc.conf, hosts/<node>, tinc-up, tinc-down}. The RSA
//! key pair is made on first start by init tasks (openssl) into the volume "tinc-keys"
//! at /var/lib/tinc/<network>: `tincd -K` would write the public key into hosts/, which
//! is in the read-only root. Our own hosts file points at the public key with
//! `PublicKeyFile`; peers get it by copying /var/lib/tinc/<network>/rsa_key.pub into
//! their spec (`peers[].public_key`). tincd needs /dev/net/tun and CAP_NET_ADMIN.

use super::{Ctx, Services};
use crate::vocab::plan::{InitTask, ServiceRes};
use crate::vocab::values::{Cidr, Port, Proto};
use crate::vocab::values::{Mode as FileMode, SignalName};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fmt::Write;
use std::net::IpAddr;

#[path = "tinc_conf.rs"]
mod conf;
pub use conf::{check_pem, VpnAddress};

const KEYS: &str = "/var/lib/tinc";

/// tinc 1.0 node settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TincSettings {
    /// Network name (tincd -n): 1-10 lowercase letters, digits and `_`; the interface
    /// is "tinc-<network>".
    #[serde(default = "default_network")]
    pub network: String,
    /// This node's name in the VPN: letters, digits and `_`. Peers refer to it by it.
    pub name: String,
    /// This node's VPN address with the VPN's prefix length, e.g. "10.10.0.1/24".
    pub address: VpnAddress,
    /// Port tincd listens on (TCP and UDP).
    #[serde(default = "default_port")]
    pub port: Port,
    /// "router" (default: IP packets routed by subnet) or "switch" (Ethernet frames).
    #[serde(default)]
    pub mode: Mode,
    /// Networks this node serves in the VPN; default just its own address (/32 or /128).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subnets: Vec<Cidr>,
    /// The other nodes this node knows.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peers: Vec<Peer>,
}

fn default_network() -> String {
    "vpn".into()
}
fn default_port() -> Port {
    Port(655)
}

/// tinc's routing mode.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
#[schemars(rename = "TincMode")]
pub enum Mode {
    /// Route IP packets to the node that announces the subnet (default).
    #[default]
    Router,
    /// Behave like an Ethernet switch (learns MAC addresses).
    Switch,
}

/// Another node of the VPN.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Peer {
    /// The peer's tinc name (its `name` setting).
    pub name: String,
    /// Host name or IP address where the peer listens; when set, this node connects to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Port the peer listens on.
    #[serde(default = "default_port")]
    pub port: Port,
    /// The peer's networks in the VPN, e.g. ["10.10.0.2/32"].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subnets: Vec<Cidr>,
    /// The peer's RSA public key in PEM ("-----BEGIN RSA PUBLIC KEY-----" ...): the
    /// content of /var/lib/tinc/<network>/rsa_key.pub on the peer.
    pub public_key: String,
}

fn valid_node_name(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

pub fn compile(s: &TincSettings, _all: &Services, cx: &mut Ctx) {
    cx.packages(&["tinc", "iproute2", "openssl"]);
    cx.device(crate::vocab::values::DeviceNode::tun());
    let net = &s.network;
    let net_ok = !net.is_empty()
        && net.len() <= 10
        && net.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if !net_ok {
        let help =
            "use 1-10 lowercase letters, digits and `_` (the interface tinc-<network> has at most 15 characters)";
        cx.error("network", format!("invalid network name `{net}`"), Some(help));
        return;
    }
    if !valid_node_name(&s.name) {
        cx.error("name", format!("invalid tinc name `{}`", s.name), Some("use letters, digits and `_`"));
        return;
    }

    let dir = format!("/etc/tinc/{net}");
    let keys = format!("{KEYS}/{net}");
    let private = format!("{keys}/rsa_key.priv");
    let public = format!("{keys}/rsa_key.pub");
    let iface = format!("tinc-{net}");

    // Keys: made once into the volume. The ids sort in the order the tasks must run.
    cx.volume(&keys, "tinc-keys", Some("root:root"), Some(FileMode(0o700)));
    let gen = ["openssl", "genrsa", "-traditional", "-out", private.as_str(), "4096"];
    cx.init("tinc-key", InitTask::new(&gen).creates(&private));
    let pub_argv = ["openssl", "rsa", "-in", private.as_str(), "-RSAPublicKey_out", "-out", public.as_str()];
    cx.init("tinc-key-public", InitTask::new(&pub_argv).creates(&public));
    cx.tmpfs("/run/tinc", Some(1 << 20), Some("root:root"), Some(FileMode(0o755)));

    let mode = match s.mode {
        Mode::Router => "router",
        Mode::Switch => "switch",
    };
    let mut conf = format!(
        "# Rendered by container (tinc module).\nName = {name}\nMode = {mode}\nInterface = {iface}\n\
         AddressFamily = any\nPrivateKeyFile = {private}\n",
        name = s.name
    );
    let own_subnets = if s.subnets.is_empty() { vec![s.address.host()] } else { s.subnets.clone() };
    let mut own = String::from("# Rendered by container (tinc module): this node.\n");
    for sn in &own_subnets {
        let _ = writeln!(own, "Subnet = {sn}");
    }
    let _ = writeln!(own, "Port = {}\nPublicKeyFile = {public}", s.port.0);

    let mut uses = vec![format!("{dir}/tinc.conf"), format!("{dir}/hosts/{}", s.name)];
    let mut routes = Vec::new();
    let mut seen = BTreeSet::from([s.name.as_str()]);
    for (i, p) in s.peers.iter().enumerate() {
        let at = format!("peers[{i}]");
        if !valid_node_name(&p.name) {
            cx.error(
                &format!("{at}.name"),
                format!("invalid tinc name `{}`", p.name),
                Some("use letters, digits and `_`"),
            );
            continue;
        }
        if !seen.insert(p.name.as_str()) {
            let msg =
                if p.name == s.name { "a peer cannot have this node's name" } else { "this peer is listed twice" };
            cx.error(&format!("{at}.name"), format!("{msg}: `{}`", p.name), None);
            continue;
        }
        if let Err(e) = check_pem(&p.public_key) {
            let help =
                "paste the peer's /var/lib/tinc/<network>/rsa_key.pub, e.g. as a TOML multi-line string '''...'''";
            cx.error(&format!("{at}.public_key"), format!("invalid public key: {e}"), Some(help));
        }
        let mut host = format!("# Rendered by container (tinc module): peer {}.\n", p.name);
        if let Some(a) = &p.address {
            let ok = a.parse::<IpAddr>().is_ok()
                || (!a.is_empty() && a.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-'));
            if !ok {
                let help = "use a host name or an IP address, without a port (see `port`)";
                cx.error(&format!("{at}.address"), format!("invalid address `{a}`"), Some(help));
            }
            let _ = writeln!(conf, "ConnectTo = {}", p.name);
            let _ = writeln!(host, "Address = {a}");
        }
        let _ = writeln!(host, "Port = {}", p.port.0);
        for sn in &p.subnets {
            let _ = writeln!(host, "Subnet = {sn}");
            if !s.address.net().overlaps(&sn.0) {
                routes.push(sn.to_string());
            }
        }
        host.push_str(p.public_key.trim());
        host.push('\n');
        let path = format!("{dir}/hosts/{}", p.name);
        cx.file(&path, host);
        uses.push(path);
    }

    // tinc-up and tinc-down are shell scripts tincd runs itself. We render them whole from
    // validated values (addresses and networks that parsed), so nothing user-written
    // reaches the shell; $INTERFACE is set by tincd.
    let mut up = format!(
        "#!/bin/sh\n# Rendered by container (tinc module): run by tincd when {iface} is up.\nset -e\n\
         ip link set dev \"$INTERFACE\" up\nip addr add {addr} dev \"$INTERFACE\"\n",
        addr = s.address
    );
    if s.mode == Mode::Router {
        for r in &routes {
            let _ = writeln!(up, "ip route add {r} dev \"$INTERFACE\"");
        }
    }
    let down = format!(
        "#!/bin/sh\n# Rendered by container (tinc module): run by tincd before {iface} goes away.\n\
         ip addr del {addr} dev \"$INTERFACE\" || true\nip link set dev \"$INTERFACE\" down\n",
        addr = s.address
    );

    cx.file(&format!("{dir}/tinc.conf"), conf);
    cx.file(&format!("{dir}/hosts/{}", s.name), own);
    cx.file_with(&format!("{dir}/tinc-up"), up, FileMode(0o755), "root:root");
    cx.file_with(&format!("{dir}/tinc-down"), down, FileMode(0o755), "root:root");
    // tinc-up only runs at start: SIGHUP rereads tinc.conf and hosts/ but does not rerun
    // it, so a changed address needs a restart (see the report on `uses`).
    uses.push(format!("{dir}/tinc-up"));

    cx.listen(Proto::Tcp, s.port.0, "tincd", "port");
    cx.listen(Proto::Udp, s.port.0, "tincd", "port");
    let argv = [
        // No `-n`: with --config, tincd 1.0 ignores the net name (and warns about it).
        "tincd".to_string(),
        "-D".into(),
        "-d1".into(),
        format!("--config={dir}"),
        format!("--pidfile=/run/tinc/tinc.{net}.pid"),
    ];
    // tincd configures its tun device and runs tinc-up (`ip addr`, `ip route`) inside
    // the container's own network namespace: that takes CAP_NET_ADMIN.
    let mut svc = ServiceRes::new(&argv).ready_tcp(s.port.0).reload_signal(SignalName::hup()).cap_add("NET_ADMIN");
    for u in &uses {
        svc = svc.uses(u);
    }
    cx.service("tincd", svc);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::compile::{test_plan, try_test_plan};

    const KEY: &str = "-----BEGIN RSA PUBLIC KEY-----\n\
        MIGJAoGBAK16Z0tQDNAvFzaZzcvfxjU1gkY6TWLa1Kc/mXHn0zuvqZ+dGQlqwQAb\n\
        sxHFS6gQw2Wu78d4XGzHg6aSsKZQZuqbhObSsMyMEFpAeNo9jyQR2XSJdC8zWjyy\n\
        FXxSxn/S2wRnPQPuphlJKAbFBsio8EG/75qmhh5S45lg9VU3xOG/AgMBAAE=\n\
        -----END RSA PUBLIC KEY-----\n";

    fn spec(extra: &str) -> String {
        format!(
            "name = \"t\"\n[services.tinc]\nname = \"alpha\"\naddress = \"10.10.0.1/24\"\n{extra}\
             [[services.tinc.peers]]\nname = \"beta\"\naddress = \"vpn.example.org\"\nsubnets = [\"10.10.0.2/32\", \"192.168.50.0/24\"]\n\
             public_key = \"\"\"\n{KEY}\"\"\"\n[[services.tinc.peers]]\nname = \"gamma\"\npublic_key = \"\"\"\n{KEY}\"\"\"\n"
        )
    }

    #[test]
    fn tinc_conf_names_the_node_and_connects_to_peers_with_addresses() {
        let plan = test_plan(&spec(""));
        let conf = plan.files["/etc/tinc/vpn/tinc.conf"].content.redacted();
        for want in [
            "Name = alpha\n",
            "Mode = router\n",
            "Interface = tinc-vpn\n",
            "PrivateKeyFile = /var/lib/tinc/vpn/rsa_key.priv\n",
            "ConnectTo = beta\n",
        ] {
            assert!(conf.contains(want), "missing {want:?} in\n{conf}");
        }
        assert!(!conf.contains("ConnectTo = gamma"), "{conf}");
        let svc = &plan.services["tincd"];
        assert_eq!(svc.command.join(" "), "tincd -D -d1 --config=/etc/tinc/vpn --pidfile=/run/tinc/tinc.vpn.pid");
        assert!(svc.uses.contains("/etc/tinc/vpn/hosts/gamma") && svc.uses.contains("/etc/tinc/vpn/tinc-up"));
        assert!(plan.devices.contains(&crate::vocab::values::DeviceNode::tun()));
        assert_eq!(plan.services["tincd"].security.cap_add, ["NET_ADMIN".to_string()].into());
        assert_eq!((plan.ports["tcp/655"].as_str(), plan.ports["udp/655"].as_str()), ("tincd", "tincd"));
        let gen = &plan.init["tinc-key"];
        assert_eq!(gen.creates.as_deref(), Some("/var/lib/tinc/vpn/rsa_key.priv"));
        assert_eq!(plan.init["tinc-key-public"].command[1], "rsa");
        assert_eq!(plan.mounts["/var/lib/tinc/vpn"].source.as_deref(), Some("tinc-keys"));
    }

    #[test]
    fn host_files_carry_subnets_addresses_and_keys() {
        let plan = test_plan(&spec(""));
        let own = plan.files["/etc/tinc/vpn/hosts/alpha"].content.redacted();
        assert!(
            own.contains("Subnet = 10.10.0.1/32\nPort = 655\nPublicKeyFile = /var/lib/tinc/vpn/rsa_key.pub\n"),
            "{own}"
        );
        let beta = plan.files["/etc/tinc/vpn/hosts/beta"].content.redacted();
        for want in
            ["Address = vpn.example.org\n", "Port = 655\n", "Subnet = 10.10.0.2/32\n", "Subnet = 192.168.50.0/24\n"]
        {
            assert!(beta.contains(want), "missing {want:?} in\n{beta}");
        }
        assert!(beta.ends_with(KEY), "{beta}");
        let gamma = plan.files["/etc/tinc/vpn/hosts/gamma"].content.redacted();
        assert!(!gamma.contains("Address"), "{gamma}");
    }

    #[test]
    fn tinc_up_sets_the_address_and_routes_outside_subnets() {
        let plan = test_plan(&spec("subnets = [\"10.10.0.0/24\"]\n"));
        let up = &plan.files["/etc/tinc/vpn/tinc-up"];
        assert_eq!(up.mode.to_string(), "0755");
        let up = up.content.redacted();
        assert!(up.starts_with("#!/bin/sh\n"), "{up}");
        assert!(
            up.contains("ip link set dev \"$INTERFACE\" up\nip addr add 10.10.0.1/24 dev \"$INTERFACE\"\n"),
            "{up}"
        );
        assert!(up.contains("ip route add 192.168.50.0/24 dev \"$INTERFACE\"\n"), "{up}");
        assert!(!up.contains("10.10.0.2"), "{up}");
        let own = plan.files["/etc/tinc/vpn/hosts/alpha"].content.redacted();
        assert!(own.contains("Subnet = 10.10.0.0/24\n") && !own.contains("/32"), "{own}");
        assert!(plan.files["/etc/tinc/vpn/tinc-down"]
            .content
            .redacted()
            .contains("ip link set dev \"$INTERFACE\" down"));
    }

    #[test]
    fn invalid_names_keys_and_addresses_are_pinned() {
        let err = try_test_plan("name = \"t\"\n[services.tinc]\nname = \"al-pha\"\naddress = \"10.10.0.1/24\"\n")
            .unwrap_err()
            .brief();
        assert_eq!(err, ["test.toml:3:8: invalid tinc name `al-pha`"]);

        let err = try_test_plan("name = \"t\"\n[services.tinc]\nname = \"a\"\naddress = \"10.10.0.0/24\"\n")
            .unwrap_err()
            .brief();
        assert!(
            err[0].starts_with("test.toml:4:11: invalid VPN address `10.10.0.0/24`: that is the network address"),
            "{err:?}"
        );
        assert!(err[0].contains("\"10.10.0.1/24\""), "{err:?}");

        let err = try_test_plan(
            "name = \"t\"\n[services.tinc]\nname = \"a\"\naddress = \"10.10.0.1/24\"\n\
             [[services.tinc.peers]]\nname = \"b\"\npublic_key = \"ssh-rsa AAAA\"\n",
        )
        .unwrap_err()
        .brief();
        assert_eq!(err, ["test.toml:7:14: invalid public key: expected a PEM block of several lines"]);
    }

    #[test]
    fn pem_armor_and_addresses_are_checked() {
        assert_eq!(check_pem(KEY), Ok(()));
        assert!(check_pem(&KEY.replace("END RSA", "END")).unwrap_err().contains("-----END RSA PUBLIC KEY-----"));
        assert!(check_pem(&KEY.replace("MIGJ", "MI$J")).unwrap_err().contains("base64"));
        assert!(VpnAddress::parse("10.10.0.255/24").unwrap_err().contains("broadcast"));
        assert!(VpnAddress::parse("10.10.0.1").is_err());
        assert_eq!(VpnAddress::parse("fd00::1/64").unwrap().host().to_string(), "fd00::1/128");
        assert_eq!(VpnAddress::parse("10.0.0.1/32").unwrap().net().len, 32);
    }
}
