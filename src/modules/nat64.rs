//! nat64: stateless NAT64 with tayga 0.9.2 (Debian's `tayga`, bookworm and trixie), plus NAT44.
//!
//! IPv6 clients reach IPv4 hosts through `prefix`: the host routes the prefix to the
//! container, the kernel hands it to tayga's tun device `nat64`, tayga gives each IPv6
//! client an address of `ipv4_pool`, and nftables masquerades the pool behind the
//! container's own IPv4 address on eth0. With bind enabled, bind synthesizes AAAA
//! records inside the prefix (DNS64).
//!
//! Setup, as init tasks before any service (argv only, each idempotent): create the
//! persistent tun (`tayga --mktun`, skipped when it exists), bring it up, route the pool
//! and the prefix into it, load the masquerade table. Following the current tayga
//! README, no addresses go on the tun: routes are enough, and a "router address" taken
//! from the pool could collide with a dynamic mapping.
//!
//! The container's network namespace must forward IPv4 and IPv6
//! (net.ipv4.ip_forward, net.ipv6.conf.all.forwarding); /proc/sys is read-only inside,
//! so the plan carries them as network sysctls (`FORWARDING`) for the executor to set.

use super::bind::Dns64;
use super::{Ctx, Services};
use crate::diag::Problem;
use crate::vocab::plan::{InitTask, ServiceRes};
use crate::vocab::values::Mode;
use crate::vocab::values::{Cidr, Net};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::fmt::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

const CONF: &str = "/etc/tayga.conf";
const NFT: &str = "/etc/nftables-nat64.conf";
const DATA: &str = "/var/lib/tayga";
const TUN: &str = "nat64";
/// The sysctls the container's namespace needs for NAT64 (set by the executor).
pub const FORWARDING: [(&str, &str); 2] = [("net.ipv4.ip_forward", "1"), ("net.ipv6.conf.all.forwarding", "1")];

/// The well-known NAT64 prefix of RFC 6052.
const WKP: Ipv6Addr = Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0);

/// NAT64 settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct Nat64Settings {
    /// IPv6 /96 that maps the IPv4 Internet: IPv4 host a.b.c.d is reached at
    /// <prefix>a.b.c.d. The default well-known prefix 64:ff9b::/96 reaches public IPv4
    /// addresses only: tayga drops traffic to private ones (10/8, 172.16/12, 192.168/16,
    /// documentation and benchmark ranges, RFC 6052). Take a /96 of your own IPv6 space
    /// (e.g. "fd00:64::/96") to reach private IPv4 hosts.
    pub prefix: Cidr,
    /// IPv4 network whose addresses tayga hands to IPv6 clients (one per client).
    pub ipv4_pool: Cidr,
    /// tayga's own IPv4 address (source of its ICMP errors), inside `ipv4_pool`;
    /// default: the pool's first address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tayga_ipv4: Option<Ipv4Addr>,
    /// tayga's own IPv6 address (source of its ICMPv6 errors). Default: derived from the
    /// prefix; with the well-known prefix and a private `tayga_ipv4`, which tayga cannot
    /// derive from, the container's own IPv6 address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tayga_ipv6: Option<Ipv6Addr>,
    /// Have bind (when enabled) synthesize AAAA records inside `prefix` (DNS64).
    pub dns64: bool,
}

impl Default for Nat64Settings {
    fn default() -> Self {
        Nat64Settings {
            prefix: Cidr(Net { addr: IpAddr::V6(WKP), len: 96 }),
            ipv4_pool: Cidr(Net { addr: IpAddr::V4(Ipv4Addr::new(192, 168, 255, 0)), len: 24 }),
            tayga_ipv4: None,
            tayga_ipv6: None,
            dns64: true,
        }
    }
}

fn is_wkp(n: &Net) -> bool {
    n.addr == IpAddr::V6(WKP) && n.len == 96
}

/// A prefix tayga 0.9.2 accepts: an IPv6 /96 that is the well-known prefix or does not
/// start with a zero byte (tayga rejects those as reserved), nor multicast/link-local.
fn usable_prefix(n: &Net) -> Result<(), &'static str> {
    let IpAddr::V6(a) = n.addr else { return Err("must be an IPv6 network") };
    if n.len != 96 {
        return Err("must be a /96");
    }
    let first = a.octets()[0];
    if is_wkp(n) {
        Ok(())
    } else if first == 0 || first == 0xff || (a.segments()[0] & 0xffc0) == 0xfe80 {
        Err("is reserved: tayga 0.9.2 refuses it (of 64:ff9b::/16, only 64:ff9b::/96 itself works)")
    } else {
        Ok(())
    }
}

/// IPv4 ranges that tayga 0.9.2 refuses to map into the well-known prefix.
fn private_v4(a: Ipv4Addr) -> bool {
    let nets: [([u8; 4], u8); 7] = [
        ([10, 0, 0, 0], 8),
        ([172, 16, 0, 0], 12),
        ([192, 0, 2, 0], 24),
        ([192, 168, 0, 0], 16),
        ([198, 18, 0, 0], 15),
        ([198, 51, 100, 0], 24),
        ([203, 0, 113, 0], 24),
    ];
    nets.iter().any(|(n, l)| Net { addr: IpAddr::V4(Ipv4Addr::from(*n)), len: *l }.contains(IpAddr::V4(a)))
}

/// Tell bind about the prefix (DNS64) when both are enabled.
pub fn expand(s: &Nat64Settings, all: &mut Services, _problems: &mut Vec<Problem>) {
    if !s.dns64 || usable_prefix(&s.prefix.0).is_err() {
        return;
    }
    if let Some(bind) = all.bind.as_mut() {
        if !bind.dns64.iter().any(|d| d.prefix == s.prefix) {
            bind.dns64.push(Dns64 { prefix: s.prefix.clone(), clients: vec!["any".into()] });
        }
    }
}

pub fn compile(s: &Nat64Settings, _all: &Services, cx: &mut Ctx) {
    let net = &cx.plan.network;
    let (own4, own6) = (net.ipv4_addr(), net.ipv6_addr());
    let (Some(own4), Some(own6)) = (own4, own6) else {
        cx.error(
            "",
            "nat64 needs a routed network with ipv4 and ipv6 addresses",
            Some("set network.ipv4 and network.ipv6 (\"auto\")"),
        );
        return;
    };
    let prefix = s.prefix.0;
    let pool = s.ipv4_pool.0;
    let mut ok = true;
    if let Err(why) = usable_prefix(&prefix) {
        ok = false;
        cx.error(
            "prefix",
            format!("NAT64 prefix `{}` {why}", s.prefix),
            Some("use an IPv6 /96 such as \"64:ff9b::/96\""),
        );
    } else if prefix.contains(IpAddr::V6(own6)) {
        ok = false;
        cx.error("prefix", format!("NAT64 prefix `{}` contains the container's address {own6}", s.prefix), None);
    }
    let IpAddr::V4(pool_addr) = pool.addr else {
        cx.error(
            "ipv4_pool",
            format!("pool `{}` must be an IPv4 network", s.ipv4_pool),
            Some("e.g. \"192.168.255.0/24\""),
        );
        return;
    };
    if pool.len > 30
        || pool_addr.is_loopback()
        || pool_addr.is_link_local()
        || pool_addr.octets()[0] == 0
        || pool_addr.octets()[0] >= 224
    {
        ok = false;
        cx.error(
            "ipv4_pool",
            format!("pool `{}` is unusable: it must be an ordinary unicast network of /30 or larger", s.ipv4_pool),
            Some("e.g. \"192.168.255.0/24\""),
        );
    } else if pool.contains(IpAddr::V4(own4)) {
        ok = false;
        cx.error("ipv4_pool", format!("pool `{}` contains the container's address {own4}", s.ipv4_pool), None);
    }
    let tayga4 = s.tayga_ipv4.unwrap_or_else(|| Ipv4Addr::from(u32::from(pool_addr).wrapping_add(1)));
    if !pool.contains(IpAddr::V4(tayga4)) {
        ok = false;
        cx.error(
            "tayga_ipv4",
            format!("tayga_ipv4 {tayga4} is outside the pool {}", s.ipv4_pool),
            Some("pick an address of ipv4_pool"),
        );
    }
    let tayga6 = match s.tayga_ipv6 {
        Some(a) => {
            if a.segments()[..2] == [0x64, 0xff9b] || prefix.contains(IpAddr::V6(a)) {
                ok = false;
                cx.error(
                    "tayga_ipv6",
                    format!("tayga_ipv6 {a} must lie outside 64:ff9b::/32 and outside the prefix"),
                    Some("use an address of your own IPv6 space, or remove it"),
                );
            }
            Some(a)
        }
        None if is_wkp(&prefix) && private_v4(tayga4) => Some(own6),
        None => None,
    };
    if !ok {
        return;
    }

    cx.packages(&["tayga", "iproute2", "nftables"]);
    cx.device(crate::vocab::values::DeviceNode::tun());
    cx.route(s.prefix.clone());
    for (k, v) in FORWARDING {
        cx.sysctl(k, v);
    }
    cx.volume(DATA, "tayga", Some("root:root"), Some(Mode(0o755)));

    let mut conf = String::from("# Rendered by container (nat64 module).\n");
    let _ = writeln!(conf, "tun-device {TUN}\nipv4-addr {tayga4}");
    if let Some(a) = tayga6 {
        let _ = writeln!(conf, "ipv6-addr {a}");
    }
    let _ = writeln!(conf, "prefix {}\ndynamic-pool {}\ndata-dir {DATA}", s.prefix, s.ipv4_pool);
    cx.file(CONF, conf);

    // "table; delete table; table {...}" replaces the table atomically, also on reruns.
    cx.file(
        NFT,
        format!(
            "# Rendered by container (nat64 module): NAT44 of the NAT64 pool behind eth0.\n\
             table ip nat64\ndelete table ip nat64\ntable ip nat64 {{\n\tchain postrouting {{\n\
             \t\ttype nat hook postrouting priority srcnat; policy accept;\n\
             \t\tip saddr {} oifname \"eth0\" masquerade\n\t}}\n}}\n",
            s.ipv4_pool
        ),
    );

    // Init tasks run in id order before the services; ids are numbered for that.
    let pool_s = s.ipv4_pool.to_string();
    let prefix_s = s.prefix.to_string();
    // Making the tun device, its routes and the NAT44 table, and tayga attaching to the
    // device, all happen in the container's own network namespace and take
    // CAP_NET_ADMIN there.
    let net_admin = |t: InitTask| t.cap_add("NET_ADMIN");
    cx.init(
        "nat64-1-mktun",
        net_admin(InitTask::new(&["tayga", "--mktun", "--config", CONF]).creates(&format!("/sys/class/net/{TUN}"))),
    );
    cx.init("nat64-2-link-up", net_admin(InitTask::new(&["ip", "link", "set", "dev", TUN, "up"])));
    cx.init("nat64-3-route-pool", net_admin(InitTask::new(&["ip", "-4", "route", "replace", &pool_s, "dev", TUN])));
    cx.init("nat64-4-route-prefix", net_admin(InitTask::new(&["ip", "-6", "route", "replace", &prefix_s, "dev", TUN])));
    cx.init("nat64-5-masquerade", net_admin(InitTask::new(&["nft", "-f", NFT])));

    // -d: stay in the foreground and log to stdout. tayga logs with printf, so stdout
    // to the supervisor's log is block-buffered: stdbuf (coreutils) makes it line by
    // line, or the log stays empty until tayga exits. tayga exits on SIGHUP, so a
    // changed tayga.conf restarts it; the persistent tun keeps its routes meanwhile.
    cx.service(
        "tayga",
        ServiceRes::new(&["stdbuf", "-oL", "tayga", "-d", "--config", CONF]).uses(CONF).cap_add("NET_ADMIN"),
    );
}

#[cfg(test)]
mod tests {
    use crate::plan::compile::{test_plan, try_test_plan};

    const NET: &str = "name = \"gw\"\n[network]\nipv4 = \"auto\"\nipv6 = \"auto\"\n";

    #[test]
    fn tayga_conf_has_prefix_pool_and_setup_runs_as_argv() {
        let plan = test_plan(&format!("{NET}[services.nat64]\nprefix = \"fd00:64::/96\"\n"));
        let conf = plan.files["/etc/tayga.conf"].content.redacted();
        assert!(conf.contains("tun-device nat64\n"), "{conf}");
        assert!(conf.contains("ipv4-addr 192.168.255.1\n"), "{conf}");
        assert!(conf.contains("prefix fd00:64::/96\n"), "{conf}");
        assert!(conf.contains("dynamic-pool 192.168.255.0/24\n"), "{conf}");
        assert!(conf.contains("data-dir /var/lib/tayga\n"), "{conf}");
        assert!(!conf.contains("ipv6-addr"), "tayga derives it from a network-specific prefix: {conf}");
        assert!(plan.network.prefixes.contains(&"fd00:64::/96".parse().unwrap()));
        assert!(plan.devices.contains(&crate::vocab::values::DeviceNode::tun()));
        assert!(plan.services["tayga"].security.cap_add.contains("NET_ADMIN"));
        assert!(plan.init.values().all(|t| t.security.cap_add.contains("NET_ADMIN")));
        let mktun = &plan.init["nat64-1-mktun"];
        assert_eq!(mktun.command, ["tayga", "--mktun", "--config", "/etc/tayga.conf"]);
        assert_eq!(mktun.creates.as_deref(), Some("/sys/class/net/nat64"));
        assert_eq!(
            plan.init["nat64-4-route-prefix"].command,
            ["ip", "-6", "route", "replace", "fd00:64::/96", "dev", "nat64"]
        );
        assert_eq!(plan.init["nat64-5-masquerade"].command, ["nft", "-f", "/etc/nftables-nat64.conf"]);
        let nft = plan.files["/etc/nftables-nat64.conf"].content.redacted();
        assert!(nft.contains("ip saddr 192.168.255.0/24 oifname \"eth0\" masquerade"), "{nft}");
        assert_eq!(plan.services["tayga"].command, ["stdbuf", "-oL", "tayga", "-d", "--config", "/etc/tayga.conf"]);
        assert!(plan.mounts.contains_key("/var/lib/tayga"));
    }

    #[test]
    fn the_well_known_prefix_gets_an_explicit_ipv6_address() {
        let plan = test_plan(&format!("{NET}[services.nat64]\n"));
        let conf = plan.files["/etc/tayga.conf"].content.redacted();
        assert!(conf.contains("prefix 64:ff9b::/96\n"), "{conf}");
        let own = plan.network.ipv6_addr().unwrap();
        assert!(conf.contains(&format!("ipv6-addr {own}\n")), "{conf}");
    }

    #[test]
    fn nat64_fills_binds_dns64() {
        let plan = test_plan(&format!("{NET}[services.nat64]\n[services.bind]\nrecursion = true\n"));
        let opts = plan.files["/etc/bind/named.conf.options"].content.redacted();
        assert!(opts.contains("\tdns64 64:ff9b::/96 {\n\t\tclients { any; };\n\t};\n"), "{opts}");
        let plan = test_plan(&format!("{NET}[services.nat64]\ndns64 = false\n[services.bind]\n"));
        let opts = plan.files["/etc/bind/named.conf.options"].content.redacted();
        assert!(!opts.contains("dns64"), "{opts}");
    }

    #[test]
    fn nat64_rejects_a_prefix_that_is_not_a_96() {
        let err = try_test_plan(&format!("{NET}[services.nat64]\nprefix = \"64:ff9b::/64\"\n")).unwrap_err();
        let brief = err.brief().join("\n");
        assert!(brief.contains("test.toml:6:10: NAT64 prefix `64:ff9b::/64` must be a /96"), "{brief}");
    }

    #[test]
    fn nat64_needs_both_addresses() {
        let err = try_test_plan("name = \"gw\"\n[network]\nipv4 = \"auto\"\n[services.nat64]\n").unwrap_err();
        let brief = err.brief().join("\n");
        assert!(brief.contains("nat64 needs a routed network with ipv4 and ipv6 addresses"), "{brief}");
    }
}
