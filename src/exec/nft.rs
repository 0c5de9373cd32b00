//! The tool's nftables table: the network fences, NAT (masquerade) and published
//! ports (DNAT).
//!
//! Invariant: the tool owns one table per state root, `table inet container` for the
//! default root (`container_<hash>` for others, named by `runtime::layout`; IPv4 and IPv6),
//! and always rewrites it whole from the desired state of ALL that root's containers, in one
//! nftables transaction (`nft -j -f -`, JSON batch on stdin): either every rule of the
//! new state is in place or the old table is untouched. The batch starts with
//! `add table` + `delete table`, so the delete never fails on a host without the table,
//! then recreates it; with no rules wanted, the table is simply left deleted.
//!
//! Content (every rule carries the comment `container:<name>`):
//! - `fence` (filter, prerouting, priority raw = -300: before conntrack and NAT, so
//!   it sees what the container really sent), four drop rules per routed container,
//!   matched on `iifname "<veth>"`:
//!   `ip saddr != { <v4>, <v4 prefixes> } drop` (any IPv4 without a v4 address or
//!   prefix), `ip daddr 127.0.0.0/8 drop`, `ip6 saddr != { <v6>, <v6 prefixes>,
//!   fe80::/10 } drop` and `ip6 daddr ::1 drop`. So a container's packets carry one
//!   of its own addresses (the routed prefixes count: a router such as tayga sends
//!   from them; link-local for NDP), and nothing from a container reaches the host's
//!   loopback services, not even with `route_localnet` on its veth or through a
//!   DNAT of a port published on `127.0.0.1:` (the drop comes before the DNAT).
//! - `postrouting` (nat, srcnat): `ip saddr <v4> oifname != "<veth>" masquerade` per
//!   container with `nat` (IPv4 only: containers have routed, global IPv6 addresses);
//!   plus `ip saddr 127.0.0.0/8 oifname "<veth>" masquerade` for containers with an
//!   IPv4 address and published ports.
//! - `prerouting` (nat, dstnat) and `output` (nat, dstnat, for connections made by the
//!   host itself) with one DNAT rule per publish entry and family the container has an
//!   address for: `[ip daddr X | fib daddr type local] meta nfproto ipv4 tcp dport P
//!   dnat ip to <v4>:<port>` and the `ip6` equivalent. Without a host address the rule
//!   only matches destinations local to the host (`fib daddr type local`), so traffic
//!   merely routed through the host to other machines is never hijacked.
//! - No accept rules: an accept in our own table could not override a drop verdict of
//!   another table's forward chain (nftables evaluates every base chain of a hook), so
//!   a host with a drop policy elsewhere must allow `ct-*` there itself. A drop in our
//!   table does hold against other tables' accepts, which is why the fence is
//!   drop-only. Every routed container has fence rules; the runtime keeps them (and
//!   the masquerades) while it is stopped, so only the DNATs of a publishing one
//!   change when it starts or stops, and a start or stop of one that publishes
//!   nothing runs no `nft` (~20 ms).
//!
//! Loopback: `127.0.0.1:PORT` from the host works because `net` sets
//! `net.ipv4.conf.<veth>.route_localnet=1` for containers with published ports (the
//! kernel otherwise refuses to route a 127/8 source out of a non-loopback interface)
//! and the 127/8 masquerade above rewrites the source to a global-scope host address
//! (the kernel's choice; the veth's 169.254.0.1 is link scope), which the container
//! answers through its default route. The fence does not get in the way: the answers
//! come from the container's own address to a global one. IPv6 has no equivalent (`::1` is never routed off `lo`),
//! so `[::1]:PORT` publishing does not reach the container.
//!
//! Use: `apply(&[ContainerNet::from_plan(name, &plan.network)?, ...])` with every
//! running container after any start, stop or network change; `apply(&[])` removes the
//! table. Callers must serialise calls (the executor's lock does): two concurrent
//! applies are each atomic, but the last one wins.

use crate::plan::types::NetworkRes;
use crate::spec::values::PublishRule;
use serde_json::{json, Value};
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::process::{Command, Stdio};

/// The table's family and name.
pub const FAMILY: &str = "inet";
pub const TABLE: &str = "container";

#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error("running `nft`: {0} (is the nftables package installed?)")]
    Spawn(#[source] std::io::Error),
    #[error("`nft -j -f -` failed ({status}): {stderr}")]
    Failed { status: String, stderr: String },
    #[error("container {name}: {detail}")]
    Plan { name: String, detail: String },
}

/// What one container needs from the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerNet {
    pub name: String,
    pub ipv4: Option<Ipv4Addr>,
    pub ipv6: Option<Ipv6Addr>,
    /// Masquerade outgoing IPv4 behind the host.
    pub nat: bool,
    pub publish: Vec<PublishRule>,
    /// Host end of the container's veth (`net::host_ifname`).
    pub veth: String,
    /// Networks routed to the container (`network.prefixes`): allowed as sources.
    pub prefixes: Vec<(IpAddr, u8)>,
}

impl ContainerNet {
    /// From a plan's network section. Non-routed containers need nothing (None).
    pub fn from_plan(name: &str, net: &NetworkRes) -> Result<Option<Self>, NftError> {
        if net.mode != crate::spec::types::NetMode::Routed {
            return Ok(None);
        }
        let (ipv4, ipv6) = (net.ipv4_addr(), net.ipv6_addr());
        let publish = net.publish.iter().map(|p| p.0.clone()).collect();
        let prefixes = net.prefixes.iter().map(|p| (p.0.addr, p.0.len)).collect();
        Ok(Some(ContainerNet {
            name: name.to_string(),
            ipv4,
            ipv6,
            nat: net.nat,
            publish,
            veth: crate::exec::net::host_ifname(name),
            prefixes,
        }))
    }
}

fn table(t: &str) -> Value {
    json!({"family": FAMILY, "name": t})
}

fn chain(t: &str, name: &str, kind: &str, hook: &str, prio: i32) -> Value {
    json!({"add": {"chain": {
        "family": FAMILY, "table": t, "name": name,
        "type": kind, "hook": hook, "prio": prio, "policy": "accept"
    }}})
}

fn rule(t: &str, chain: &str, owner: &str, expr: Vec<Value>) -> Value {
    json!({"add": {"rule": {
        "family": FAMILY, "table": t, "chain": chain,
        "comment": format!("container:{owner}"), "expr": expr
    }}})
}

fn eq(left: Value, right: Value) -> Value {
    json!({"match": {"op": "==", "left": left, "right": right}})
}

fn ne(left: Value, right: Value) -> Value {
    json!({"match": {"op": "!=", "left": left, "right": right}})
}

fn payload(protocol: &str, field: &str) -> Value {
    json!({"payload": {"protocol": protocol, "field": field}})
}

fn meta(key: &str) -> Value {
    json!({"meta": {"key": key}})
}

fn prefix(addr: &str, len: u8) -> Value {
    json!({"prefix": {"addr": addr, "len": len}})
}

/// `net` as an nftables value: a plain address for a host prefix, else a prefix.
fn net_value(addr: IpAddr, len: u8) -> Value {
    let host = if addr.is_ipv4() { 32 } else { 128 };
    if len == host {
        json!(addr.to_string())
    } else {
        prefix(&addr.to_string(), len)
    }
}

/// The fence of one container's veth for one family: its drop rules.
fn fence(c: &ContainerNet, v6: bool) -> Vec<Vec<Value>> {
    let (l3, nfproto) = if v6 { ("ip6", "ipv6") } else { ("ip", "ipv4") };
    let own = if v6 { c.ipv6.map(|a| (IpAddr::V6(a), 128)) } else { c.ipv4.map(|a| (IpAddr::V4(a), 32)) };
    let mut allowed: Vec<(IpAddr, u8)> =
        own.into_iter().chain(c.prefixes.iter().copied().filter(|(a, _)| a.is_ipv6() == v6)).collect();
    if v6 {
        allowed.push((IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0)), 10));
    }
    // nftables refuses overlapping intervals in one set: keep only the widest.
    allowed.sort_by_key(|(a, l)| (*l, *a));
    allowed.dedup();
    let mut kept: Vec<(IpAddr, u8)> = Vec::new();
    for n in allowed {
        if !kept.iter().any(|k| crate::exec::net::covers(*k, n)) {
            kept.push(n);
        }
    }
    let iif = eq(meta("iifname"), json!(c.veth));
    let family = eq(meta("nfproto"), json!(nfproto));
    let mut source = vec![iif.clone(), family];
    match kept.as_slice() {
        [] => {}
        [one] => source.push(ne(payload(l3, "saddr"), net_value(one.0, one.1))),
        many => {
            let set: Vec<Value> = many.iter().map(|(a, l)| net_value(*a, *l)).collect();
            source.push(ne(payload(l3, "saddr"), json!({"set": set})));
        }
    }
    source.push(json!({"drop": null}));
    let lo = if v6 { json!(Ipv6Addr::LOCALHOST.to_string()) } else { prefix("127.0.0.0", 8) };
    let loopback = vec![iif, eq(payload(l3, "daddr"), lo), json!({"drop": null})];
    vec![source, loopback]
}

/// DNAT rules of one publish entry for one address family.
fn dnat(p: &PublishRule, to: IpAddr) -> Option<Vec<Value>> {
    let (l3, nfproto) = match to {
        IpAddr::V4(_) => ("ip", "ipv4"),
        IpAddr::V6(_) => ("ip6", "ipv6"),
    };
    let mut expr = Vec::new();
    match p.host_ip {
        // A host address of the other family: this entry is not for this family.
        Some(h) if h.is_ipv4() != to.is_ipv4() => return None,
        Some(h) => expr.push(eq(payload(l3, "daddr"), json!(h.to_string()))),
        None => {
            expr.push(eq(meta("nfproto"), json!(nfproto)));
            expr.push(eq(json!({"fib": {"result": "type", "flags": ["daddr"]}}), json!("local")));
        }
    }
    let proto = p.proto.to_string();
    expr.push(eq(payload(&proto, "dport"), json!(p.host_port)));
    expr.push(json!({"dnat": {"family": l3, "addr": to.to_string(), "port": p.container_port}}));
    Some(expr)
}

/// The whole transaction for `desired` (pure; what `apply` feeds to `nft`).
pub fn batch(desired: &[ContainerNet]) -> Value {
    batch_for(TABLE, desired)
}

/// [`batch`] for the table named `t`.
pub fn batch_for(t: &str, desired: &[ContainerNet]) -> Value {
    let mut cmds = vec![
        json!({"metainfo": {"json_schema_version": 1}}),
        json!({"add": {"table": table(t)}}),
        json!({"delete": {"table": table(t)}}),
    ];
    let mut post = Vec::new();
    let mut dnats = Vec::new();
    let mut fences = Vec::new();
    for c in desired {
        for v6 in [false, true] {
            fences.extend(fence(c, v6).into_iter().map(|expr| rule(t, "fence", &c.name, expr)));
        }
        if let (true, Some(v4)) = (c.nat, c.ipv4) {
            post.push(rule(
                t,
                "postrouting",
                &c.name,
                vec![
                    eq(payload("ip", "saddr"), json!(v4.to_string())),
                    ne(meta("oifname"), json!(c.veth)),
                    json!({"masquerade": null}),
                ],
            ));
        }
        if c.ipv4.is_some() && !c.publish.is_empty() {
            post.push(rule(
                t,
                "postrouting",
                &c.name,
                vec![
                    eq(payload("ip", "saddr"), prefix("127.0.0.0", 8)),
                    eq(meta("oifname"), json!(c.veth)),
                    json!({"masquerade": null}),
                ],
            ));
        }
        for p in &c.publish {
            let targets = c.ipv4.map(IpAddr::V4).into_iter().chain(c.ipv6.map(IpAddr::V6));
            for to in targets {
                if let Some(expr) = dnat(p, to) {
                    dnats.push((c.name.clone(), expr));
                }
            }
        }
    }
    if post.is_empty() && dnats.is_empty() && fences.is_empty() {
        return json!({ "nftables": cmds });
    }
    cmds.push(json!({"add": {"table": table(t)}}));
    // Standard priorities: raw = -300, dstnat = -100, srcnat = 100.
    cmds.push(chain(t, "fence", "filter", "prerouting", -300));
    cmds.extend(fences);
    cmds.push(chain(t, "prerouting", "nat", "prerouting", -100));
    cmds.push(chain(t, "output", "nat", "output", -100));
    cmds.push(chain(t, "postrouting", "nat", "postrouting", 100));
    for (owner, expr) in &dnats {
        cmds.push(rule(t, "prerouting", owner, expr.clone()));
        cmds.push(rule(t, "output", owner, expr.clone()));
    }
    cmds.extend(post);
    json!({ "nftables": cmds })
}

/// Makes the table match `desired`, atomically.
pub fn apply(desired: &[ContainerNet]) -> Result<(), NftError> {
    apply_to(TABLE, desired)
}

/// [`apply`] to the table named `t` (the runtime names one table per state root).
pub fn apply_to(t: &str, desired: &[ContainerNet]) -> Result<(), NftError> {
    run_nft(&batch_for(t, desired))
}

/// How many rules the table holds for `c` (what [`batch_for`] adds for it alone).
pub fn rule_count(c: &ContainerNet) -> usize {
    let b = batch_for(TABLE, std::slice::from_ref(c));
    b["nftables"].as_array().map(|a| a.iter().filter(|x| x["add"]["rule"].is_object()).count()).unwrap_or(0)
}

/// The rules in table `t` by owner (the `container:<name>` comment), as the kernel
/// has them now (`nft -j list table`). A missing table holds none.
pub fn rules_by_owner(t: &str) -> Result<std::collections::BTreeMap<String, usize>, NftError> {
    let out = Command::new("nft")
        .args(["-j", "list", "table", FAMILY, t])
        .stdin(Stdio::null())
        .output()
        .map_err(NftError::Spawn)?;
    let mut owners = std::collections::BTreeMap::new();
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        if stderr.contains("No such file or directory") {
            return Ok(owners);
        }
        return Err(NftError::Failed { status: out.status.to_string(), stderr });
    }
    let v: Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| NftError::Failed { status: "unreadable output".into(), stderr: e.to_string() })?;
    for item in v["nftables"].as_array().into_iter().flatten() {
        let r = &item["rule"];
        if r["table"] != t {
            continue;
        }
        if let Some(owner) = r["comment"].as_str().and_then(|c| c.strip_prefix("container:")) {
            *owners.entry(owner.to_string()).or_insert(0) += 1;
        }
    }
    Ok(owners)
}

fn run_nft(batch: &Value) -> Result<(), NftError> {
    let mut child = Command::new("nft")
        .args(["-j", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(NftError::Spawn)?;
    if let Some(mut stdin) = child.stdin.take() {
        // A write error means nft exited early; its status and stderr tell why.
        let _ = stdin.write_all(batch.to_string().as_bytes());
    }
    let out = child.wait_with_output().map_err(NftError::Spawn)?;
    if out.status.success() {
        Ok(())
    } else {
        Err(NftError::Failed {
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::values::Publish;

    fn web() -> ContainerNet {
        ContainerNet {
            name: "web".into(),
            ipv4: Some("100.72.0.2".parse().unwrap()),
            ipv6: Some("fd63:6f6e:7461:696e::2".parse().unwrap()),
            nat: true,
            publish: vec![
                Publish::parse("8080:80").unwrap().0,
                Publish::parse("127.0.0.1:5353:53/udp").unwrap().0,
                Publish::parse("[fd63::1]:8443:443").unwrap().0,
            ],
            veth: "ct-web".into(),
            prefixes: vec![],
        }
    }

    fn rules(b: &Value, chain: &str) -> Vec<Value> {
        b["nftables"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|c| c["add"]["rule"].as_object())
            .filter(|r| r["chain"] == chain)
            .map(|r| Value::Object(r.clone()))
            .collect()
    }

    #[test]
    fn empty_state_only_deletes_the_table() {
        let b = batch(&[]);
        let cmds = b["nftables"].as_array().unwrap();
        assert_eq!(cmds.len(), 3);
        assert_eq!(cmds[1], json!({"add": {"table": {"family": "inet", "name": "container"}}}));
        assert_eq!(cmds[2], json!({"delete": {"table": {"family": "inet", "name": "container"}}}));
    }

    #[test]
    fn masquerade_only_ipv4_of_nat_containers() {
        let mut other = web();
        other.name = "db".into();
        other.veth = "ct-db".into();
        other.ipv4 = Some("100.72.0.3".parse().unwrap());
        other.nat = false;
        other.publish.clear();
        let b = batch(&[web(), other]);
        let post = rules(&b, "postrouting");
        let masq: Vec<&Value> = post.iter().filter(|r| r["expr"][0]["match"]["right"] == json!("100.72.0.2")).collect();
        assert_eq!(masq.len(), 1);
        assert_eq!(masq[0]["comment"], "container:web");
        assert_eq!(
            masq[0]["expr"][1],
            json!({"match": {"op": "!=", "left": {"meta": {"key": "oifname"}}, "right": "ct-web"}})
        );
        assert_eq!(masq[0]["expr"][2], json!({"masquerade": null}));
        assert!(!post.iter().any(|r| r["comment"] == "container:db"), "db has nat = false");
        // The loopback masquerade for web's published ports.
        assert!(post
            .iter()
            .any(|r| r["expr"][0]["match"]["right"] == json!({"prefix": {"addr": "127.0.0.0", "len": 8}})
                && r["expr"][1]["match"]["right"] == "ct-web"));
    }

    #[test]
    fn publish_makes_dnat_per_family() {
        let b = batch(&[web()]);
        let pre = rules(&b, "prerouting");
        let out = rules(&b, "output");
        assert_eq!(pre.len(), out.len());
        // 8080:80 → v4 and v6; 127.0.0.1:5353 → v4 only; [fd63::1]:8443 → v6 only.
        assert_eq!(pre.len(), 4, "{pre:#?}");
        let dnat_of = |r: &Value| r["expr"].as_array().unwrap().last().unwrap()["dnat"].clone();
        let any = &pre[0];
        assert_eq!(
            any["expr"][0],
            json!({"match": {"op": "==", "left": {"meta": {"key": "nfproto"}}, "right": "ipv4"}})
        );
        assert_eq!(any["expr"][1]["match"]["left"], json!({"fib": {"result": "type", "flags": ["daddr"]}}));
        assert_eq!(
            any["expr"][2],
            json!({"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": 8080}})
        );
        assert_eq!(dnat_of(any), json!({"family": "ip", "addr": "100.72.0.2", "port": 80}));
        assert_eq!(dnat_of(&pre[1]), json!({"family": "ip6", "addr": "fd63:6f6e:7461:696e::2", "port": 80}));
        let udp = &pre[2];
        assert_eq!(
            udp["expr"][0],
            json!({"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "daddr"}}, "right": "127.0.0.1"}})
        );
        assert_eq!(udp["expr"][1]["match"]["left"]["payload"]["protocol"], "udp");
        assert_eq!(dnat_of(udp), json!({"family": "ip", "addr": "100.72.0.2", "port": 53}));
        let v6 = &pre[3];
        assert_eq!(v6["expr"][0]["match"]["left"]["payload"]["protocol"], "ip6");
        assert_eq!(dnat_of(v6), json!({"family": "ip6", "addr": "fd63:6f6e:7461:696e::2", "port": 443}));
        assert!(pre.iter().chain(&out).all(|r| r["comment"] == "container:web"));
    }

    #[test]
    fn fence_drops_foreign_sources_and_loopback_destinations() {
        let mut c = web();
        c.prefixes = vec![
            ("64:ff9b::".parse().unwrap(), 96),
            ("100.72.9.0".parse().unwrap(), 24),
            // Inside the /24: merged away (nftables refuses overlapping intervals).
            ("100.72.9.128".parse().unwrap(), 25),
        ];
        let fence = rules(&batch(&[c]), "fence");
        assert_eq!(fence.len(), 4, "{fence:#?}");
        assert!(fence.iter().all(|r| r["comment"] == "container:web"
            && r["expr"][0]
                == json!({"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "ct-web"}})
            && *r["expr"].as_array().unwrap().last().unwrap() == json!({"drop": null})));
        let saddr = |l3: &str| {
            fence
                .iter()
                .find_map(|r| {
                    r["expr"].as_array().unwrap().iter().find_map(|e| {
                        (e["match"]["left"] == json!({"payload": {"protocol": l3, "field": "saddr"}}))
                            .then(|| e["match"].clone())
                    })
                })
                .unwrap_or_else(|| panic!("no {l3} saddr rule"))
        };
        assert_eq!(saddr("ip")["op"], "!=");
        assert_eq!(saddr("ip")["right"], json!({"set": [{"prefix": {"addr": "100.72.9.0", "len": 24}}, "100.72.0.2"]}));
        assert_eq!(
            saddr("ip6")["right"],
            json!({"set": [
                {"prefix": {"addr": "fe80::", "len": 10}},
                {"prefix": {"addr": "64:ff9b::", "len": 96}},
                "fd63:6f6e:7461:696e::2",
            ]})
        );
        let daddr = |l3: &str| {
            fence.iter().find_map(|r| {
                r["expr"].as_array().unwrap().iter().find_map(|e| {
                    (e["match"]["left"] == json!({"payload": {"protocol": l3, "field": "daddr"}}))
                        .then(|| e["match"]["right"].clone())
                })
            })
        };
        assert_eq!(daddr("ip"), Some(json!({"prefix": {"addr": "127.0.0.0", "len": 8}})));
        assert_eq!(daddr("ip6"), Some(json!("::1")));
        // Without an IPv4 address or prefix, all IPv4 from the veth is dropped.
        let v6only = ContainerNet { ipv4: None, prefixes: vec![], ..web() };
        let fence = rules(&batch(&[v6only]), "fence");
        assert!(fence.iter().any(|r| r["expr"]
            == json!([
                {"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "ct-web"}},
                {"match": {"op": "==", "left": {"meta": {"key": "nfproto"}}, "right": "ipv4"}},
                {"drop": null},
            ])));
    }

    /// The plan lists the container's rules: NAT, loopback masquerade, fence per
    /// family and one DNAT per publish entry and family, as the batch makes them.
    #[test]
    fn the_plans_rule_resources_follow_the_batch() {
        use crate::plan::diff::ResourceKind as K;
        let net = NetworkRes {
            mode: crate::spec::types::NetMode::Routed,
            ipv4: Some("100.72.0.2/32".parse().unwrap()),
            ipv6: Some("fd63:6f6e:7461:696e::2/128".parse().unwrap()),
            auto: false,
            nat: true,
            proxy_arp: None,
            prefixes: Default::default(),
            publish: ["8080:80/tcp".parse().unwrap(), "127.0.0.1:5353:53/udp".parse().unwrap()].into_iter().collect(),
            nameservers: vec![],
            sysctls: Default::default(),
        };
        let c = ContainerNet::from_plan("web", &net).unwrap().unwrap();
        let b = batch(std::slice::from_ref(&c));
        let names: Vec<String> =
            crate::plan::compile::host_effects(&net).into_iter().filter(|h| h.kind == K::Nft).map(|h| h.name).collect();
        let dnats = names.iter().filter(|n| n.starts_with("dnat ")).count();
        assert_eq!(dnats, rules(&b, "prerouting").len(), "{names:?}");
        assert_eq!(names.iter().filter(|n| n.starts_with("fence ")).count() * 2, rules(&b, "fence").len());
        assert_eq!(names.iter().filter(|n| n.starts_with("masquerade")).count(), rules(&b, "postrouting").len());
        assert_eq!(rule_count(&c), 4 + 2 + 3 * 2, "fence, two masquerades, DNAT in two chains");
    }

    #[test]
    fn chains() {
        let b = batch(&[web()]);
        let chains: Vec<Value> = b["nftables"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|c| c["add"]["chain"].as_object().map(|o| json!([o["name"], o["hook"], o["prio"], o["type"]])))
            .collect();
        assert_eq!(
            chains,
            vec![
                json!(["fence", "prerouting", -300, "filter"]),
                json!(["prerouting", "prerouting", -100, "nat"]),
                json!(["output", "output", -100, "nat"]),
                json!(["postrouting", "postrouting", 100, "nat"]),
            ]
        );
        assert!(rules(&b, "forward").is_empty());
        // A routed container without NAT or publish still has its fence.
        let plain = ContainerNet { nat: false, publish: vec![], ..web() };
        let b = batch(&[plain]);
        assert_eq!(rules(&b, "fence").len(), 4);
        assert!(rules(&b, "postrouting").is_empty() && rules(&b, "prerouting").is_empty());
    }

    #[test]
    fn from_plan_takes_the_typed_plan() {
        use crate::spec::types::NetMode;
        let net = NetworkRes {
            mode: NetMode::Routed,
            ipv4: Some("100.72.0.2/32".parse().unwrap()),
            ipv6: None,
            auto: true,
            nat: true,
            proxy_arp: None,
            prefixes: Default::default(),
            publish: ["8080:80/tcp".parse().unwrap()].into_iter().collect(),
            nameservers: vec![],
            sysctls: Default::default(),
        };
        let c = ContainerNet::from_plan("web", &net).unwrap().unwrap();
        assert_eq!(c.ipv4, Some("100.72.0.2".parse().unwrap()));
        assert_eq!(c.publish[0].host_port, 8080);
        assert_eq!(c.veth, "ct-web");
        let mut host = net.clone();
        host.mode = NetMode::Host;
        assert_eq!(ContainerNet::from_plan("web", &host).unwrap(), None);
        // A mapping that does not parse cannot be in a plan at all.
        assert!("80".parse::<Publish>().is_err());
    }
}
