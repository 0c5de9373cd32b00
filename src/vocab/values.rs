//! Checked value types of the spec language.
//!
//! Invariant: a value that parses is valid. Each type parses from the text the user
//! wrote and fails with a message that says what is allowed, so the deserializer can
//! pin the error on the exact value. Each serializes back to its canonical text and
//! describes itself to the JSON schema.

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::{de, Deserialize, Deserializer, Serialize, Serializer};
use std::borrow::Cow;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Numbers are written as numbers; everything else is text.
fn accepts_integer(type_name: &str) -> bool {
    matches!(type_name, "Size" | "Port")
}

/// Defines a string-spelled value type: parse, display, serde, schema.
macro_rules! text_value {
    ($(#[$m:meta])* $name:ident($inner:ty), $what:literal, $schema:tt, $parse:expr, $show:expr) => {
        text_value!(@base $(#[$m])* $name($inner), $what, $schema, $parse, $show);
        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
    };
    (@base $(#[$m:meta])* $name:ident($inner:ty), $what:literal, $schema:tt, $parse:expr, $show:expr) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub $inner);

        impl $name {
            pub fn parse(s: &str) -> Result<Self, String> {
                let f: fn(&str) -> Result<$inner, String> = $parse;
                f(s).map($name)
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let show: fn(&$inner, &mut fmt::Formatter<'_>) -> fmt::Result = $show;
                show(&self.0, f)
            }
        }
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl de::Visitor<'_> for V {
                    type Value = $name;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str($what)
                    }
                    fn visit_str<E: de::Error>(self, s: &str) -> Result<$name, E> {
                        $name::parse(s).map_err(E::custom)
                    }
                    fn visit_u64<E: de::Error>(self, n: u64) -> Result<$name, E> {
                        if !accepts_integer(stringify!($name)) {
                            return Err(E::invalid_type(de::Unexpected::Unsigned(n), &self));
                        }
                        $name::parse(&n.to_string()).map_err(E::custom)
                    }
                    fn visit_i64<E: de::Error>(self, n: i64) -> Result<$name, E> {
                        if !accepts_integer(stringify!($name)) {
                            return Err(E::invalid_type(de::Unexpected::Signed(n), &self));
                        }
                        $name::parse(&n.to_string()).map_err(E::custom)
                    }
                }
                d.deserialize_any(V)
            }
        }
        impl JsonSchema for $name {
            fn schema_name() -> Cow<'static, str> {
                stringify!($name).into()
            }
            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                json_schema!($schema)
            }
        }
    };
}

text_value!(
    /// A container name.
    Name(String),
    "a name of 1-31 lowercase letters, digits and dashes",
    {"type": "string", "pattern": "^[a-z0-9][a-z0-9-]{0,30}$",
     "description": "1-31 characters: lowercase letters, digits and `-`, starting with a letter or digit."},
    |s| {
        let ok = !s.is_empty()
            && s.len() <= 31
            && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !s.starts_with('-');
        if ok { Ok(s.to_string()) } else {
            Err(format!("invalid name `{s}`: use 1-31 lowercase letters, digits and `-`, not starting with `-`"))
        }
    },
    |s, f| f.write_str(s)
);

text_value!(
    /// A Debian mirror URL: "http://…", "https://…" or "file:///…".
    Mirror(String),
    "a Debian mirror URL such as \"http://deb.debian.org/debian\"",
    {"type": "string", "pattern": "^(https?://|file:///)[^\\s,]+$",
     "description": "A Debian mirror URL: \"http://…\", \"https://…\" or \"file:///…\"."},
    |s| {
        let ok = (s.starts_with("http://") || s.starts_with("https://") || s.starts_with("file:///"))
            && !s.contains(|c: char| c.is_whitespace() || c == ',');
        if ok { Ok(s.to_string()) } else {
            Err(format!("invalid mirror `{s}`: allowed is a URL starting with http://, https:// or file:///, \
                         e.g. \"http://deb.debian.org/debian\""))
        }
    },
    |s, f| f.write_str(s)
);

text_value!(
    /// A Debian architecture name such as "amd64" or "arm64".
    Arch(String),
    "a Debian architecture name such as \"amd64\"",
    {"type": "string", "pattern": "^[a-z0-9]+$",
     "description": "A Debian architecture name, e.g. \"amd64\" or \"arm64\"."},
    |s| {
        if !s.is_empty() && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()) { Ok(s.to_string()) } else {
            Err(format!("invalid arch `{s}`: allowed is a Debian architecture name such as \"amd64\" or \"arm64\""))
        }
    },
    |s, f| f.write_str(s)
);

text_value!(
    /// An absolute path inside the container.
    AbsPath(String),
    "an absolute path",
    {"type": "string", "pattern": "^/", "description": "An absolute path such as `/etc/app.conf` (no `..`)."},
    |s| {
        if !s.starts_with('/') {
            return Err(format!("invalid path `{s}`: must be absolute (start with `/`)"));
        }
        if s.contains('\0') || s.split('/').any(|c| c == "..") {
            return Err(format!("invalid path `{s}`: `..` and NUL are not allowed"));
        }
        let norm = s.split('/').filter(|c| !c.is_empty() && *c != ".").collect::<Vec<_>>().join("/");
        Ok(format!("/{norm}"))
    },
    |s, f| f.write_str(s)
);

text_value!(
    /// A Unix file mode.
    Mode(u32),
    "an octal file mode such as \"0644\"",
    {"type": "string", "pattern": "^0?[0-7]{3,4}$", "description": "Octal file mode as a string, e.g. \"0644\"."},
    |s| {
        let digits = s.strip_prefix("0o").unwrap_or(s);
        if (3..=5).contains(&digits.len()) && digits.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
            u32::from_str_radix(digits, 8).ok().filter(|m| *m <= 0o7777)
                .ok_or_else(|| format!("invalid mode `{s}`: at most 07777"))
        } else {
            Err(format!("invalid mode `{s}`: write an octal string such as \"0644\" or \"0600\""))
        }
    },
    |m, f| write!(f, "{m:04o}")
);

text_value!(
    /// A size in bytes, written with an optional K, M, G or T suffix (powers of 1024).
    Size(u64),
    "a size such as \"64M\"",
    {"anyOf": [{"type": "string", "pattern": "^[0-9]+[KMGTkmgt]?[iI]?[Bb]?$"}, {"type": "integer", "minimum": 0}],
     "description": "Bytes, or a number with a K, M, G or T suffix (1024-based), e.g. \"64M\"."},
    |s| {
        let t = s.trim();
        let t = t.strip_suffix(['B', 'b']).unwrap_or(t);
        let t = t.strip_suffix(['i', 'I']).unwrap_or(t);
        let (num, mult) = match t.chars().last() {
            Some('K' | 'k') => (&t[..t.len() - 1], 1u64 << 10),
            Some('M' | 'm') => (&t[..t.len() - 1], 1 << 20),
            Some('G' | 'g') => (&t[..t.len() - 1], 1 << 30),
            Some('T' | 't') => (&t[..t.len() - 1], 1 << 40),
            _ => (t, 1),
        };
        num.parse::<u64>().ok().and_then(|n| n.checked_mul(mult))
            .ok_or_else(|| format!("invalid size `{s}`: use a number with an optional K, M, G or T suffix, e.g. \"64M\""))
    },
    |n, f| {
        for (suffix, m) in [("T", 1u64 << 40), ("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)] {
            if *n >= m && n % m == 0 {
                return write!(f, "{}{suffix}", n / m);
            }
        }
        write!(f, "{n}")
    }
);

text_value!(
    /// A duration: a number with `ms`, `s`, `m` or `h`.
    Duration(u64),
    "a duration such as \"10s\"",
    {"type": "string", "pattern": "^[0-9]+(ms|s|m|h)$", "description": "A duration such as \"500ms\", \"10s\", \"2m\" or \"1h\"."},
    |s| {
        let (num, mult) = if let Some(n) = s.strip_suffix("ms") { (n, 1u64) }
            else if let Some(n) = s.strip_suffix('s') { (n, 1000) }
            else if let Some(n) = s.strip_suffix('m') { (n, 60_000) }
            else if let Some(n) = s.strip_suffix('h') { (n, 3_600_000) }
            else { ("", 0) };
        num.parse::<u64>().ok().filter(|_| mult > 0).and_then(|n| n.checked_mul(mult))
            .ok_or_else(|| format!("invalid duration `{s}`: use a number with ms, s, m or h, e.g. \"10s\""))
    },
    |ms, f| {
        if ms % 3_600_000 == 0 && *ms > 0 { write!(f, "{}h", ms / 3_600_000) }
        else if ms % 60_000 == 0 && *ms > 0 { write!(f, "{}m", ms / 60_000) }
        else if ms % 1000 == 0 { write!(f, "{}s", ms / 1000) }
        else { write!(f, "{ms}ms") }
    }
);

text_value!(@base
    /// A TCP/UDP port.
    Port(u16),
    "a port number from 1 to 65535",
    {"type": "integer", "minimum": 1, "maximum": 65535, "description": "A port number, 1-65535."},
    |s| s.parse::<u16>().ok().filter(|p| *p > 0)
        .ok_or_else(|| format!("invalid port `{s}`: use a number from 1 to 65535")),
    |p, f| write!(f, "{p}")
);

impl Serialize for Port {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u16(self.0)
    }
}

impl Port {
    pub fn number(&self) -> u16 {
        self.0
    }
}

text_value!(
    /// An IPv4 address, or "auto" to take one from the pool.
    Ipv4Spec(Option<Ipv4Addr>),
    "an IPv4 address or \"auto\"",
    {"type": "string", "anyOf": [{"const": "auto"}, {"format": "ipv4"}],
     "description": "The container's IPv4 address (a /32), or \"auto\" to take a free one from the pool."},
    |s| if s == "auto" { Ok(None) } else {
        s.parse::<Ipv4Addr>().map(Some)
            .map_err(|_| format!("invalid IPv4 address `{s}`: write a dotted quad such as \"100.72.0.3\" (no prefix) or \"auto\""))
    },
    |a, f| match a { Some(a) => write!(f, "{a}"), None => f.write_str("auto") }
);

text_value!(
    /// An IPv6 address, or "auto" to take one from the pool.
    Ipv6Spec(Option<Ipv6Addr>),
    "an IPv6 address or \"auto\"",
    {"type": "string", "anyOf": [{"const": "auto"}, {"format": "ipv6"}],
     "description": "The container's IPv6 address (a /128), or \"auto\" to take a free one from the pool."},
    |s| if s == "auto" { Ok(None) } else {
        s.parse::<Ipv6Addr>().map(Some)
            .map_err(|_| format!("invalid IPv6 address `{s}`: write an address such as \"fd00::3\" (no prefix) or \"auto\""))
    },
    |a, f| match a { Some(a) => write!(f, "{a}"), None => f.write_str("auto") }
);

/// An IP network in CIDR notation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Net {
    pub addr: IpAddr,
    pub len: u8,
}

impl Net {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = if self.len == 0 { 0 } else { u32::MAX << (32 - self.len) };
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = if self.len == 0 { 0 } else { u128::MAX << (128 - self.len) };
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
    pub fn overlaps(&self, other: &Net) -> bool {
        self.contains(other.addr) || other.contains(self.addr)
    }
}

text_value!(
    /// A network in CIDR notation, e.g. "64:ff9b::/96" or "192.168.255.0/24".
    Cidr(Net),
    "a network in CIDR notation",
    {"type": "string", "pattern": crate::vocab::patterns::CIDR, "description": "A network in CIDR notation, e.g. \"192.168.255.0/24\" or \"64:ff9b::/96\"."},
    |s| {
        let bad = || format!("invalid network `{s}`: write address/prefix-length, e.g. \"192.168.255.0/24\" or \"64:ff9b::/96\"");
        let (a, l) = s.split_once('/').ok_or_else(bad)?;
        let addr: IpAddr = a.parse().map_err(|_| bad())?;
        let len: u8 = l.parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if len > max {
            return Err(format!("invalid network `{s}`: prefix length is at most {max}"));
        }
        let net = Net { addr, len };
        if !net.contains(addr) || host_bits(&net) {
            return Err(format!("invalid network `{s}`: host bits are set; did you mean `{}`?", Cidr(Net { addr: masked(&net), len })));
        }
        Ok(net)
    },
    |n, f| write!(f, "{}/{}", n.addr, n.len)
);

fn masked(n: &Net) -> IpAddr {
    match n.addr {
        IpAddr::V4(a) => {
            let mask = if n.len == 0 { 0 } else { u32::MAX << (32 - n.len) };
            IpAddr::V4((u32::from(a) & mask).into())
        }
        IpAddr::V6(a) => {
            let mask = if n.len == 0 { 0 } else { u128::MAX << (128 - n.len) };
            IpAddr::V6((u128::from(a) & mask).into())
        }
    }
}

fn host_bits(n: &Net) -> bool {
    masked(n) != n.addr
}

/// The transport protocol of a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        })
    }
}

/// A published port: host port forwarded to a container port.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublishRule {
    pub host_ip: Option<IpAddr>,
    pub host_port: u16,
    pub container_port: u16,
    pub proto: Proto,
}

text_value!(
    /// "HOST:CONTAINER[/tcp|udp]" or "IP:HOST:CONTAINER[/proto]" ("[v6]:HOST:CONTAINER" for IPv6).
    Publish(PublishRule),
    "a port mapping such as \"8080:80/tcp\"",
    {"type": "string", "pattern": crate::vocab::patterns::PUBLISH,
     "description": "Forward a host port to a container port: \"8080:80\", \"8053:53/udp\", \"127.0.0.1:8080:80\" or \"[2001:db8::1]:8080:80\" (not \"[::1]\": IPv6 loopback traffic never leaves lo)."},
    |s| {
        let bad = || format!("invalid port mapping `{s}`: write HOST:CONTAINER[/tcp|udp], optionally prefixed by an address, e.g. \"8080:80/tcp\" or \"127.0.0.1:8080:80\"");
        let (rest, proto) = match s.rsplit_once('/') {
            Some((r, "tcp")) => (r, Proto::Tcp),
            Some((r, "udp")) => (r, Proto::Udp),
            Some(_) => return Err(bad()),
            None => (s, Proto::Tcp),
        };
        let (addr, ports) = if let Some(r) = rest.strip_prefix('[') {
            let (a, p) = r.split_once("]:").ok_or_else(bad)?;
            let a = a.parse::<Ipv6Addr>().map_err(|_| bad())?;
            if a.is_loopback() {
                return Err(format!(
                    "`{s}` cannot work: traffic to [::1] never leaves the loopback interface, so it cannot \
                     be forwarded to a container (unlike 127.0.0.1); publish on a host address or use \
                     \"127.0.0.1:{p}\""
                ));
            }
            (Some(IpAddr::V6(a)), p)
        } else {
            let parts: Vec<&str> = rest.split(':').collect();
            match parts.as_slice() {
                [_, _] => (None, rest),
                [a, _, _] => (Some(a.parse::<Ipv4Addr>().map(IpAddr::V4).map_err(|_| bad())?), &rest[a.len() + 1..]),
                _ => return Err(bad()),
            }
        };
        let (h, c) = ports.split_once(':').ok_or_else(bad)?;
        let port = |p: &str| p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| format!("invalid port `{p}` in `{s}`: use 1-65535"));
        Ok(PublishRule { host_ip: addr, host_port: port(h)?, container_port: port(c)?, proto })
    },
    |p, f| {
        match p.host_ip {
            Some(IpAddr::V6(a)) => write!(f, "[{a}]:")?,
            Some(IpAddr::V4(a)) => write!(f, "{a}:")?,
            None => {}
        }
        write!(f, "{}:{}/{}", p.host_port, p.container_port, p.proto)
    }
);

text_value!(
    /// The name of a secret: generated once, stored under the state root, never shown.
    SecretName(String),
    "a secret name",
    {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$", "description": "Name of a secret: letters, digits, `.`, `_`, `-`."},
    |s| {
        let ok = !s.is_empty() && s.len() <= 64
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
            && s.as_bytes()[0].is_ascii_alphanumeric();
        if ok { Ok(s.to_string()) } else {
            Err(format!("invalid secret name `{s}`: use up to 64 letters, digits, `.`, `_` or `-`"))
        }
    },
    |s, f| f.write_str(s)
);

/// A reference to a secret: `{ secret = "wordpress-db" }`.
///
/// The value is generated on first apply (32+ random characters), stored 0600 under
/// the state root and never printed: plans show `(secret)`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
pub struct SecretRef {
    /// Name of the secret.
    pub secret: SecretName,
}

impl SecretRef {
    pub fn name(&self) -> &str {
        &self.secret.0
    }
}

/// A relative path that stays inside its folder.
pub fn relative_inside(p: &str) -> bool {
    !p.is_empty() && !p.starts_with('/') && !p.contains('\0') && p.split('/').all(|c| c != "..")
}

/// Volume folder name derived from a target: /var/lib/mysql → var-lib-mysql.
pub fn volume_name(target: &str) -> String {
    target.trim_matches('/').replace('/', "-")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_through_their_text() {
        assert_eq!(Mode::parse("0644").unwrap().to_string(), "0644");
        assert_eq!(Size::parse("64M").unwrap().0, 64 << 20);
        assert_eq!(Size::parse("1536K").unwrap().to_string(), "1536K");
        assert_eq!(Duration::parse("90s").unwrap().0, 90_000);
        assert_eq!(AbsPath::parse("/var//lib/./mysql/").unwrap().0, "/var/lib/mysql");
        assert_eq!(Publish::parse("8080:80").unwrap().to_string(), "8080:80/tcp");
        assert_eq!(Publish::parse("[fd00::1]:53:53/udp").unwrap().to_string(), "[fd00::1]:53:53/udp");
        let e = Publish::parse("[::1]:8080:80").unwrap_err();
        assert!(e.contains("never leaves the loopback") && e.contains("127.0.0.1:8080:80"), "{e}");
        assert_eq!(Publish::parse("127.0.0.1:8080:80").unwrap().0.host_port, 8080);
        assert_eq!(Cidr::parse("64:ff9b::/96").unwrap().to_string(), "64:ff9b::/96");
    }

    #[test]
    fn bad_values_say_what_is_allowed() {
        assert!(Mode::parse("999").unwrap_err().contains("octal"));
        assert!(Size::parse("12X").unwrap_err().contains("suffix"));
        assert!(Cidr::parse("10.0.0.1/24").unwrap_err().contains("did you mean `10.0.0.0/24`"));
        assert!(AbsPath::parse("/a/../b").is_err());
        assert!(Name::parse("Web").is_err());
        assert!(Port::parse("0").is_err());
        assert!(Publish::parse("80").is_err());
    }
}

text_value!(
    /// A Linux capability name without the `CAP_` prefix, e.g. "NET_ADMIN".
    Capability(String),
    "a capability name such as \"NET_ADMIN\"",
    {"type": "string", "pattern": "^([Cc][Aa][Pp]_)?[A-Za-z_]+$",
     "description": "A Linux capability, e.g. \"NET_ADMIN\" or \"SYS_PTRACE\" (see `man 7 capabilities`; the `CAP_` prefix is optional)."},
    |s| match crate::vocab::caps::canonical(s) {
        Some(c) => Ok(c.to_string()),
        None => Err(format!(
            "unknown capability `{s}`: allowed are {}",
            crate::vocab::caps::NAMES.join(", ")
        )),
    },
    |s, f| f.write_str(s)
);

text_value!(
    /// An x86_64 system call name, e.g. "ptrace".
    Syscall(String),
    "a system call name such as \"ptrace\"",
    {"type": "string", "pattern": "^[a-z_][a-z0-9_]*$",
     "description": "An x86_64 system call name, e.g. \"ptrace\" (see `man 2 syscalls`)."},
    |s| match crate::vocab::syscalls::number(s) {
        Some(_) => Ok(s.to_string()),
        None => Err(format!("unknown system call `{s}`: use an x86_64 name from `man 2 syscalls`, e.g. \"ptrace\"")),
    },
    |s, f| f.write_str(s)
);
