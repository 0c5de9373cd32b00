//! The container network, host side and container side, over rtnetlink.
//!
//! Invariant: the network of a container is a list of typed [`Step`]s computed by pure
//! functions ([`setup_steps`], [`teardown_steps`]) from the plan's [`NetworkRes`] and the
//! container's name; [`run`] carries them out in order and nothing else touches links,
//! addresses, routes or sysctls. Every setup step is idempotent (replace semantics), so
//! re-applying an unchanged network changes nothing and duplicates nothing.
//!
//! Layout of a `routed` container named `web` (host end [`host_ifname`] = `ct-web`):
//! - a veth pair whose peer is created directly inside the container's namespace and
//!   named `eth0` there (IFLA_NET_NS_FD), so no temporary name or move is needed;
//! - container: `lo` up, `eth0` up, the /32 and /128 on `eth0`, routes
//!   `169.254.0.1 dev eth0 scope link`, `default via 169.254.0.1 dev eth0 onlink` and
//!   `default via fe80::1 dev eth0`, then the plan's `net.*` sysctls;
//! - host: `ct-web` up with 169.254.0.1/32 and fe80::1/64 (it answers as both
//!   gateways), routes `<v4>/32 dev ct-web`, `<v6>/128 dev ct-web`, routed prefixes
//!   `via <container address> dev ct-web`, forwarding on, `route_localnet` on `ct-web`
//!   when ports are published (so `127.0.0.1:PORT` DNAT works, see `nft`), optional
//!   proxy ARP (`proxy_arp` on the uplink) and proxy NDP (`proxy_ndp` + one proxy
//!   neighbour entry per IPv6 address on the uplink).
//!
//! Teardown removes exactly what this container added that outlives its veth: the
//! proxy neighbour entries, then the host end (which deletes the pair; the kernel drops
//! the addresses and every route through it, and the per-interface sysctls with it).
//! Host-wide settings shared by all containers stay: IPv4/IPv6 forwarding and
//! `proxy_arp`/`proxy_ndp` on the uplink (turning them off could cut another container
//! off). Proxy neighbours are made for the container's own IPv6 address only, not for
//! routed prefixes (NDP proxying works per address).
//!
//! The container side is reached through a netlink socket created inside its namespace
//! by a short-lived forked child (see `netns`): the calling process never changes
//! namespace, so this works from a single-threaded executor and from threaded tests.
//!
//! Conflicts: [`conflicts`] (pure) tells which of the host's routes ([`host_routes`]:
//! the main table and the host's own addresses, read from the kernel, so the same for
//! every state root) a container's /32, /128 and prefixes would take over. Route
//! replacement (above) would otherwise silently steal another container's route, and
//! when the thief's veth went, the victim's traffic would follow the default route.
//!
//! Names: every `name` here is the container's host key (its name under the default
//! state root, `<name>_<root tag>` under another; `runtime::layout::StateRoot::
//! host_key`), which is all [`host_ifname`] derives the veth from.
//!
//! Use: `setup(name, &plan.network, netns_fd)` once the container's network namespace
//! exists (fd from [`open_netns`] or `/run/netns/<name>`), before its services start;
//! `teardown(name, &plan.network)` on stop/destroy (works whether or not the namespace
//! still exists). NAT and published ports are the `nft` module's job.

mod netlink;
mod netns;

pub use netlink::Netlink;

use crate::plan::types::NetworkRes;
use crate::spec::types::NetMode;
use netlink_packet_route::address::AddressScope;
use std::ffi::CString;
use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

/// The host end's gateway addresses, as seen from inside every container.
pub const GATEWAY_V4: Ipv4Addr = Ipv4Addr::new(169, 254, 0, 1);
pub const GATEWAY_V6: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);
/// The container's end of the veth.
pub const CONTAINER_IF: &str = "eth0";

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("netlink socket: {0}")]
    Socket(#[source] std::io::Error),
    #[error("{what}: {source}")]
    Kernel {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("netlink: unreadable reply while {what}: {detail}")]
    Decode { what: String, detail: String },
    #[error("no interface `{0}`")]
    NoLink(String),
    #[error("invalid address `{value}` in the plan's network: {detail}")]
    BadAddress { value: String, detail: String },
    #[error("invalid interface name `{0}` (1-15 bytes, no `/`, whitespace, `.` or `..`)")]
    BadInterface(String),
    #[error("sysctl `{key}` is not a network setting of the form net.x.y")]
    BadSysctl { key: String },
    #[error("writing sysctl {path}: {source}")]
    Sysctl {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// Internal: a sysctl failed inside the namespace; `run` names it.
    #[error("writing sysctl #{index} in the container's namespace: {source}")]
    SysctlIndex {
        index: usize,
        #[source]
        source: std::io::Error,
    },
    #[error("entering the container's network namespace: {0}")]
    Netns(#[source] std::io::Error),
    #[error("a container-side step needs the container's network namespace")]
    NoNamespace,
    #[error("opening network namespace of pid {pid}: {source}")]
    OpenNetns {
        pid: i32,
        #[source]
        source: std::io::Error,
    },
}

impl NetError {
    /// The kernel's errno, when the kernel refused a request.
    pub fn errno(&self) -> Option<i32> {
        match self {
            NetError::Kernel { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}

/// Which network namespace a step runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Host,
    Container,
}

/// One thing to do to the network, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Create the veth pair `host` (host) / `peer` (inside the container's namespace).
    /// If `host` exists and the container already has `peer`, it is kept (re-apply);
    /// a stale `host` whose peer is elsewhere is replaced.
    CreateVeth {
        host: String,
        peer: String,
    },
    LinkUp {
        side: Side,
        dev: String,
    },
    /// Add or replace an address (IPv6 without DAD).
    Address {
        side: Side,
        dev: String,
        addr: IpAddr,
        prefix_len: u8,
        scope: Scope,
    },
    /// Add or replace a route `dst/prefix_len [via] dev [onlink]` in the main table.
    Route {
        side: Side,
        dev: String,
        dst: IpAddr,
        prefix_len: u8,
        via: Option<IpAddr>,
        onlink: bool,
    },
    /// Write `value` to `/proc/sys/<path>` as seen from `side`'s namespace.
    Sysctl {
        side: Side,
        path: String,
        value: String,
    },
    /// Add or replace a proxy neighbour entry (host side).
    ProxyNeighbour {
        dev: String,
        addr: IpAddr,
    },
    /// Remove a proxy neighbour entry; absent is fine.
    DeleteProxyNeighbour {
        dev: String,
        addr: IpAddr,
    },
    /// Delete a host interface; absent is fine.
    DeleteLink {
        dev: String,
    },
}

/// Address scope of a [`Step::Address`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Global,
    Link,
}

/// The host end's name for the container whose host key is `name`: `ct-<name>`, or,
/// when that would pass the kernel's 15-byte limit, `ct-` + the first 8 bytes + 4 hex
/// digits of a hash of the whole key (stable across versions: FNV-1a). The key is the
/// container's name under the default state root and `<name>_<root tag>` under any
/// other (`runtime::layout::StateRoot::host_key`), so the root is folded into the
/// name and two roots' containers of one name get two veths.
pub fn host_ifname(name: &str) -> String {
    if name.len() <= 12 {
        return format!("ct-{name}");
    }
    let mut h: u32 = 0x811c_9dc5;
    for b in name.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    let head: String = name.chars().take(8).collect();
    format!("ct-{head}{:04x}", (h ^ (h >> 16)) & 0xffff)
}

/// Parses "a.b.c.d/32" (or a bare address: a host prefix).
pub fn parse_addr(s: &str) -> Result<(IpAddr, u8), NetError> {
    let bad = |detail: &str| NetError::BadAddress { value: s.to_string(), detail: detail.to_string() };
    let (a, len) = match s.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (s, None),
    };
    let addr: IpAddr = a.parse().map_err(|_| bad("not an IP address"))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let len = match len {
        Some(l) => l.parse::<u8>().ok().filter(|l| *l <= max).ok_or_else(|| bad("bad prefix length"))?,
        None => max,
    };
    Ok((addr, len))
}

/// A network: address and prefix length.
pub type Network = (IpAddr, u8);

/// Whether the network `outer` contains `inner` (both `(address, prefix length)`;
/// equal networks contain each other; different families never).
pub fn covers((outer, olen): Network, (inner, ilen): Network) -> bool {
    let bits = |a: IpAddr| -> (u128, u8) {
        match a {
            IpAddr::V4(a) => (u128::from(u32::from(a)), 32),
            IpAddr::V6(a) => (u128::from(a), 128),
        }
    };
    let ((o, width), (i, iwidth)) = (bits(outer), bits(inner));
    if width != iwidth || olen > ilen || olen > width {
        return false;
    }
    let shift = u32::from(width - olen);
    shift >= 128 || (o >> shift) == (i >> shift)
}

/// `net.ipv4.ip_forward` → `net/ipv4/ip_forward`; only `net.*` keys, no path tricks.
fn sysctl_path(key: &str) -> Result<String, NetError> {
    let parts: Vec<&str> = key.split(['.', '/']).collect();
    let ok =
        parts.len() >= 3 && parts[0] == "net" && parts.iter().all(|p| !p.is_empty() && *p != ".." && !p.contains('\0'));
    if ok {
        Ok(parts.join("/"))
    } else {
        Err(NetError::BadSysctl { key: key.to_string() })
    }
}

/// An interface name the kernel could accept and that is safe inside a /proc/sys path.
fn check_ifname(name: &str) -> Result<(), NetError> {
    let ok = !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && !name.bytes().any(|b| b == b'/' || b == 0 || b.is_ascii_whitespace());
    if ok {
        Ok(())
    } else {
        Err(NetError::BadInterface(name.to_string()))
    }
}

/// The container's /32 and /128, if any.
fn addresses(net: &NetworkRes) -> Result<(Option<Ipv4Addr>, Option<Ipv6Addr>), NetError> {
    Ok((net.ipv4_addr(), net.ipv6_addr()))
}

/// Set in every container's own network namespace unless its plan says otherwise.
const PING_GROUP_RANGE: &str = "net.ipv4.ping_group_range";

/// What bringing up container `name`'s network takes, in order.
///
/// `host` mode needs nothing; `none` only brings the namespace's `lo` up.
pub fn setup_steps(name: &str, net: &NetworkRes) -> Result<Vec<Step>, NetError> {
    use Side::{Container as C, Host as H};
    let mut s = Vec::new();
    let ct_sysctls = |s: &mut Vec<Step>| -> Result<(), NetError> {
        // Containers lack CAP_NET_RAW (Podman's default set): ping works through
        // unprivileged ICMP sockets instead, for every group, as Docker sets it.
        if !net.sysctls.contains_key(PING_GROUP_RANGE) {
            s.push(Step::Sysctl { side: C, path: sysctl_path(PING_GROUP_RANGE)?, value: "0 2147483647".into() });
        }
        for (k, v) in &net.sysctls {
            s.push(Step::Sysctl { side: C, path: sysctl_path(k)?, value: v.clone() });
        }
        Ok(())
    };
    match net.mode {
        NetMode::Host => return Ok(s),
        NetMode::None => {
            s.push(Step::LinkUp { side: C, dev: "lo".into() });
            ct_sysctls(&mut s)?;
            return Ok(s);
        }
        NetMode::Routed => {}
    }
    let (v4, v6) = addresses(net)?;
    let host = host_ifname(name);
    let eth = CONTAINER_IF.to_string();
    s.push(Step::CreateVeth { host: host.clone(), peer: eth.clone() });

    // Container side. Links first: IPv4 refuses routes on a down interface.
    s.push(Step::LinkUp { side: C, dev: "lo".into() });
    s.push(Step::LinkUp { side: C, dev: eth.clone() });
    // Sysctls early: per-interface ones for eth0 exist now, and forwarding set before
    // addresses avoids flapping IPv6 router/host behaviour.
    ct_sysctls(&mut s)?;
    let gw4 = IpAddr::V4(GATEWAY_V4);
    let gw6 = IpAddr::V6(GATEWAY_V6);
    if let Some(a) = v4 {
        s.push(Step::Address { side: C, dev: eth.clone(), addr: a.into(), prefix_len: 32, scope: Scope::Global });
        s.push(Step::Route { side: C, dev: eth.clone(), dst: gw4, prefix_len: 32, via: None, onlink: false });
        s.push(Step::Route {
            side: C,
            dev: eth.clone(),
            dst: Ipv4Addr::UNSPECIFIED.into(),
            prefix_len: 0,
            via: Some(gw4),
            onlink: true,
        });
    }
    if let Some(a) = v6 {
        s.push(Step::Address { side: C, dev: eth.clone(), addr: a.into(), prefix_len: 128, scope: Scope::Global });
        s.push(Step::Route {
            side: C,
            dev: eth.clone(),
            dst: Ipv6Addr::UNSPECIFIED.into(),
            prefix_len: 0,
            via: Some(gw6),
            onlink: false,
        });
    }

    // Host side.
    s.push(Step::LinkUp { side: H, dev: host.clone() });
    if v4.is_some() {
        s.push(Step::Address { side: H, dev: host.clone(), addr: gw4, prefix_len: 32, scope: Scope::Link });
    }
    if v6.is_some() {
        s.push(Step::Address { side: H, dev: host.clone(), addr: gw6, prefix_len: 64, scope: Scope::Link });
    }
    if let Some(a) = v4 {
        s.push(Step::Route { side: H, dev: host.clone(), dst: a.into(), prefix_len: 32, via: None, onlink: false });
    }
    if let Some(a) = v6 {
        s.push(Step::Route { side: H, dev: host.clone(), dst: a.into(), prefix_len: 128, via: None, onlink: false });
    }
    for p in &net.prefixes {
        let (dst, prefix_len) = (p.0.addr, p.0.len);
        let via = match dst {
            IpAddr::V4(_) => v4.map(IpAddr::V4),
            IpAddr::V6(_) => v6.map(IpAddr::V6),
        };
        s.push(Step::Route { side: H, dev: host.clone(), dst, prefix_len, via, onlink: false });
    }
    let routes_v4 = v4.is_some() || net.prefixes.iter().any(|p| p.0.addr.is_ipv4());
    let routes_v6 = v6.is_some() || net.prefixes.iter().any(|p| p.0.addr.is_ipv6());
    let on = |path: String| Step::Sysctl { side: H, path, value: "1".into() };
    if routes_v4 {
        s.push(on("net/ipv4/ip_forward".into()));
    }
    if routes_v6 {
        s.push(on("net/ipv6/conf/all/forwarding".into()));
    }
    if v4.is_some() && !net.publish.is_empty() {
        // Lets DNAT from 127.0.0.1 leave through this veth (the kernel otherwise drops
        // loopback sources on other interfaces); `nft` masquerades those sources.
        s.push(on(format!("net/ipv4/conf/{host}/route_localnet")));
    }
    if let Some(uplink) = &net.proxy_arp {
        check_ifname(uplink)?;
        if v4.is_some() {
            s.push(on(format!("net/ipv4/conf/{uplink}/proxy_arp")));
        }
        if let Some(a) = v6 {
            s.push(on(format!("net/ipv6/conf/{uplink}/proxy_ndp")));
            s.push(Step::ProxyNeighbour { dev: uplink.to_string(), addr: a.into() });
        }
    }
    Ok(s)
}

/// What removing container `name`'s network takes (safe to run when nothing, or only
/// part, of it exists).
pub fn teardown_steps(name: &str, net: &NetworkRes) -> Result<Vec<Step>, NetError> {
    let mut s = Vec::new();
    if net.mode != NetMode::Routed {
        return Ok(s);
    }
    let (_, v6) = addresses(net)?;
    if let (Some(uplink), Some(a)) = (&net.proxy_arp, v6) {
        s.push(Step::DeleteProxyNeighbour { dev: uplink.to_string(), addr: a.into() });
    }
    s.push(Step::DeleteLink { dev: host_ifname(name) });
    Ok(s)
}

/// A route of the host that a container's addresses and prefixes must not take over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRoute {
    pub dst: IpAddr,
    pub prefix_len: u8,
    /// A `local` route of the local table (an address of the host) rather than a
    /// route of the main table.
    pub local: bool,
    /// The output interface, when the route has one.
    pub dev: Option<String>,
}

impl std::fmt::Display for HostRoute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.dst, self.prefix_len)?;
        if let Some(d) = &self.dev {
            write!(f, " dev {d}")?;
        }
        Ok(())
    }
}

/// The main table's routes and the host's own addresses (the local table's `local`
/// routes), both families, read from the kernel. These are the same for every state
/// root, so a check against them sees the containers of every root.
pub fn host_routes() -> Result<Vec<HostRoute>, NetError> {
    use netlink_packet_route::route::{RouteHeader, RouteType};
    let mut nl = Netlink::open()?;
    let names: std::collections::BTreeMap<u32, String> = nl.link_names()?.into_iter().collect();
    let mut out = Vec::new();
    for v6 in [false, true] {
        for netlink::RouteEntry { table, kind, protocol, dst, prefix_len, oif } in nl.routes(v6)? {
            // A stopped container's `unreachable` placeholder is the tool's own: it
            // holds the address for its owner (the registry keeps other roots off it).
            if is_placeholder(kind, protocol) {
                continue;
            }
            let local = match (table, kind) {
                (t, _) if t == u32::from(RouteHeader::RT_TABLE_MAIN) => false,
                (255, RouteType::Local) => true,
                _ => continue,
            };
            let dev = oif.and_then(|i| names.get(&i).cloned());
            out.push(HostRoute { dst, prefix_len, local, dev });
        }
    }
    Ok(out)
}

/// The routing protocol number (`proto 201` in `ip route`) of the routes the tool
/// adds as placeholders: `unreachable <address>` for each address and routed prefix
/// of a stopped or crashed container, so traffic to it is refused at once
/// (EHOSTUNREACH, ICMP host unreachable) instead of leaving by the default route.
pub const ROUTE_PROTOCOL: u8 = 201;

fn is_placeholder(
    kind: netlink_packet_route::route::RouteType,
    protocol: netlink_packet_route::route::RouteProtocol,
) -> bool {
    use netlink_packet_route::route::{RouteProtocol, RouteType};
    kind == RouteType::Unreachable && protocol == RouteProtocol::Other(ROUTE_PROTOCOL)
}

/// Put an `unreachable` placeholder route (see [`ROUTE_PROTOCOL`]) on each of the
/// container's addresses and routed prefixes (routed mode only; idempotent).
pub fn set_unreachable(net: &NetworkRes) -> Result<(), NetError> {
    let nets = own_networks(net)?;
    if nets.is_empty() {
        return Ok(());
    }
    let mut nl = Netlink::open()?;
    for (_, (dst, len)) in nets {
        nl.replace_unreachable(dst, len)?;
    }
    Ok(())
}

/// Remove the placeholders [`set_unreachable`] added (absent ones are fine; a real
/// route to the address is never touched: the kernel matches type and protocol).
pub fn clear_unreachable(net: &NetworkRes) -> Result<(), NetError> {
    let nets = own_networks(net)?;
    if nets.is_empty() {
        return Ok(());
    }
    let mut nl = Netlink::open()?;
    for (_, (dst, len)) in nets {
        match nl.delete_unreachable(dst, len) {
            Err(e) if matches!(e.errno(), Some(libc::ESRCH | libc::ENOENT)) => {}
            r => r?,
        }
    }
    Ok(())
}

/// Why a container's network may not be set up on this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// `network.ipv4`, `network.ipv6` or `network.prefixes`.
    pub field: &'static str,
    /// The container's network, "addr/len".
    pub net: String,
    /// The route it collides with.
    pub route: HostRoute,
    /// The route leads into another container's veth (`ct-*`).
    pub container_veth: bool,
}

/// The container's own networks: its /32, its /128 and its routed prefixes.
pub fn own_networks(net: &NetworkRes) -> Result<Vec<(&'static str, Network)>, NetError> {
    let mut out = Vec::new();
    if net.mode != NetMode::Routed {
        return Ok(out);
    }
    let (v4, v6) = addresses(net)?;
    out.extend(v4.map(|a| ("network.ipv4", (IpAddr::V4(a), 32))));
    out.extend(v6.map(|a| ("network.ipv6", (IpAddr::V6(a), 128))));
    for p in &net.prefixes {
        out.push(("network.prefixes", (p.0.addr, p.0.len)));
    }
    Ok(out)
}

/// The routes that container `name`'s addresses and prefixes would take over (pure).
///
/// Routes through the container's own veth are its own (a re-apply). A route into
/// another container's veth conflicts when the two networks overlap at all: the more
/// specific one would steal the other's traffic, and a replaced route would be gone
/// with its owner's veth. Any other route is the host's: it conflicts when the
/// container's network covers it (its own subnet, a more specific route, one of the
/// host's addresses); a host route that covers the container's network (the default
/// route, an uplink subnet with proxy ARP) is how routed containers work.
pub fn conflicts(name: &str, net: &NetworkRes, routes: &[HostRoute]) -> Result<Vec<Conflict>, NetError> {
    let own_veth = host_ifname(name);
    let mut out = Vec::new();
    for (field, mine) in own_networks(net)? {
        for r in routes {
            let theirs = (r.dst, r.prefix_len);
            let dev = r.dev.as_deref();
            if dev == Some(own_veth.as_str()) {
                continue;
            }
            let container_veth = dev.is_some_and(|d| d.starts_with("ct-"));
            let hit = if container_veth { covers(mine, theirs) || covers(theirs, mine) } else { covers(mine, theirs) };
            if hit {
                out.push(Conflict { field, net: format!("{}/{}", mine.0, mine.1), route: r.clone(), container_veth });
            }
        }
    }
    Ok(out)
}

/// Opens `/proc/<pid>/ns/net`, the handle [`setup`] and [`run`] take.
pub fn open_netns(pid: i32) -> Result<OwnedFd, NetError> {
    File::open(format!("/proc/{pid}/ns/net")).map(OwnedFd::from).map_err(|source| NetError::OpenNetns { pid, source })
}

/// Sets up container `name`'s network in the namespace `netns`.
pub fn setup(name: &str, net: &NetworkRes, netns: BorrowedFd<'_>) -> Result<(), NetError> {
    run(&setup_steps(name, net)?, Some(netns))
}

/// Removes what [`setup`] added that outlives the container's namespace.
pub fn teardown(name: &str, net: &NetworkRes) -> Result<(), NetError> {
    run(&teardown_steps(name, net)?, None)
}

/// Carries out `steps` in order. `netns` is needed as soon as a step is on the
/// container side. The host socket and the container socket are opened on first use.
pub fn run(steps: &[Step], netns: Option<BorrowedFd<'_>>) -> Result<(), NetError> {
    let mut ex = Exec { netns, host: None, ct: None };
    let mut i = 0;
    while i < steps.len() {
        // Consecutive container sysctls go to the namespace in one helper process.
        if let Step::Sysctl { side: Side::Container, .. } = &steps[i] {
            let mut batch = Vec::new();
            while let Some(Step::Sysctl { side: Side::Container, path, value }) = steps.get(i) {
                batch.push((path.as_str(), value.as_str()));
                i += 1;
            }
            ex.container_sysctls(&batch)?;
            continue;
        }
        ex.step(&steps[i])?;
        i += 1;
    }
    Ok(())
}

struct Exec<'a> {
    netns: Option<BorrowedFd<'a>>,
    host: Option<Netlink>,
    ct: Option<Netlink>,
}

fn proc_sys(path: &str) -> String {
    format!("/proc/sys/{path}")
}

impl Exec<'_> {
    fn netns(&self) -> Result<BorrowedFd<'_>, NetError> {
        self.netns.as_ref().map(|f| f.as_fd()).ok_or(NetError::NoNamespace)
    }

    fn host(&mut self) -> Result<&mut Netlink, NetError> {
        if self.host.is_none() {
            self.host = Some(Netlink::open()?);
        }
        self.host.as_mut().ok_or(NetError::NoNamespace)
    }

    fn ct(&mut self) -> Result<&mut Netlink, NetError> {
        if self.ct.is_none() {
            let fd = netns::run(self.netns()?, &netns::Job::Netlink)?
                .ok_or_else(|| NetError::Netns(std::io::Error::other("no socket came back")))?;
            self.ct = Some(Netlink::from_fd(fd)?);
        }
        self.ct.as_mut().ok_or(NetError::NoNamespace)
    }

    fn side(&mut self, side: Side) -> Result<&mut Netlink, NetError> {
        match side {
            Side::Host => self.host(),
            Side::Container => self.ct(),
        }
    }

    fn container_sysctls(&mut self, items: &[(&str, &str)]) -> Result<(), NetError> {
        let mut job = Vec::new();
        for (path, value) in items {
            let full = proc_sys(path);
            let c = CString::new(full.clone()).map_err(|_| NetError::BadSysctl { key: path.to_string() })?;
            job.push((c, value.as_bytes().to_vec()));
        }
        match netns::run(self.netns()?, &netns::Job::Sysctls(job)) {
            Ok(_) => Ok(()),
            Err(NetError::SysctlIndex { index, source }) => {
                Err(NetError::Sysctl { path: items.get(index).map(|(p, _)| proc_sys(p)).unwrap_or_default(), source })
            }
            Err(e) => Err(e),
        }
    }

    fn step(&mut self, step: &Step) -> Result<(), NetError> {
        match step {
            Step::CreateVeth { host, peer } => {
                if let Some(index) = self.host()?.link_index(host)? {
                    if self.ct()?.link_index(peer)?.is_some() {
                        return Ok(());
                    }
                    // Left over from an earlier namespace: replace it.
                    self.host()?.delete_link(index, host)?;
                }
                let netns = self.netns.ok_or(NetError::NoNamespace)?;
                self.host()?.create_veth(host, peer, netns)
            }
            Step::LinkUp { side, dev } => {
                let nl = self.side(*side)?;
                let index = nl.need_link(dev)?;
                nl.set_up(index, dev)
            }
            Step::Address { side, dev, addr, prefix_len, scope } => {
                let nl = self.side(*side)?;
                let index = nl.need_link(dev)?;
                let scope = match scope {
                    Scope::Global => AddressScope::Universe,
                    Scope::Link => AddressScope::Link,
                };
                nl.replace_address(index, dev, *addr, *prefix_len, scope)
            }
            Step::Route { side, dev, dst, prefix_len, via, onlink } => {
                let nl = self.side(*side)?;
                let index = nl.need_link(dev)?;
                nl.replace_route(index, dev, *dst, *prefix_len, *via, *onlink)
            }
            Step::Sysctl { side: Side::Container, path, value } => self.container_sysctls(&[(path, value)]),
            Step::Sysctl { side: Side::Host, path, value } => {
                let full = proc_sys(path);
                std::fs::write(&full, value).map_err(|source| NetError::Sysctl { path: full, source })
            }
            Step::ProxyNeighbour { dev, addr } => {
                let nl = self.host()?;
                let index = nl.need_link(dev)?;
                nl.replace_proxy_neighbour(index, dev, *addr)
            }
            Step::DeleteProxyNeighbour { dev, addr } => {
                let nl = self.host()?;
                let Some(index) = nl.link_index(dev)? else { return Ok(()) };
                match nl.delete_proxy_neighbour(index, dev, *addr) {
                    Err(e) if e.errno() == Some(libc::ENOENT) => Ok(()),
                    r => r,
                }
            }
            Step::DeleteLink { dev } => {
                let nl = self.host()?;
                let Some(index) = nl.link_index(dev)? else { return Ok(()) };
                match nl.delete_link(index, dev) {
                    // Gone meanwhile (its namespace died): that is what we wanted.
                    Err(e) if e.errno() == Some(libc::ENODEV) => Ok(()),
                    r => r,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, BTreeSet};

    fn res() -> NetworkRes {
        NetworkRes {
            mode: NetMode::Routed,
            ipv4: Some("100.72.0.2/32".parse().unwrap()),
            ipv6: Some("fd63:6f6e:7461:696e::2/128".parse().unwrap()),
            auto: false,
            nat: true,
            proxy_arp: None,
            prefixes: BTreeSet::new(),
            publish: BTreeSet::new(),
            nameservers: vec![],
            sysctls: BTreeMap::new(),
        }
    }

    #[test]
    fn host_ifname_fits_the_kernel_limit() {
        assert_eq!(host_ifname("web"), "ct-web");
        assert_eq!(host_ifname("abcdefghijkl"), "ct-abcdefghijkl");
        let long = host_ifname("abcdefghijklm");
        assert_eq!(long.len(), 15);
        assert!(long.starts_with("ct-abcdefgh"));
        assert_ne!(long, host_ifname("abcdefghijklx"));
        assert_eq!(host_ifname(&"a".repeat(31)).len(), 15);
        // Host keys of another state root (`<name>_<tag>`) fit too and stay apart.
        assert_eq!(host_ifname("web_1a2b3c4d"), "ct-web_1a2b3c4d");
        let (a, b) = (host_ifname("wordpress_1a2b3c4d"), host_ifname("wordpress_9f8e7d6c"));
        assert!(a.len() == 15 && b.len() == 15 && a != b && a != host_ifname("wordpress"), "{a} {b}");
        let long = "a".repeat(31);
        assert_ne!(host_ifname(&format!("{long}_1a2b3c4d")), host_ifname(&format!("{long}_9f8e7d6c")));
    }

    #[test]
    fn routed_setup_order_and_content() {
        let steps = setup_steps("web", &res()).unwrap();
        let first = &steps[0];
        assert_eq!(first, &Step::CreateVeth { host: "ct-web".into(), peer: "eth0".into() });
        let pos = |want: &Step| steps.iter().position(|s| s == want).unwrap_or_else(|| panic!("missing {want:?}"));
        let eth_up = pos(&Step::LinkUp { side: Side::Container, dev: "eth0".into() });
        let lo_up = pos(&Step::LinkUp { side: Side::Container, dev: "lo".into() });
        let ct_addr = pos(&Step::Address {
            side: Side::Container,
            dev: "eth0".into(),
            addr: "100.72.0.2".parse().unwrap(),
            prefix_len: 32,
            scope: Scope::Global,
        });
        let gw_route = pos(&Step::Route {
            side: Side::Container,
            dev: "eth0".into(),
            dst: "169.254.0.1".parse().unwrap(),
            prefix_len: 32,
            via: None,
            onlink: false,
        });
        let default4 = pos(&Step::Route {
            side: Side::Container,
            dev: "eth0".into(),
            dst: "0.0.0.0".parse().unwrap(),
            prefix_len: 0,
            via: Some("169.254.0.1".parse().unwrap()),
            onlink: true,
        });
        let default6 = pos(&Step::Route {
            side: Side::Container,
            dev: "eth0".into(),
            dst: "::".parse().unwrap(),
            prefix_len: 0,
            via: Some("fe80::1".parse().unwrap()),
            onlink: false,
        });
        let host_up = pos(&Step::LinkUp { side: Side::Host, dev: "ct-web".into() });
        let host_gw6 = pos(&Step::Address {
            side: Side::Host,
            dev: "ct-web".into(),
            addr: "fe80::1".parse().unwrap(),
            prefix_len: 64,
            scope: Scope::Link,
        });
        let host_route4 = pos(&Step::Route {
            side: Side::Host,
            dev: "ct-web".into(),
            dst: "100.72.0.2".parse().unwrap(),
            prefix_len: 32,
            via: None,
            onlink: false,
        });
        let host_route6 = pos(&Step::Route {
            side: Side::Host,
            dev: "ct-web".into(),
            dst: "fd63:6f6e:7461:696e::2".parse().unwrap(),
            prefix_len: 128,
            via: None,
            onlink: false,
        });
        let fwd4 = pos(&Step::Sysctl { side: Side::Host, path: "net/ipv4/ip_forward".into(), value: "1".into() });
        let fwd6 =
            pos(&Step::Sysctl { side: Side::Host, path: "net/ipv6/conf/all/forwarding".into(), value: "1".into() });
        assert!(lo_up < ct_addr && eth_up < ct_addr && ct_addr < gw_route && gw_route < default4);
        assert!(eth_up < default6);
        assert!(host_up < host_gw6 && host_up < host_route4 && host_up < host_route6);
        assert!(fwd4 > 0 && fwd6 > 0);
        // No proxying, no publishing: none of their steps.
        assert!(!steps.iter().any(|s| matches!(s, Step::ProxyNeighbour { .. })));
        assert!(!steps.iter().any(|s| matches!(s, Step::Sysctl { path, .. } if path.contains("route_localnet"))));
    }

    #[test]
    fn ipv4_only_has_no_ipv6_steps() {
        let mut n = res();
        n.ipv6 = None;
        let steps = setup_steps("a", &n).unwrap();
        let v6 = |s: &Step| match s {
            Step::Address { addr, .. } | Step::Route { dst: addr, .. } => addr.is_ipv6(),
            Step::Sysctl { path, .. } => path.contains("ipv6"),
            _ => false,
        };
        assert!(!steps.iter().any(v6), "{steps:#?}");
    }

    #[test]
    fn prefixes_proxy_publish_and_sysctls() {
        let mut n = res();
        n.prefixes.insert("64:ff9b::/96".parse().unwrap());
        n.prefixes.insert("100.72.9.0/24".parse().unwrap());
        n.proxy_arp = Some("eth1".parse().unwrap());
        n.publish.insert("8080:80/tcp".parse().unwrap());
        n.sysctls.insert("net.ipv6.conf.all.forwarding".into(), "1".into());
        let steps = setup_steps("nat", &n).unwrap();
        assert!(steps.contains(&Step::Route {
            side: Side::Host,
            dev: "ct-nat".into(),
            dst: "64:ff9b::".parse().unwrap(),
            prefix_len: 96,
            via: Some("fd63:6f6e:7461:696e::2".parse().unwrap()),
            onlink: false,
        }));
        assert!(steps.contains(&Step::Route {
            side: Side::Host,
            dev: "ct-nat".into(),
            dst: "100.72.9.0".parse().unwrap(),
            prefix_len: 24,
            via: Some("100.72.0.2".parse().unwrap()),
            onlink: false,
        }));
        assert!(steps.contains(&Step::Sysctl {
            side: Side::Host,
            path: "net/ipv4/conf/eth1/proxy_arp".into(),
            value: "1".into()
        }));
        assert!(steps.contains(&Step::Sysctl {
            side: Side::Host,
            path: "net/ipv6/conf/eth1/proxy_ndp".into(),
            value: "1".into()
        }));
        assert!(steps
            .contains(&Step::ProxyNeighbour { dev: "eth1".into(), addr: "fd63:6f6e:7461:696e::2".parse().unwrap() }));
        assert!(steps.contains(&Step::Sysctl {
            side: Side::Host,
            path: "net/ipv4/conf/ct-nat/route_localnet".into(),
            value: "1".into()
        }));
        assert!(steps.contains(&Step::Sysctl {
            side: Side::Container,
            path: "net/ipv6/conf/all/forwarding".into(),
            value: "1".into()
        }));
        let down = teardown_steps("nat", &n).unwrap();
        assert_eq!(
            down,
            vec![
                Step::DeleteProxyNeighbour { dev: "eth1".into(), addr: "fd63:6f6e:7461:696e::2".parse().unwrap() },
                Step::DeleteLink { dev: "ct-nat".into() },
            ]
        );
    }

    /// The plan shows what setup does on the host: its routes, proxy neighbours and
    /// host sysctls are the plan's host resources, one for one.
    #[test]
    fn the_plans_host_resources_are_what_setup_does_on_the_host() {
        use crate::plan::diff::ResourceKind as K;
        let mut n = res();
        n.prefixes.insert("64:ff9b::/96".parse().unwrap());
        n.prefixes.insert("100.72.9.0/24".parse().unwrap());
        n.proxy_arp = Some("eth1".parse().unwrap());
        n.publish.insert("8080:80/tcp".parse().unwrap());
        let steps = setup_steps("web", &n).unwrap();
        let mut from_steps: Vec<(K, String)> = Vec::new();
        for s in &steps {
            match s {
                Step::Route { side: Side::Host, dst, prefix_len, .. } => {
                    from_steps.push((K::Route, format!("{dst}/{prefix_len}")))
                }
                Step::ProxyNeighbour { dev, addr } => {
                    from_steps.push((K::Neighbour, format!("proxy {addr} dev {dev}")))
                }
                Step::Sysctl { side: Side::Host, path, .. } => {
                    from_steps.push((K::Sysctl, path.replace('/', ".").replace("ct-web", "(veth)")))
                }
                _ => {}
            }
        }
        let mut from_plan: Vec<(K, String)> = crate::plan::compile::host_effects(&n)
            .into_iter()
            .filter(|h| h.kind != K::Nft)
            .map(|h| (h.kind, h.name))
            .collect();
        from_steps.sort();
        from_plan.sort();
        assert_eq!(from_steps, from_plan);
    }

    #[test]
    fn other_modes() {
        let mut n = res();
        n.mode = NetMode::Host;
        assert!(setup_steps("a", &n).unwrap().is_empty());
        assert!(teardown_steps("a", &n).unwrap().is_empty());
        n.mode = NetMode::None;
        let ping = Step::Sysctl {
            side: Side::Container,
            path: "net/ipv4/ping_group_range".into(),
            value: "0 2147483647".into(),
        };
        assert_eq!(setup_steps("a", &n).unwrap(), vec![Step::LinkUp { side: Side::Container, dev: "lo".into() }, ping]);
        n.sysctls.insert("net.ipv4.ping_group_range".into(), "1 0".into());
        let steps = setup_steps("a", &n).unwrap();
        assert_eq!(steps.iter().filter(|s| matches!(s, Step::Sysctl { .. })).count(), 1, "{steps:?}");
    }

    fn route(dst: &str, len: u8, dev: &str, local: bool) -> HostRoute {
        HostRoute { dst: dst.parse().unwrap(), prefix_len: len, local, dev: Some(dev.into()) }
    }

    #[test]
    fn covers_compares_networks() {
        let n = |s: &str| parse_addr(s).unwrap();
        assert!(covers(n("100.72.0.0/16"), n("100.72.3.4/32")));
        assert!(covers(n("100.72.3.4/32"), n("100.72.3.4")));
        assert!(!covers(n("100.72.3.4/32"), n("100.72.0.0/16")));
        assert!(!covers(n("100.73.0.0/16"), n("100.72.3.4/32")));
        assert!(covers(n("0.0.0.0/0"), n("1.2.3.4/32")));
        assert!(covers(n("::/0"), n("fd63::1/128")));
        assert!(covers(n("64:ff9b::/96"), n("64:ff9b::a00:1/128")));
        assert!(!covers(n("0.0.0.0/0"), n("::/0")), "families never overlap");
    }

    #[test]
    fn conflicts_with_other_containers_and_host_routes() {
        let mut n = res();
        n.prefixes.insert("100.72.9.0/24".parse().unwrap());
        let routes = vec![
            // Its own routes (a re-apply) and covering host routes are fine.
            route("100.72.0.2", 32, "ct-web", false),
            route("100.72.9.0", 24, "ct-web", false),
            route("0.0.0.0", 0, "eth0", false),
            route("100.64.0.0", 10, "eth1", false),
            route("::", 0, "eth0", false),
            // Another container inside the prefix, one whose prefix covers web's v6.
            route("100.72.9.7", 32, "ct-db", false),
            route("fd63:6f6e:7461:696e::", 112, "ct-r", false),
            // A host route and a host address the prefix covers.
            route("100.72.9.128", 25, "eth1", false),
            route("100.72.9.1", 32, "eth1", true),
            // Not overlapping at all.
            route("100.72.0.3", 32, "ct-db2", false),
        ];
        let got = conflicts("web", &n, &routes).unwrap();
        let shown: Vec<String> = got.iter().map(|c| format!("{} {} {}", c.field, c.net, c.route)).collect();
        assert_eq!(
            shown,
            vec![
                "network.ipv6 fd63:6f6e:7461:696e::2/128 fd63:6f6e:7461:696e::/112 dev ct-r",
                "network.prefixes 100.72.9.0/24 100.72.9.7/32 dev ct-db",
                "network.prefixes 100.72.9.0/24 100.72.9.128/25 dev eth1",
                "network.prefixes 100.72.9.0/24 100.72.9.1/32 dev eth1",
            ]
        );
        assert_eq!(got.iter().map(|c| c.container_veth).collect::<Vec<_>>(), vec![true, true, false, false]);
        assert!(got[3].route.local);
        // Other modes have no routes to collide.
        n.mode = NetMode::Host;
        assert!(conflicts("web", &n, &routes).unwrap().is_empty());
    }

    #[test]
    fn bad_input_is_an_error() {
        // An IPv6 address in `ipv4` cannot be in a plan at all.
        assert!("fd00::1/128".parse::<crate::vocab::values::Ipv4Host>().is_err());
        let mut n = res();
        n.sysctls.insert("kernel.panic".into(), "1".into());
        assert!(matches!(setup_steps("a", &n), Err(NetError::BadSysctl { .. })));
        let mut n = res();
        n.sysctls.insert("net.ipv4.conf...x".into(), "1".into());
        assert!(matches!(setup_steps("a", &n), Err(NetError::BadSysctl { .. })));
        assert_eq!(sysctl_path("net.ipv4.ip_forward").unwrap(), "net/ipv4/ip_forward");
    }
}
