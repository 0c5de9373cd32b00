//! bind: BIND 9 (Debian's `bind9`: 9.18 on bookworm, 9.20 on trixie), authoritative
//! and/or recursive. The options rendered are accepted by both.
//!
//! Renders /etc/bind/named.conf (includes only), named.conf.options, named.conf.local
//! (zone statements) and one zone file per primary zone under /etc/bind/zones. Every
//! name and value that reaches a BIND file is checked here first, so a spec that plans
//! never gives named a file it refuses to load. named runs in the foreground with `-g`
//! (all logging to stderr) and drops to user `bind`; it writes only to /var/cache/bind
//! (volume: secondary zone copies, managed keys) and /run/named (tmpfs). There is no
//! rndc control channel: a changed file reloads named with SIGHUP, which rereads the
//! configuration and every zone file that changed.

#[path = "bind_conf.rs"]
mod conf;

use super::{Ctx, Services};
use crate::diag::Problem;
use crate::vocab::plan::ServiceRes;
use crate::vocab::values::{Cidr, Duration, Proto};
use crate::vocab::values::{Mode, SignalName};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

const ETC: &str = "/etc/bind";
const CACHE: &str = "/var/cache/bind";

/// BIND 9 settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct BindSettings {
    /// IPv4 addresses to answer on (address match list: "any", "none", "localhost",
    /// "localnets", addresses, networks; "!" negates).
    pub listen_on: Vec<String>,
    /// IPv6 addresses to answer on (address match list, like `listen_on`).
    pub listen_on_v6: Vec<String>,
    /// Who may query this server (address match list). Default: anyone.
    pub allow_query: Vec<String>,
    /// Resolve names of other domains for clients (a recursive resolver). Off: the server
    /// only answers for its own zones.
    pub recursion: bool,
    /// Who may use recursion (address match list); empty keeps BIND's default,
    /// "localhost; localnets;". Needs `recursion = true`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allow_recursion: Vec<String>,
    /// Resolvers to forward recursive queries to, e.g. ["192.0.2.53"]. Needs `recursion = true`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub forwarders: Vec<IpAddr>,
    /// Resolve only through `forwarders`, never by asking the root servers and the
    /// Internet directly (also when a forwarder fails). Needs `forwarders`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub forward_only: bool,
    /// Response rate limiting against reflection attacks (off when absent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
    /// DNS64: synthesize AAAA records from A records inside a NAT64 prefix. The nat64
    /// module adds its prefix here by itself.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dns64: Vec<Dns64>,
    /// Zones this server is authoritative for.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub zones: Vec<Zone>,
}

impl Default for BindSettings {
    fn default() -> Self {
        let any = vec!["any".to_string()];
        BindSettings {
            listen_on: any.clone(),
            listen_on_v6: any.clone(),
            allow_query: any,
            recursion: false,
            allow_recursion: Vec::new(),
            forwarders: Vec::new(),
            forward_only: false,
            rate_limit: None,
            dns64: Vec::new(),
            zones: Vec::new(),
        }
    }
}

/// Response rate limiting (RRL).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct RateLimit {
    /// Identical responses per second allowed to one client network.
    #[schemars(range(min = 1))]
    pub responses_per_second: u32,
    /// Seconds over which responses are counted.
    #[schemars(range(min = 1, max = 3600))]
    pub window: u32,
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit { responses_per_second: 10, window: 5 }
    }
}

/// A DNS64 prefix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Dns64 {
    /// The NAT64 prefix, an IPv6 /32, /40, /48, /56, /64 or /96, e.g. "64:ff9b::/96".
    pub prefix: Cidr,
    /// Clients that get synthesized answers (address match list).
    #[serde(default = "any")]
    pub clients: Vec<String>,
}

fn any() -> Vec<String> {
    vec!["any".into()]
}

/// Whether this server holds the original of a zone or a copy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ZoneKind {
    /// Primary: the records are written here (BIND's `type primary`).
    #[default]
    Master,
    /// Secondary: the zone is transferred from `masters` (BIND's `type secondary`).
    Slave,
}

/// A zone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Zone {
    /// Zone name, e.g. "example.org" (a trailing dot is optional).
    pub name: String,
    /// "master" (records below) or "slave" (copied from `masters`).
    #[serde(rename = "type", default)]
    pub kind: ZoneKind,
    /// Slave zones: the primary servers to transfer the zone from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub masters: Vec<IpAddr>,
    /// Who may transfer the zone (address match list); empty: nobody.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_transfer: Vec<String>,
    /// Master zones: extra servers to notify of changes (besides the zone's NS records).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub also_notify: Vec<IpAddr>,
    /// Master zones: SOA serial. Raise it whenever records change, or secondaries keep
    /// their old copy.
    #[serde(default = "one")]
    pub serial: u32,
    /// Master zones: default TTL of the records.
    #[serde(default = "hour")]
    pub ttl: Duration,
    /// Master zones: SOA fields.
    #[serde(default)]
    pub soa: Soa,
    /// Master zones: name servers of the zone (NS records at the apex), e.g.
    /// ["ns1", "ns.example.net."]. A name inside the zone needs an A or AAAA record.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ns: Vec<String>,
    /// Master zones: the records.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub records: Vec<Record>,
}

fn one() -> u32 {
    1
}
fn hour() -> Duration {
    Duration(3_600_000)
}

/// The SOA record of a master zone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct Soa {
    /// Primary name server (SOA MNAME); default: the first of `ns`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub primary_ns: Option<String>,
    /// Contact e-mail, e.g. "hostmaster@example.org"; default: hostmaster@<zone>.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostmaster: Option<String>,
    /// How often secondaries check for a new serial.
    pub refresh: Duration,
    /// How soon secondaries retry after a failed check.
    pub retry: Duration,
    /// How long secondaries keep answering without reaching the primary.
    pub expire: Duration,
    /// How long resolvers cache "no such name" answers.
    pub negative_ttl: Duration,
}

impl Default for Soa {
    fn default() -> Self {
        Soa {
            primary_ns: None,
            hostmaster: None,
            refresh: Duration(3 * 3_600_000),
            retry: Duration(3_600_000),
            expire: Duration(14 * 24 * 3_600_000),
            negative_ttl: Duration(3_600_000),
        }
    }
}

/// Record types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum RecordType {
    /// IPv4 address.
    A,
    /// IPv6 address.
    Aaaa,
    /// Alias of another name.
    Cname,
    /// Mail exchanger: "PREFERENCE HOST", e.g. "10 mail".
    Mx,
    /// Text (quoted and split by the module).
    Txt,
    /// Name server (delegation of a subdomain).
    Ns,
    /// Service: "PRIORITY WEIGHT PORT TARGET", e.g. "0 5 5060 sip".
    Srv,
    /// Reverse pointer: a host name.
    Ptr,
    /// Certificate authority authorization: "FLAGS TAG VALUE", e.g. "0 issue letsencrypt.org".
    Caa,
}

/// A resource record of a master zone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Record {
    /// Owner name: "@" for the zone itself, a relative name ("www"), or an absolute one
    /// with a trailing dot ("www.example.org.").
    #[serde(default = "apex")]
    pub name: String,
    /// Record type: A, AAAA, CNAME, MX, TXT, NS, SRV, PTR or CAA.
    #[serde(rename = "type")]
    pub rtype: RecordType,
    /// Record data in zone file syntax (TXT: the plain text).
    pub value: String,
    /// TTL of this record; default: the zone's `ttl`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<Duration>,
}

fn apex() -> String {
    "@".into()
}

pub fn expand(_s: &BindSettings, _all: &mut Services, _problems: &mut Vec<Problem>) {}

pub fn compile(s: &BindSettings, _all: &Services, cx: &mut Ctx) {
    cx.package("bind9");
    check_options(s, cx);

    let mut svc =
        ServiceRes::new(&["named", "-g", "-u", "bind", "-c", "/etc/bind/named.conf"]).reload_signal(SignalName::hup());
    // The supervisor probes 127.0.0.1 and ::1: only when named listens there.
    if conf::matches_loopback(&s.listen_on, "127.0.0.1") || conf::matches_loopback(&s.listen_on_v6, "::1") {
        svc = svc.ready_tcp(53);
    }
    let mut local = String::from("// Rendered by container (bind module): zone statements.\n");
    let mut seen = BTreeMap::new();
    for (i, z) in s.zones.iter().enumerate() {
        let at = format!("zones[{i}]");
        let Some(name) = conf::zone_name(&z.name) else {
            cx.error(
                &format!("{at}.name"),
                format!("invalid zone name `{}`", z.name),
                Some("write a domain name such as \"example.org\": labels of letters, digits and `-`, joined by dots"),
            );
            continue;
        };
        if let Some(first) = seen.insert(name.clone(), i) {
            cx.error(&format!("{at}.name"), format!("zone `{name}` is defined twice (first at zones[{first}])"), None);
            continue;
        }
        if s.recursion && cx.facts().bind_hint_zones.contains(&name.as_str()) {
            cx.error(
                &format!("{at}.name"),
                format!(
                    "zone `{name}` is already defined by Debian's {}, loaded with recursion",
                    cx.facts().bind_hints
                ),
                Some("choose another zone"),
            );
        }
        check_acl(cx, &format!("{at}.allow_transfer"), &z.allow_transfer);
        match z.kind {
            ZoneKind::Master => {
                if !z.masters.is_empty() {
                    cx.error(
                        &format!("{at}.masters"),
                        "a master zone has no `masters`",
                        Some("remove `masters`, or set type = \"slave\""),
                    );
                }
                if let Some(text) = check_master(z, &name, &at, cx) {
                    let path = format!("{ETC}/zones/db.{name}");
                    cx.file(&path, text);
                    svc = svc.uses(&path);
                }
            }
            ZoneKind::Slave => check_slave(z, &at, cx),
        }
        local.push_str(&conf::zone_statement(z, &name));
    }

    let options = format!("{ETC}/named.conf.options");
    let local_path = format!("{ETC}/named.conf.local");
    let main = format!("{ETC}/named.conf");
    cx.file(&main, conf::named_conf(s.recursion, cx.facts().bind_hints));
    cx.file(&options, conf::options(s));
    cx.file(&local_path, local);
    svc = svc.uses(&main).uses(&options).uses(&local_path);
    if s.recursion {
        // Debian's hints file points the root zone at /usr/share/dns/root.hints.
        cx.package("dns-root-data");
    }
    cx.service("named", svc);
    cx.listen(Proto::Udp, 53, "named", "");
    cx.listen(Proto::Tcp, 53, "named", "");
    cx.volume(CACHE, "bind", Some("bind:bind"), Some(Mode(0o775)));
    cx.tmpfs("/run/named", Some(1 << 20), Some("bind:bind"), Some(Mode(0o775)));
}

fn check_options(s: &BindSettings, cx: &mut Ctx) {
    check_acl(cx, "listen_on", &s.listen_on);
    check_acl(cx, "listen_on_v6", &s.listen_on_v6);
    check_acl(cx, "allow_query", &s.allow_query);
    check_acl(cx, "allow_recursion", &s.allow_recursion);
    if !s.recursion {
        let help = Some("set recursion = true, or remove it");
        if !s.allow_recursion.is_empty() {
            cx.error("allow_recursion", "allow_recursion has no effect without recursion", help);
        }
        if !s.forwarders.is_empty() {
            cx.error("forwarders", "forwarders are used only for recursion", help);
        }
    }
    if s.forward_only && s.forwarders.is_empty() {
        cx.error("forward_only", "forward_only needs forwarders", Some("list the resolvers in `forwarders`"));
    }
    if let Some(rl) = &s.rate_limit {
        if rl.responses_per_second == 0 {
            cx.error("rate_limit.responses_per_second", "responses_per_second must be at least 1", None);
        }
        if !(1..=3600).contains(&rl.window) {
            cx.error("rate_limit.window", format!("window {} is out of range: use 1 to 3600 seconds", rl.window), None);
        }
    }
    let mut prefixes = BTreeSet::new();
    for (i, d) in s.dns64.iter().enumerate() {
        let at = format!("dns64[{i}]");
        let n = d.prefix.0;
        if !n.addr.is_ipv6() || ![32, 40, 48, 56, 64, 96].contains(&n.len) {
            cx.error(
                &format!("{at}.prefix"),
                format!("DNS64 prefix `{}` must be an IPv6 /32, /40, /48, /56, /64 or /96", d.prefix),
                Some("e.g. \"64:ff9b::/96\""),
            );
        }
        if !prefixes.insert(d.prefix.to_string()) {
            cx.error(&format!("{at}.prefix"), format!("DNS64 prefix `{}` is listed twice", d.prefix), None);
        }
        check_acl(cx, &format!("{at}.clients"), &d.clients);
    }
}

/// Check an address match list.
fn check_acl(cx: &mut Ctx, at: &str, list: &[String]) {
    for (i, e) in list.iter().enumerate() {
        if !conf::valid_acl_element(e) {
            cx.error(
                &format!("{at}[{i}]"),
                format!("invalid address match element `{e}`"),
                Some("use \"any\", \"none\", \"localhost\", \"localnets\", an address or a network such as \"192.0.2.0/24\"; prefix \"!\" to exclude"),
            );
        }
    }
}

fn check_slave(z: &Zone, at: &str, cx: &mut Ctx) {
    if z.masters.is_empty() {
        cx.error(
            &format!("{at}.masters"),
            format!("slave zone `{}` needs `masters`", z.name),
            Some("list the primary servers to transfer the zone from, e.g. masters = [\"192.0.2.1\"]"),
        );
    }
    let help = Some("a slave zone copies its data from its masters: remove it, or set type = \"master\"");
    if !z.records.is_empty() {
        cx.error(&format!("{at}.records"), "a slave zone has no records of its own", help);
    }
    if !z.ns.is_empty() {
        cx.error(&format!("{at}.ns"), "a slave zone has no `ns` of its own", help);
    }
    if !z.also_notify.is_empty() {
        cx.error(&format!("{at}.also_notify"), "only a master zone notifies other servers", help);
    }
}

/// Check a master zone and render its zone file.
fn check_master(z: &Zone, zone: &str, at: &str, cx: &mut Ctx) -> Option<String> {
    let mut ok = true;
    let mut secs = |cx: &mut Ctx, field: &str, d: &Duration| -> u32 {
        match conf::seconds(d) {
            Some(s) => s,
            None => {
                ok = false;
                cx.error(
                    field,
                    format!("`{d}` is not a valid TTL"),
                    Some("use whole seconds up to 68 years, e.g. \"1h\""),
                );
                0
            }
        }
    };
    let ttl = secs(cx, &format!("{at}.ttl"), &z.ttl);
    let timers = [
        secs(cx, &format!("{at}.soa.refresh"), &z.soa.refresh),
        secs(cx, &format!("{at}.soa.retry"), &z.soa.retry),
        secs(cx, &format!("{at}.soa.expire"), &z.soa.expire),
        secs(cx, &format!("{at}.soa.negative_ttl"), &z.soa.negative_ttl),
    ];
    let mut rec_ttls = Vec::new();
    for (j, r) in z.records.iter().enumerate() {
        rec_ttls.push(r.ttl.as_ref().map(|t| secs(cx, &format!("{at}.records[{j}].ttl"), t)));
    }

    // Owners that have address records, and owners with a CNAME, by absolute name.
    let mut addressed = BTreeSet::new();
    let mut owners: BTreeMap<String, Vec<RecordType>> = BTreeMap::new();
    let mut lines = Vec::new();
    for (j, r) in z.records.iter().enumerate() {
        let rat = format!("{at}.records[{j}]");
        let host_owner = matches!(r.rtype, RecordType::A | RecordType::Aaaa | RecordType::Mx);
        let Some(owner) = conf::owner_name(&r.name, zone, !host_owner) else {
            ok = false;
            cx.error(
                &format!("{rat}.name"),
                format!("invalid record name `{}` in zone `{zone}`", r.name),
                Some(if host_owner {
                    "use \"@\", a relative host name such as \"www\" or \"*\", or an absolute name inside the zone ending with a dot"
                } else {
                    "use \"@\", a relative name such as \"_sip._tcp\", or an absolute name inside the zone ending with a dot"
                }),
            );
            continue;
        };
        match conf::rdata(r.rtype, &r.value) {
            Ok(data) => {
                if matches!(r.rtype, RecordType::A | RecordType::Aaaa) {
                    addressed.insert(owner.to_ascii_lowercase());
                }
                owners.entry(owner.to_ascii_lowercase()).or_default().push(r.rtype);
                let ttl = rec_ttls[j].map(|t| format!("{t}")).unwrap_or_default();
                lines.push(format!("{}\t{ttl}\tIN\t{}\t{data}\n", r.name, conf::type_name(r.rtype)));
            }
            Err(msg) => {
                ok = false;
                cx.error(&format!("{rat}.value"), msg.0, Some(msg.1));
            }
        }
    }
    let apex = format!("{zone}.");
    for (owner, types) in &owners {
        if types.contains(&RecordType::Cname) && (owner == &apex || types.len() > 1) {
            ok = false;
            let j = z.records.iter().position(|r| {
                r.rtype == RecordType::Cname
                    && conf::owner_name(&r.name, zone, true).is_some_and(|o| o.eq_ignore_ascii_case(owner))
            });
            let why = if owner == &apex { "the zone apex" } else { "a name that has other records" };
            cx.error(
                &format!("{at}.records[{}].type", j.unwrap_or(0)),
                format!("`{owner}` cannot be a CNAME: it is {why}"),
                Some("a CNAME must be the only record of its name; use A/AAAA records instead"),
            );
        }
    }

    if z.ns.is_empty() {
        ok = false;
        cx.error(
            &format!("{at}.ns"),
            format!("master zone `{zone}` needs at least one name server in `ns`"),
            Some("e.g. ns = [\"ns1\"] with a record { name = \"ns1\", type = \"A\", value = \"192.0.2.53\" }"),
        );
    }
    let mut ns_abs = Vec::new();
    for (k, n) in z.ns.iter().enumerate() {
        match conf::target_name(n, zone) {
            Some(abs) => {
                let inside = abs.eq_ignore_ascii_case(&apex) || abs.to_ascii_lowercase().ends_with(&format!(".{apex}"));
                if inside && !addressed.contains(&abs.to_ascii_lowercase()) {
                    ok = false;
                    cx.error(
                        &format!("{at}.ns[{k}]"),
                        format!("name server `{abs}` is inside the zone but has no A or AAAA record"),
                        Some("add an A or AAAA record for it to `records` (named refuses the zone otherwise)"),
                    );
                }
                ns_abs.push(abs);
            }
            None => {
                ok = false;
                cx.error(
                    &format!("{at}.ns[{k}]"),
                    format!("invalid name server `{n}`"),
                    Some("use a host name: relative (\"ns1\") or absolute with a trailing dot (\"ns.example.net.\")"),
                );
            }
        }
    }
    let mname = match &z.soa.primary_ns {
        Some(p) => conf::target_name(p, zone).or_else(|| {
            ok = false;
            cx.error(&format!("{at}.soa.primary_ns"), format!("invalid name server `{p}`"), None);
            None
        }),
        None => ns_abs.first().cloned(),
    };
    let rname = match &z.soa.hostmaster {
        Some(h) => conf::mailbox(h, zone).or_else(|| {
            ok = false;
            cx.error(
                &format!("{at}.soa.hostmaster"),
                format!("invalid hostmaster address `{h}`"),
                Some("write an e-mail address such as \"hostmaster@example.org\""),
            );
            None
        }),
        None => Some(format!("hostmaster.{zone}.")),
    };
    if !ok {
        return None;
    }
    let soa = conf::SoaLine { mname: mname?, rname: rname?, serial: z.serial, timers };
    Some(conf::zone_file(zone, ttl, &soa, &ns_abs, &lines))
}

#[cfg(test)]
mod tests {
    use crate::plan::compile::{test_plan, try_test_plan};

    const SPEC: &str = r#"name = "ns"
[services.bind]
rate_limit = {}
[[services.bind.zones]]
name = "example.org"
serial = 2024010101
ns = ["ns1", "ns.example.net."]
soa = { hostmaster = "dns.admin@example.org" }
records = [
  { name = "ns1", type = "A", value = "192.0.2.53" },
  { name = "@", type = "A", value = "192.0.2.10" },
  { name = "@", type = "AAAA", value = "2001:db8::10" },
  { name = "@", type = "MX", value = "10 mail" },
  { name = "mail", type = "A", value = "192.0.2.25", ttl = "5m" },
  { name = "@", type = "TXT", value = "v=spf1 mx -all \"quoted\"" },
  { name = "www", type = "CNAME", value = "@" },
  { name = "@", type = "CAA", value = "0 issue \"letsencrypt.org\"" },
]
[[services.bind.zones]]
name = "example.net."
type = "slave"
masters = ["192.0.2.1", "2001:db8::1"]
allow_transfer = ["localhost"]
"#;

    #[test]
    fn named_conf_local_has_primary_and_secondary_zones() {
        let plan = test_plan(SPEC);
        let local = plan.files["/etc/bind/named.conf.local"].content.redacted();
        assert!(local.contains(
            "zone \"example.org\" {\n\ttype primary;\n\tfile \"/etc/bind/zones/db.example.org\";\n\tallow-transfer { none; };\n};\n"
        ), "{local}");
        assert!(local.contains(
            "zone \"example.net\" {\n\ttype secondary;\n\tprimaries { 192.0.2.1; 2001:db8::1; };\n\tfile \"/var/cache/bind/db.example.net\";\n\tallow-transfer { localhost; };\n};\n"
        ), "{local}");
        let main = plan.files["/etc/bind/named.conf"].content.redacted();
        assert!(main.contains("include \"/etc/bind/named.conf.options\";\ninclude \"/etc/bind/named.conf.local\";\n"));
        assert!(!main.contains("default-zones"), "{main}");
        let svc = &plan.services["named"];
        assert_eq!(svc.command, ["named", "-g", "-u", "bind", "-c", "/etc/bind/named.conf"]);
        assert!(svc.uses.contains("/etc/bind/zones/db.example.org"));
        assert!(plan.ports.contains_key("udp/53") && plan.ports.contains_key("tcp/53"));
        assert_eq!(plan.mounts["/var/cache/bind"].owner.as_deref(), Some("bind:bind"));
        assert!(plan.mounts.contains_key("/run/named"));
    }

    #[test]
    fn options_have_rate_limit_and_no_recursion() {
        let plan = test_plan(SPEC);
        let o = plan.files["/etc/bind/named.conf.options"].content.redacted();
        assert!(o.contains("\tdirectory \"/var/cache/bind\";\n"), "{o}");
        assert!(o.contains("\tlisten-on { any; };\n\tlisten-on-v6 { any; };\n\tallow-query { any; };\n"), "{o}");
        assert!(o.contains("\trecursion no;\n"), "{o}");
        assert!(o.contains("\trate-limit {\n\t\tresponses-per-second 10;\n\t\twindow 5;\n\t};\n"), "{o}");
        let plan = test_plan(
            "name = \"r\"\n[services.bind]\nrecursion = true\nallow_recursion = [\"10.0.0.0/8\", \"!10.9.0.0/16\"]\nforwarders = [\"192.0.2.53\"]\nforward_only = true\n",
        );
        let o = plan.files["/etc/bind/named.conf.options"].content.redacted();
        assert!(o.contains("\trecursion yes;\n\tallow-recursion { 10.0.0.0/8; !10.9.0.0/16; };\n\tforwarders { 192.0.2.53; };\n\tforward only;\n\tdnssec-validation auto;\n"), "{o}");
        assert!(plan.layer.packages.contains("dns-root-data"));
    }

    /// Each suite's bind9 ships its own file with the root hints: bookworm's
    /// named.conf.default-zones (with the RFC 1912 zones), trixie's 9.20 only
    /// named.conf.root-hints. Including the other one stops named at start.
    #[test]
    fn recursion_includes_the_suites_root_hints() {
        let spec = |base: &str, zone: &str| {
            format!(
                "name = \"r\"\nbase = \"{base}\"\n[services.bind]\nrecursion = true\n\
                 [[services.bind.zones]]\nname = \"{zone}\"\nns = [\"ns.example.net.\"]\n"
            )
        };
        let main = |p: &crate::vocab::plan::Plan| p.files["/etc/bind/named.conf"].content.redacted();
        let bookworm = test_plan(&spec("debian:bookworm", "example.org"));
        assert!(main(&bookworm).contains("include \"/etc/bind/named.conf.default-zones\";\n"), "{}", main(&bookworm));
        assert!(!main(&bookworm).contains("root-hints"));
        let trixie = test_plan(&spec("debian:trixie", "example.org"));
        assert!(main(&trixie).contains("include \"/etc/bind/named.conf.root-hints\";\n"), "{}", main(&trixie));
        assert!(!main(&trixie).contains("default-zones"));
        // bookworm's file defines "localhost"; trixie's defines only the root hints.
        let e = try_test_plan(&spec("debian:bookworm", "localhost")).unwrap_err().brief().join("\n");
        assert!(
            e.contains("zone `localhost` is already defined by Debian's /etc/bind/named.conf.default-zones"),
            "{e}"
        );
        assert!(try_test_plan(&spec("debian:trixie", "localhost")).is_ok());
    }

    #[test]
    fn the_zone_file_has_soa_serial_ns_and_records() {
        let plan = test_plan(SPEC);
        let z = plan.files["/etc/bind/zones/db.example.org"].content.redacted();
        assert!(z.contains("$ORIGIN example.org.\n$TTL 3600\n"), "{z}");
        assert!(z.contains("@\tIN\tSOA\tns1.example.org. dns\\.admin.example.org. (\n\t\t2024010101\t; serial\n\t\t10800\t; refresh\n"), "{z}");
        assert!(z.contains("\t\t1209600\t; expire\n\t\t3600 )\t; negative caching TTL\n"), "{z}");
        assert!(z.contains("@\t\tIN\tNS\tns1.example.org.\n@\t\tIN\tNS\tns.example.net.\n"), "{z}");
        assert!(z.contains("ns1\t\tIN\tA\t192.0.2.53\n"), "{z}");
        assert!(z.contains("@\t\tIN\tAAAA\t2001:db8::10\n"), "{z}");
        assert!(z.contains("@\t\tIN\tMX\t10 mail\n"), "{z}");
        assert!(z.contains("mail\t300\tIN\tA\t192.0.2.25\n"), "{z}");
        assert!(z.contains("@\t\tIN\tTXT\t\"v=spf1 mx -all \\\"quoted\\\"\"\n"), "{z}");
        assert!(z.contains("www\t\tIN\tCNAME\t@\n"), "{z}");
        assert!(z.contains("@\t\tIN\tCAA\t0 issue \"letsencrypt.org\"\n"), "{z}");
        assert!(!plan.files.contains_key("/etc/bind/zones/db.example.net"));
    }

    #[test]
    fn named_is_probed_on_loopback_only_when_it_listens_there() {
        let ready = |listen: &str| {
            let plan = test_plan(&format!("name = \"ns\"\n[services.bind]\n{listen}\n"));
            plan.services["named"].ready.is_some()
        };
        assert!(ready(""), "default: any");
        assert!(ready("listen_on = [\"127.0.0.0/8\"]\nlisten_on_v6 = [\"none\"]"));
        assert!(ready("listen_on = [\"none\"]\nlisten_on_v6 = [\"::1\"]"));
        assert!(!ready("listen_on = [\"192.0.2.53\"]\nlisten_on_v6 = [\"none\"]"));
        assert!(!ready("listen_on = [\"!localhost\", \"any\"]\nlisten_on_v6 = [\"2001:db8::53\"]"));
    }

    #[test]
    fn long_txt_values_are_split_and_escaped() {
        let t = super::conf::rdata(super::RecordType::Txt, &format!("{}\n", "a".repeat(300))).ok().unwrap();
        assert_eq!(t, format!("\"{}\" \"{}\\010\"", "a".repeat(255), "a".repeat(45)));
    }

    fn brief(spec: &str) -> String {
        try_test_plan(spec).unwrap_err().brief().join("\n")
    }

    #[test]
    fn a_bad_a_record_value_is_reported_on_the_value() {
        let b = brief(&SPEC.replace("\"192.0.2.10\"", "\"192.0.2.300\""));
        assert!(b.contains("test.toml:11:37: `192.0.2.300` is not an IPv4 address"), "{b}");
    }

    #[test]
    fn a_slave_zone_needs_masters() {
        let b = brief(&SPEC.replace("masters = [\"192.0.2.1\", \"2001:db8::1\"]\n", ""));
        assert!(b.contains("test.toml:19:1: slave zone `example.net.` needs `masters`"), "{b}");
    }

    #[test]
    fn zone_mistakes_are_caught_before_named_sees_them() {
        let b = brief(&SPEC.replace("{ name = \"ns1\", type = \"A\", value = \"192.0.2.53\" },\n", ""));
        assert!(b.contains("name server `ns1.example.org.` is inside the zone but has no A or AAAA record"), "{b}");
        let b = brief(&SPEC.replace("{ name = \"www\", type = \"CNAME\"", "{ name = \"mail\", type = \"CNAME\""));
        assert!(b.contains("`mail.example.org.` cannot be a CNAME"), "{b}");
        let b = brief(&SPEC.replace("name = \"example.net.\"", "name = \"Example.org\""));
        assert!(b.contains("zone `example.org` is defined twice"), "{b}");
        let b = brief(&SPEC.replace("rate_limit = {}", "allow_query = [\"10.0.0.1/8\"]"));
        assert!(b.contains("test.toml:3:16: invalid address match element `10.0.0.1/8`"), "{b}");
    }
}
