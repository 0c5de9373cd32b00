//! A small synchronous rtnetlink handle: one socket, sequence numbers, ACKs.
//!
//! Invariant: every request asks for an ACK and waits for the reply that carries
//! its own sequence number, so a kernel error (a negative errno in NLMSG_ERROR)
//! always surfaces as `NetError::Kernel` naming the request that failed. The
//! socket belongs to the network namespace it was created in, which is how the
//! container side is configured (see `super::netns`).

use super::NetError;
use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REPLACE,
    NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressMessage, AddressScope};
use netlink_packet_route::link::{InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage};
use netlink_packet_route::neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, BorrowedFd, IntoRawFd, OwnedFd};
use std::os::unix::io::FromRawFd;

/// Large enough for any single datagram the kernel sends to a default-sized reader.
const RECV_BUF: usize = 64 * 1024;

/// One route of a dump; the destination of a default route is the unspecified address.
#[derive(Debug, Clone)]
pub struct RouteEntry {
    pub table: u32,
    pub kind: RouteType,
    pub protocol: RouteProtocol,
    pub dst: IpAddr,
    pub prefix_len: u8,
    /// Output interface index, when the route has one.
    pub oif: Option<u32>,
}

/// An rtnetlink socket bound to one network namespace.
pub struct Netlink {
    sock: Socket,
    seq: u32,
    buf: Vec<u8>,
}

fn family(addr: &IpAddr) -> AddressFamily {
    match addr {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    }
}

fn route_addr(addr: &IpAddr) -> RouteAddress {
    match addr {
        IpAddr::V4(a) => RouteAddress::Inet(*a),
        IpAddr::V6(a) => RouteAddress::Inet6(*a),
    }
}

impl Netlink {
    /// A socket in the calling process's network namespace.
    pub fn open() -> Result<Self, NetError> {
        let sock = Socket::new(NETLINK_ROUTE).map_err(NetError::Socket)?;
        Self::init(sock)
    }

    /// Wraps a netlink socket created elsewhere (in another namespace).
    pub fn from_fd(fd: OwnedFd) -> Result<Self, NetError> {
        // SAFETY: we own `fd` and it is a NETLINK_ROUTE socket (made by `netns`).
        let sock = unsafe { Socket::from_raw_fd(fd.into_raw_fd()) };
        Self::init(sock)
    }

    fn init(mut sock: Socket) -> Result<Self, NetError> {
        sock.bind_auto().map_err(NetError::Socket)?;
        sock.connect(&SocketAddr::new(0, 0)).map_err(NetError::Socket)?;
        Ok(Netlink { sock, seq: 0, buf: Vec::with_capacity(RECV_BUF) })
    }

    fn send(&mut self, msg: RouteNetlinkMessage, flags: u16) -> Result<u32, NetError> {
        self.seq = self.seq.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags;
        header.sequence_number = self.seq;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(msg));
        packet.finalize();
        let mut out = vec![0u8; packet.buffer_len()];
        packet.serialize(&mut out);
        self.sock.send(&out, 0).map_err(NetError::Socket)?;
        Ok(self.seq)
    }

    /// Reads replies to `seq` until `done` says the exchange is over.
    /// `on_msg` sees every inner message; the result of an NLMSG_ERROR ends it.
    fn exchange(
        &mut self,
        seq: u32,
        what: &dyn Fn() -> String,
        mut on_msg: impl FnMut(RouteNetlinkMessage),
    ) -> Result<(), NetError> {
        loop {
            self.buf.clear();
            let n = self.sock.recv(&mut self.buf, 0).map_err(NetError::Socket)?;
            if n == 0 {
                return Err(NetError::Decode { what: what(), detail: "socket closed".into() });
            }
            let mut off = 0;
            while off < self.buf.len() {
                let msg = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&self.buf[off..])
                    .map_err(|e| NetError::Decode { what: what(), detail: e.to_string() })?;
                let len = msg.header.length as usize;
                if len == 0 {
                    return Err(NetError::Decode { what: what(), detail: "zero-length message".into() });
                }
                // Messages are 4-byte aligned in a datagram.
                off += (len + 3) & !3;
                if msg.header.sequence_number != seq {
                    // A late reply to an earlier request we stopped waiting for.
                    continue;
                }
                match msg.payload {
                    NetlinkPayload::Error(e) => {
                        return match e.code {
                            None => Ok(()),
                            Some(code) => Err(NetError::Kernel {
                                what: what(),
                                source: io::Error::from_raw_os_error(code.get().abs()),
                            }),
                        };
                    }
                    NetlinkPayload::Done(_) => return Ok(()),
                    NetlinkPayload::InnerMessage(m) => on_msg(m),
                    _ => {}
                }
            }
        }
    }

    /// Sends a change request and waits for its ACK.
    fn request(&mut self, msg: RouteNetlinkMessage, flags: u16, what: &dyn Fn() -> String) -> Result<(), NetError> {
        let seq = self.send(msg, flags | NLM_F_ACK)?;
        self.exchange(seq, what, |_| {})
    }

    /// The index of interface `name`, or None when there is none.
    pub fn link_index(&mut self, name: &str) -> Result<Option<u32>, NetError> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        let seq = self.send(RouteNetlinkMessage::GetLink(msg), NLM_F_ACK)?;
        let mut index = None;
        let r = self.exchange(seq, &|| format!("looking up interface {name}"), |m| {
            if let RouteNetlinkMessage::NewLink(l) = m {
                index = Some(l.header.index);
            }
        });
        match r {
            Ok(()) => Ok(index),
            Err(e) if e.errno() == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Like `link_index`, but a missing interface is an error.
    pub fn need_link(&mut self, name: &str) -> Result<u32, NetError> {
        self.link_index(name)?.ok_or_else(|| NetError::NoLink(name.to_string()))
    }

    /// Creates a veth pair: `host` here, `peer` directly inside the namespace `netns`
    /// (IFLA_NET_NS_FD on the peer), so the peer's name only has to be free there.
    pub fn create_veth(&mut self, host: &str, peer: &str, netns: BorrowedFd<'_>) -> Result<(), NetError> {
        let mut peer_msg = LinkMessage::default();
        peer_msg.attributes.push(LinkAttribute::IfName(peer.to_string()));
        peer_msg.attributes.push(LinkAttribute::NetNsFd(netns.as_raw_fd()));
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(host.to_string()));
        msg.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer_msg))),
        ]));
        self.request(RouteNetlinkMessage::NewLink(msg), NLM_F_CREATE | NLM_F_EXCL, &|| {
            format!("creating veth pair {host} / {peer}")
        })
    }

    /// Sets interface `index` (named `name` for messages) up.
    pub fn set_up(&mut self, index: u32, name: &str) -> Result<(), NetError> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.header.flags = LinkFlags::Up;
        msg.header.change_mask = LinkFlags::Up;
        self.request(RouteNetlinkMessage::SetLink(msg), 0, &|| format!("setting {name} up"))
    }

    /// Deletes interface `index`; deleting one end of a veth deletes both.
    pub fn delete_link(&mut self, index: u32, name: &str) -> Result<(), NetError> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        self.request(RouteNetlinkMessage::DelLink(msg), 0, &|| format!("deleting interface {name}"))
    }

    /// Adds (or replaces, so a re-apply is a no-op) an address on interface `index`.
    /// IPv6 addresses skip duplicate address detection: they are usable at once and
    /// the link is point-to-point by construction.
    pub fn replace_address(
        &mut self,
        index: u32,
        dev: &str,
        addr: IpAddr,
        prefix_len: u8,
        scope: AddressScope,
    ) -> Result<(), NetError> {
        let mut msg = AddressMessage::default();
        msg.header.family = family(&addr);
        msg.header.prefix_len = prefix_len;
        msg.header.scope = scope;
        msg.header.index = index;
        msg.attributes.push(AddressAttribute::Local(addr));
        msg.attributes.push(AddressAttribute::Address(addr));
        if addr.is_ipv6() {
            msg.attributes.push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        self.request(RouteNetlinkMessage::NewAddress(msg), NLM_F_CREATE | NLM_F_REPLACE, &|| {
            format!("adding address {addr}/{prefix_len} to {dev}")
        })
    }

    /// Adds or replaces a main-table unicast route `dst/prefix_len dev index [via gw] [onlink]`.
    /// A route without gateway has link scope; one with a gateway, universe scope.
    #[allow(clippy::too_many_arguments)]
    pub fn replace_route(
        &mut self,
        index: u32,
        dev: &str,
        dst: IpAddr,
        prefix_len: u8,
        via: Option<IpAddr>,
        onlink: bool,
    ) -> Result<(), NetError> {
        let mut msg = RouteMessage::default();
        msg.header.address_family = family(&dst);
        msg.header.destination_prefix_length = prefix_len;
        msg.header.table = RouteHeader::RT_TABLE_MAIN;
        msg.header.protocol = RouteProtocol::Static;
        msg.header.kind = RouteType::Unicast;
        msg.header.scope = if via.is_some() { RouteScope::Universe } else { RouteScope::Link };
        if onlink {
            msg.header.flags = RouteFlags::Onlink;
        }
        if prefix_len > 0 {
            msg.attributes.push(RouteAttribute::Destination(route_addr(&dst)));
        }
        if let Some(gw) = via {
            msg.attributes.push(RouteAttribute::Gateway(route_addr(&gw)));
        }
        msg.attributes.push(RouteAttribute::Oif(index));
        let shown = match via {
            Some(gw) => format!("{dst}/{prefix_len} via {gw} dev {dev}"),
            None => format!("{dst}/{prefix_len} dev {dev}"),
        };
        self.request(RouteNetlinkMessage::NewRoute(msg), NLM_F_CREATE | NLM_F_REPLACE, &|| {
            format!("adding route {shown}")
        })
    }

    fn unreachable(dst: IpAddr, prefix_len: u8) -> RouteMessage {
        let mut msg = RouteMessage::default();
        msg.header.address_family = family(&dst);
        msg.header.destination_prefix_length = prefix_len;
        msg.header.table = RouteHeader::RT_TABLE_MAIN;
        msg.header.protocol = RouteProtocol::Other(super::ROUTE_PROTOCOL);
        msg.header.kind = RouteType::Unreachable;
        msg.header.scope = RouteScope::Universe;
        msg.attributes.push(RouteAttribute::Destination(route_addr(&dst)));
        msg
    }

    /// Adds or replaces `unreachable dst/prefix_len proto <ours>` in the main table.
    pub fn replace_unreachable(&mut self, dst: IpAddr, prefix_len: u8) -> Result<(), NetError> {
        let msg = Self::unreachable(dst, prefix_len);
        self.request(RouteNetlinkMessage::NewRoute(msg), NLM_F_CREATE | NLM_F_REPLACE, &|| {
            format!("adding route unreachable {dst}/{prefix_len}")
        })
    }

    /// Deletes the tool's `unreachable dst/prefix_len` (only ours: the kernel matches
    /// the type and the protocol).
    pub fn delete_unreachable(&mut self, dst: IpAddr, prefix_len: u8) -> Result<(), NetError> {
        let msg = Self::unreachable(dst, prefix_len);
        self.request(RouteNetlinkMessage::DelRoute(msg), 0, &|| {
            format!("deleting route unreachable {dst}/{prefix_len}")
        })
    }

    fn proxy_neighbour(index: u32, addr: IpAddr) -> NeighbourMessage {
        let mut msg = NeighbourMessage::default();
        msg.header.family = family(&addr);
        msg.header.ifindex = index;
        msg.header.flags = NeighbourFlags::Proxy;
        msg.header.kind = RouteType::Unspec;
        msg.attributes.push(NeighbourAttribute::Destination(match addr {
            IpAddr::V4(a) => NeighbourAddress::Inet(a),
            IpAddr::V6(a) => NeighbourAddress::Inet6(a),
        }));
        msg
    }

    /// `ip neigh replace proxy ADDR dev DEV`: answer NDP/ARP for `addr` on `dev`.
    pub fn replace_proxy_neighbour(&mut self, index: u32, dev: &str, addr: IpAddr) -> Result<(), NetError> {
        let msg = Self::proxy_neighbour(index, addr);
        self.request(RouteNetlinkMessage::NewNeighbour(msg), NLM_F_CREATE | NLM_F_REPLACE, &|| {
            format!("adding proxy neighbour {addr} on {dev}")
        })
    }

    /// Removes a proxy neighbour entry.
    pub fn delete_proxy_neighbour(&mut self, index: u32, dev: &str, addr: IpAddr) -> Result<(), NetError> {
        let msg = Self::proxy_neighbour(index, addr);
        self.request(RouteNetlinkMessage::DelNeighbour(msg), 0, &|| format!("deleting proxy neighbour {addr} on {dev}"))
    }

    /// Every route of one family (a dump of all tables).
    pub fn routes(&mut self, v6: bool) -> Result<Vec<RouteEntry>, NetError> {
        let mut msg = RouteMessage::default();
        msg.header.address_family = if v6 { AddressFamily::Inet6 } else { AddressFamily::Inet };
        let seq = self.send(RouteNetlinkMessage::GetRoute(msg), NLM_F_DUMP)?;
        let mut out = Vec::new();
        self.exchange(seq, &|| "listing routes".into(), |m| {
            let RouteNetlinkMessage::NewRoute(r) = m else { return };
            let mut table = u32::from(r.header.table);
            let mut dst: IpAddr =
                if v6 { std::net::Ipv6Addr::UNSPECIFIED.into() } else { std::net::Ipv4Addr::UNSPECIFIED.into() };
            let mut oif = None;
            for a in r.attributes {
                match a {
                    RouteAttribute::Table(t) => table = t,
                    RouteAttribute::Destination(RouteAddress::Inet(a)) => dst = a.into(),
                    RouteAttribute::Destination(RouteAddress::Inet6(a)) => dst = a.into(),
                    RouteAttribute::Oif(i) => oif = Some(i),
                    _ => {}
                }
            }
            out.push(RouteEntry {
                table,
                kind: r.header.kind,
                protocol: r.header.protocol,
                dst,
                prefix_len: r.header.destination_prefix_length,
                oif,
            });
        })?;
        Ok(out)
    }

    /// Names of all interfaces of this namespace (a dump), for diagnostics and tests.
    pub fn link_names(&mut self) -> Result<Vec<(u32, String)>, NetError> {
        let seq = self.send(RouteNetlinkMessage::GetLink(LinkMessage::default()), NLM_F_DUMP)?;
        let mut out = Vec::new();
        self.exchange(seq, &|| "listing interfaces".into(), |m| {
            if let RouteNetlinkMessage::NewLink(l) = m {
                for a in l.attributes {
                    if let LinkAttribute::IfName(n) = a {
                        out.push((l.header.index, n));
                    }
                }
            }
        })?;
        Ok(out)
    }
}
