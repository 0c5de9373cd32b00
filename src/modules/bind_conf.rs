//! Rendering of BIND 9.18 configuration and zone files, and the name checks they need.
//!
//! Invariant: nothing reaches a file unchecked: names pass `host`/`domain` checks,
//! values are re-rendered from their parsed form, and TXT/CAA text is quoted and escaped
//! byte by byte, so a value can never break out of its record or statement.

use super::{BindSettings, RecordType, Zone, ZoneKind};
use crate::vocab::values::{Cidr, Duration};
use std::fmt::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// An error message and its help.
pub struct Bad(pub String, pub &'static str);

/// A canonical zone name without the trailing dot, lowercase.
pub fn zone_name(s: &str) -> Option<String> {
    let t = s.strip_suffix('.').unwrap_or(s);
    domain(t, false, false).then(|| t.to_ascii_lowercase())
}

/// Labels joined by dots (no trailing dot). `underscore` allows `_` (service labels);
/// `wildcard` allows `*` as the first label.
fn domain(s: &str, underscore: bool, wildcard: bool) -> bool {
    if s.is_empty() || s.len() > 253 {
        return false;
    }
    s.split('.').enumerate().all(|(i, l)| {
        (wildcard && i == 0 && l == "*")
            || (!l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || (underscore && b == b'_')))
    })
}

/// Absolute form of a name written in a zone: "@", relative, or absolute with a dot.
fn absolute(name: &str, zone: &str, check: impl Fn(&str) -> bool) -> Option<String> {
    if name == "@" {
        return Some(format!("{zone}."));
    }
    match name.strip_suffix('.') {
        Some(abs) => check(abs).then(|| format!("{abs}.")),
        None => check(name).then(|| format!("{name}.{zone}.")),
    }
}

/// Owner name of a record, absolute; it must lie inside the zone. Host owners (A, AAAA,
/// MX) follow host name rules (BIND's check-names), others may contain `_`.
pub fn owner_name(name: &str, zone: &str, underscore: bool) -> Option<String> {
    let abs = absolute(name, zone, |s| domain(s, underscore, true))?;
    let lower = abs.to_ascii_lowercase();
    (lower == format!("{zone}.") || lower.ends_with(&format!(".{zone}."))).then_some(abs)
}

/// A host name used as record data (NS, MX, SRV, PTR targets, SOA MNAME), absolute.
pub fn target_name(name: &str, zone: &str) -> Option<String> {
    absolute(name, zone, |s| domain(s, false, false))
}

/// SOA RNAME from "user@domain" (or a name already in mailbox form).
pub fn mailbox(s: &str, zone: &str) -> Option<String> {
    match s.split_once('@') {
        Some((user, dom)) => {
            let user_ok = !user.is_empty()
                && user.len() <= 63
                && user.bytes().all(|b| b.is_ascii_alphanumeric() || b"._+-".contains(&b))
                && !user.starts_with('.')
                && !user.ends_with('.');
            let dom = dom.strip_suffix('.').unwrap_or(dom);
            (user_ok && domain(dom, false, false)).then(|| format!("{}.{dom}.", user.replace('.', "\\.")))
        }
        None => target_name(s, zone),
    }
}

/// A duration as whole seconds that fit a TTL (at most 2^31 - 1).
pub fn seconds(d: &Duration) -> Option<u32> {
    (d.0 % 1000 == 0).then_some(d.0 / 1000).filter(|s| *s <= i32::MAX as u64).map(|s| s as u32)
}

pub fn valid_acl_element(e: &str) -> bool {
    let e = e.strip_prefix('!').unwrap_or(e);
    matches!(e, "any" | "none" | "localhost" | "localnets") || e.parse::<IpAddr>().is_ok() || Cidr::parse(e).is_ok()
}

/// Whether the address match list admits the loopback address `lo` (first match
/// wins, as in BIND; "localhost" and "localnets" include it).
pub fn matches_loopback(list: &[String], lo: &str) -> bool {
    let lo_ip: IpAddr = lo.parse().expect("a loopback address");
    for e in list {
        let (neg, e) = match e.strip_prefix('!') {
            Some(rest) => (true, rest),
            None => (false, e.as_str()),
        };
        let hit = match e {
            "any" | "localhost" | "localnets" => true,
            "none" => false,
            _ => {
                e.parse::<IpAddr>().map(|a| a == lo_ip).unwrap_or(false)
                    || Cidr::parse(e).map(|c| c.0.contains(lo_ip)).unwrap_or(false)
            }
        };
        if hit {
            return !neg;
        }
    }
    false
}

pub fn type_name(t: RecordType) -> &'static str {
    match t {
        RecordType::A => "A",
        RecordType::Aaaa => "AAAA",
        RecordType::Cname => "CNAME",
        RecordType::Mx => "MX",
        RecordType::Txt => "TXT",
        RecordType::Ns => "NS",
        RecordType::Srv => "SRV",
        RecordType::Ptr => "PTR",
        RecordType::Caa => "CAA",
    }
}

/// Record data in zone file syntax, re-rendered from what was parsed.
pub fn rdata(t: RecordType, v: &str) -> Result<String, Bad> {
    // "@" is the zone itself, "." the root (null MX/SRV).
    let host = |h: &str| h == "@" || h == "." || domain(h.strip_suffix('.').unwrap_or(h), false, false);
    let fields: Vec<&str> = v.split_whitespace().collect();
    let num = |s: &str| s.parse::<u16>().ok();
    match t {
        RecordType::A => v.trim().parse::<Ipv4Addr>().map(|a| a.to_string()).map_err(|_| {
            Bad(format!("`{v}` is not an IPv4 address"), "an A record holds an address such as \"192.0.2.10\"")
        }),
        RecordType::Aaaa => v.trim().parse::<Ipv6Addr>().map(|a| a.to_string()).map_err(|_| {
            Bad(format!("`{v}` is not an IPv6 address"), "an AAAA record holds an address such as \"2001:db8::10\"")
        }),
        RecordType::Cname => match fields.as_slice() {
            [n] if *n == "@" || domain(n.strip_suffix('.').unwrap_or(n), true, false) => Ok(n.to_string()),
            _ => Err(Bad(
                format!("`{v}` is not a domain name"),
                "write the alias target, e.g. \"www\" or \"host.example.net.\"",
            )),
        },
        RecordType::Ns | RecordType::Ptr => match fields.as_slice() {
            [n] if *n != "." && host(n) => Ok(n.to_string()),
            _ => Err(Bad(
                format!("`{v}` is not a host name"),
                "write a host name, e.g. \"ns1\" or \"host.example.net.\"",
            )),
        },
        RecordType::Mx => match fields.as_slice() {
            [p, h] if num(p).is_some() && host(h) => Ok(format!("{p} {h}")),
            _ => Err(Bad(format!("invalid MX value `{v}`"), "write \"PREFERENCE HOST\", e.g. \"10 mail\"")),
        },
        RecordType::Srv => match fields.as_slice() {
            [p, w, port, h] if num(p).is_some() && num(w).is_some() && num(port).is_some() && host(h) => {
                Ok(format!("{p} {w} {port} {h}"))
            }
            _ => Err(Bad(
                format!("invalid SRV value `{v}`"),
                "write \"PRIORITY WEIGHT PORT TARGET\", e.g. \"0 5 5060 sip\"",
            )),
        },
        RecordType::Txt => Ok(txt(v.as_bytes())),
        RecordType::Caa => {
            let bad = || {
                Bad(format!("invalid CAA value `{v}`"), "write \"FLAGS TAG VALUE\", e.g. \"0 issue letsencrypt.org\"")
            };
            let mut it = v.trim().splitn(3, char::is_whitespace);
            let (Some(flags), Some(tag), Some(value)) = (it.next(), it.next(), it.next()) else {
                return Err(bad());
            };
            let value = value.trim();
            let value = value.strip_prefix('"').and_then(|x| x.strip_suffix('"')).unwrap_or(value);
            let ok = flags.parse::<u8>().is_ok() && !tag.is_empty() && tag.bytes().all(|b| b.is_ascii_alphanumeric());
            if !ok || value.len() > 255 {
                return Err(bad());
            }
            Ok(format!("{flags} {} {}", tag.to_ascii_lowercase(), txt(value.as_bytes())))
        }
    }
}

/// Quoted character strings of at most 255 bytes each; `"`, `\` and anything not
/// printable ASCII are escaped.
fn txt(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        return "\"\"".into();
    }
    let mut parts = Vec::new();
    for chunk in bytes.chunks(255) {
        let mut s = String::from("\"");
        for &b in chunk {
            match b {
                b'"' | b'\\' => {
                    s.push('\\');
                    s.push(b as char);
                }
                0x20..=0x7e => s.push(b as char),
                _ => {
                    let _ = write!(s, "\\{b:03}");
                }
            }
        }
        s.push('"');
        parts.push(s);
    }
    parts.join(" ")
}

fn acl(list: &[String]) -> String {
    if list.is_empty() {
        return "none;".into();
    }
    list.iter().map(|e| format!("{e};")).collect::<Vec<_>>().join(" ")
}

fn addrs(list: &[IpAddr]) -> String {
    list.iter().map(|a| format!("{a};")).collect::<Vec<_>>().join(" ")
}

/// `hints`: Debian's file with the root hints (the suite's), included for recursion.
pub fn named_conf(recursion: bool, hints: &str) -> String {
    let mut s = String::from(
        "// Rendered by container (bind module). named reads only the files included here.\n\
         include \"/etc/bind/named.conf.options\";\n\
         include \"/etc/bind/named.conf.local\";\n",
    );
    if recursion {
        s.push_str("// Debian's root hints, for recursion.\n");
        let _ = writeln!(s, "include \"{hints}\";");
    }
    s.push_str("// No rndc control channel: changed files reload named with SIGHUP.\ncontrols { };\n");
    s
}

pub fn options(s: &BindSettings) -> String {
    let mut o = String::from("// Rendered by container (bind module).\noptions {\n");
    let _ = writeln!(o, "\tdirectory \"{}\";", super::CACHE);
    o.push_str("\tpid-file \"/run/named/named.pid\";\n");
    let _ = writeln!(o, "\tlisten-on {{ {} }};", acl(&s.listen_on));
    let _ = writeln!(o, "\tlisten-on-v6 {{ {} }};", acl(&s.listen_on_v6));
    let _ = writeln!(o, "\tallow-query {{ {} }};", acl(&s.allow_query));
    if s.recursion {
        o.push_str("\trecursion yes;\n");
        if !s.allow_recursion.is_empty() {
            let _ = writeln!(o, "\tallow-recursion {{ {} }};", acl(&s.allow_recursion));
        }
        if !s.forwarders.is_empty() {
            let _ = writeln!(o, "\tforwarders {{ {} }};", addrs(&s.forwarders));
            if s.forward_only {
                o.push_str("\tforward only;\n");
            }
        }
        o.push_str("\tdnssec-validation auto;\n");
    } else {
        o.push_str("\trecursion no;\n\tdnssec-validation no;\n");
    }
    if let Some(rl) = &s.rate_limit {
        let _ = write!(
            o,
            "\trate-limit {{\n\t\tresponses-per-second {};\n\t\twindow {};\n\t}};\n",
            rl.responses_per_second, rl.window
        );
    }
    for d in &s.dns64 {
        let _ = write!(o, "\tdns64 {} {{\n\t\tclients {{ {} }};\n\t}};\n", d.prefix, acl(&d.clients));
    }
    o.push_str("};\n");
    o
}

pub fn zone_statement(z: &Zone, name: &str) -> String {
    let mut s = format!("zone \"{name}\" {{\n");
    match z.kind {
        ZoneKind::Master => {
            s.push_str("\ttype primary;\n");
            let _ = writeln!(s, "\tfile \"{}/zones/db.{name}\";", super::ETC);
            if !z.also_notify.is_empty() {
                let _ = writeln!(s, "\talso-notify {{ {} }};", addrs(&z.also_notify));
            }
        }
        ZoneKind::Slave => {
            s.push_str("\ttype secondary;\n");
            let _ = writeln!(s, "\tprimaries {{ {} }};", addrs(&z.masters));
            let _ = writeln!(s, "\tfile \"{}/db.{name}\";", super::CACHE);
        }
    }
    let _ = writeln!(s, "\tallow-transfer {{ {} }};", acl(&z.allow_transfer));
    s.push_str("};\n");
    s
}

/// SOA fields, absolute names; timers are refresh, retry, expire, negative TTL.
pub struct SoaLine {
    pub mname: String,
    pub rname: String,
    pub serial: u32,
    pub timers: [u32; 4],
}

pub fn zone_file(zone: &str, ttl: u32, soa: &SoaLine, ns: &[String], records: &[String]) -> String {
    let [refresh, retry, expire, negative] = soa.timers;
    let mut f = format!(
        "; Rendered by container (bind module). Raise `serial` in the spec when records change.\n\
         $ORIGIN {zone}.\n$TTL {ttl}\n\
         @\tIN\tSOA\t{} {} (\n\t\t{}\t; serial\n\t\t{refresh}\t; refresh\n\t\t{retry}\t; retry\n\
         \t\t{expire}\t; expire\n\t\t{negative} )\t; negative caching TTL\n",
        soa.mname, soa.rname, soa.serial
    );
    for n in ns {
        let _ = writeln!(f, "@\t\tIN\tNS\t{n}");
    }
    for r in records {
        f.push_str(r);
    }
    f
}
