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
///
/// Values order by their inner value; `@text_order` values order by their text, so
/// that a set of them serializes in the order the same set of strings did.
macro_rules! text_value {
    ($(#[$m:meta])* $name:ident($inner:ty), $what:literal, $schema:tt, $parse:expr, $show:expr) => {
        text_value!(@base $(#[$m])* #[derive(PartialOrd, Ord)] $name($inner), $what, $schema, $parse, $show);
        text_value!(@serialize $name);
    };
    (@text_order $(#[$m:meta])* $name:ident($inner:ty), $what:literal, $schema:tt, $parse:expr, $show:expr) => {
        text_value!(@base $(#[$m])* $name($inner), $what, $schema, $parse, $show);
        text_value!(@serialize $name);
        impl PartialOrd for $name {
            fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
                Some(self.cmp(other))
            }
        }
        impl Ord for $name {
            fn cmp(&self, other: &Self) -> std::cmp::Ordering {
                self.to_string().cmp(&other.to_string())
            }
        }
    };
    (@serialize $name:ident) => {
        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
    };
    (@base $(#[$m:meta])* $name:ident($inner:ty), $what:literal, $schema:tt, $parse:expr, $show:expr) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub struct $name(pub $inner);

        impl std::str::FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                $name::parse(s)
            }
        }

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
    #[derive(PartialOrd, Ord)]
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

text_value!(@text_order
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

text_value!(@text_order
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

/// `Deref` to the text of a value held as its canonical string, so it reads like the
/// string it replaced (`&owner` where a `&str` is wanted).
macro_rules! text_deref {
    ($($name:ident),*) => {$(
        impl std::ops::Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }
        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
    )*};
}

/// The rule for one side of an owner: a user or group name (or number).
fn owner_part_ok(s: &str) -> bool {
    !s.is_empty() && s.len() <= 32 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
}

text_value!(
    /// The owner of a file or folder: "user:group" or "user" (its group is the
    /// user's), names or numbers as the container's /etc/passwd and /etc/group know them.
    Owner(String),
    "an owner such as \"root:root\"",
    {"type": "string", "pattern": "^[A-Za-z0-9_.-]{1,32}(:[A-Za-z0-9_.-]{1,32})?$",
     "description": "Owner as \"user:group\" or \"user\", e.g. \"www-data:www-data\"."},
    |s| {
        let ok = match s.split_once(':') {
            Some((u, g)) => owner_part_ok(u) && owner_part_ok(g),
            None => owner_part_ok(s),
        };
        if ok { Ok(s.to_string()) } else {
            Err(format!("invalid owner `{s}`: write \"user:group\" or \"user\", each 1-32 letters, digits, `_`, `-` or `.`"))
        }
    },
    |s, f| f.write_str(s)
);

impl Owner {
    /// "root:root".
    pub fn root() -> Owner {
        Owner("root:root".into())
    }
    /// The user part.
    pub fn user(&self) -> &str {
        self.0.split_once(':').map_or(&self.0, |(u, _)| u)
    }
    /// The group part, if given.
    pub fn group(&self) -> Option<&str> {
        self.0.split_once(':').map(|(_, g)| g)
    }
}

/// Why `s` is not a volume source (a relative path under the container's volume
/// folder), if it is not.
pub fn volume_source_problem(s: &str) -> Option<String> {
    let ok =
        !s.is_empty() && !s.starts_with('/') && !s.contains('\0') && s.split('/').all(|c| !c.is_empty() && c != "..");
    (!ok).then(|| {
        format!("volume source `{s}` escapes the container's volume folder: use a relative name such as \"data\" or \"mysql/data\", without `..`, a leading `/` or empty parts")
    })
}

/// Why `s` is not a host path to bind (absolute, no `..`), if it is not.
pub fn host_path_problem(s: &str) -> Option<String> {
    let ok = s.starts_with('/') && !s.contains('\0') && s.split('/').all(|c| c != "..");
    (!ok).then(|| format!("bind source `{s}` must be an absolute host path without `..`"))
}

text_value!(
    /// Where a mount comes from: a volume's relative path under the container's
    /// volume folder ("mysql", "share/public": no `..`, no empty parts) or a bind's
    /// absolute host path ("/srv/data": no `..`). The mount's kind says which one it
    /// must be (`Plan::problems`).
    SourcePath(String),
    "a volume name such as \"data\" or an absolute host path",
    {"type": "string", "description": "A volume's relative path (no `..`) or a bind's absolute host path (no `..`)."},
    |s| match if s.starts_with('/') { host_path_problem(s) } else { volume_source_problem(s) } {
        None => Ok(s.to_string()),
        Some(e) => Err(e),
    },
    |s, f| f.write_str(s)
);

impl SourcePath {
    /// An absolute host path (a bind's source), not a volume's.
    pub fn is_host(&self) -> bool {
        self.0.starts_with('/')
    }
}

/// The host device nodes a container may be given: what modules need.
pub const DEVICES: &[&str] = &["/dev/net/tun"];

text_value!(
    /// A host device node bound into the container, one of [`DEVICES`].
    DeviceNode(String),
    "a device node such as \"/dev/net/tun\"",
    {"type": "string", "enum": ["/dev/net/tun"], "description": "A host device node: \"/dev/net/tun\"."},
    |s| if DEVICES.contains(&s) { Ok(s.to_string()) } else {
        Err(format!("device `{s}` may not be given to a container: allowed is {}", DEVICES.join(", ")))
    },
    |s, f| f.write_str(s)
);

impl DeviceNode {
    /// The TUN/TAP device.
    pub fn tun() -> DeviceNode {
        DeviceNode("/dev/net/tun".into())
    }
}

/// Signals a program may be told to reload with.
pub const SIGNALS: &[&str] = &["HUP", "INT", "QUIT", "USR1", "USR2", "TERM", "WINCH"];

text_value!(
    /// A reload signal's name without `SIG` ("HUP"), one of [`SIGNALS`].
    SignalName(String),
    "a signal name such as \"HUP\"",
    {"type": "string", "description": "A signal name such as \"HUP\" or \"USR1\"."},
    |s| {
        let name = s.strip_prefix("SIG").unwrap_or(s);
        if SIGNALS.contains(&name) { Ok(name.to_string()) } else {
            Err(format!("unknown signal `{s}`: allowed are {}", SIGNALS.join(", ")))
        }
    },
    |s, f| f.write_str(s)
);

impl SignalName {
    /// SIGHUP, the usual "reload your configuration".
    pub fn hup() -> SignalName {
        SignalName("HUP".into())
    }
    /// SIGUSR2 (php-fpm's graceful reload).
    pub fn usr2() -> SignalName {
        SignalName("USR2".into())
    }
}

text_value!(
    /// The container's IPv4 address as a host network: "a.b.c.d/32".
    Ipv4Host(Ipv4Addr),
    "an IPv4 address with /32 such as \"100.72.0.3/32\"",
    {"type": "string", "description": "An IPv4 address with prefix length 32."},
    |s| s.strip_suffix("/32").and_then(|a| a.parse::<Ipv4Addr>().ok())
        .ok_or_else(|| format!("invalid IPv4 address `{s}`: write a dotted quad with /32, e.g. \"100.72.0.3/32\"")),
    |a, f| write!(f, "{a}/32")
);

text_value!(
    /// The container's IPv6 address as a host network: "addr/128".
    Ipv6Host(Ipv6Addr),
    "an IPv6 address with /128 such as \"fd00::3/128\"",
    {"type": "string", "description": "An IPv6 address with prefix length 128."},
    |s| s.strip_suffix("/128").and_then(|a| a.parse::<Ipv6Addr>().ok())
        .ok_or_else(|| format!("invalid IPv6 address `{s}`: write an address with /128, e.g. \"fd00::3/128\"")),
    |a, f| write!(f, "{a}/128")
);

text_value!(
    /// An IPv4 or IPv6 address without prefix (a name server).
    IpAddress(IpAddr),
    "an IP address such as \"9.9.9.9\"",
    {"type": "string", "description": "An IPv4 or IPv6 address, e.g. \"9.9.9.9\"."},
    |s| s.parse::<IpAddr>().map_err(|_| format!("invalid IP address `{s}`: write e.g. \"9.9.9.9\" or \"2620:fe::fe\"")),
    |a, f| write!(f, "{a}")
);

text_value!(
    /// A host network interface's name, e.g. "eth0".
    IfaceName(String),
    "an interface name such as \"eth0\"",
    {"type": "string", "pattern": "^[^/ ]{1,15}$", "description": "A network interface name, 1-15 characters, no `/` or spaces."},
    |s| if s.is_empty() || s.len() > 15 || s.contains(|c: char| c == '/' || c == ':' || c == '\0' || c.is_whitespace()) || s == "." || s == ".." {
        Err(format!("invalid interface name `{s}`: 1-15 characters, no `/`, `:` or spaces, e.g. \"eth0\""))
    } else { Ok(s.to_string()) },
    |s, f| f.write_str(s)
);

text_value!(
    /// A sha256 digest: 64 hexadecimal digits, kept in lowercase.
    ShaSum(String),
    "a sha256 digest of 64 hexadecimal digits",
    {"type": "string", "pattern": "^[0-9A-Fa-f]{64}$", "description": "A sha256 digest, 64 hexadecimal digits."},
    |s| if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) { Ok(s.to_ascii_lowercase()) } else {
        Err(format!("invalid sha256 `{s}`: it must be 64 hexadecimal digits"))
    },
    |s, f| f.write_str(s)
);

/// A Debian release the tool knows: modules are to render the configuration of the
/// package versions it ships (PHP, MariaDB, BIND, …), so a suite the tool has not
/// been taught is refused rather than guessed. Code names only, never "stable" or
/// "oldstable": what those name moves, and a layer's id must not.
/// The default (`Suite::default()`) is the spec's default base's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Suite {
    /// Debian 12 (oldstable since August 2025).
    Bookworm,
    /// Debian 13 (stable since August 2025).
    #[default]
    Trixie,
}

/// What a suite ships of the software modules configure: the one table modules read
/// instead of writing a version or a version-dependent path themselves. PHP's names
/// and paths carry its version; BIND's Debian files differ; the other versions are
/// what the rendered syntax was checked against. Checked against the archive
/// (`apt-cache policy`, the packages' file lists).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Facts {
    /// PHP, as in the package `php<php>-fpm`, /etc/php/<php>/ and `php-fpm<php>`.
    pub php: &'static str,
    /// MariaDB server.
    pub mariadb: &'static str,
    /// BIND 9.
    pub bind: &'static str,
    /// Samba.
    pub samba: &'static str,
    /// Caddy 2.
    pub caddy: &'static str,
    /// nginx.
    pub nginx: &'static str,
    /// OpenSSH.
    pub openssh: &'static str,
    /// rsync.
    pub rsync: &'static str,
    /// tinc.
    pub tinc: &'static str,
    /// tayga (NAT64).
    pub tayga: &'static str,
    /// Debian's bind9 file that, included, gives a recursive server its root hints
    /// (bookworm's also defines the RFC 1912 zones below).
    pub bind_hints: &'static str,
    /// Zones that file defines, which a spec's zone must not repeat.
    pub bind_hint_zones: &'static [&'static str],
}

const BOOKWORM: Facts = Facts {
    php: "8.2",
    mariadb: "10.11",
    bind: "9.18",
    samba: "4.17",
    caddy: "2.6",
    nginx: "1.22",
    openssh: "9.2",
    rsync: "3.5",
    tinc: "1.0",
    tayga: "0.9.2",
    bind_hints: "/etc/bind/named.conf.default-zones",
    bind_hint_zones: &["localhost", "127.in-addr.arpa", "0.in-addr.arpa", "255.in-addr.arpa"],
};

const TRIXIE: Facts = Facts {
    php: "8.4",
    mariadb: "11.8",
    bind: "9.20",
    samba: "4.22",
    caddy: "2.6",
    nginx: "1.26",
    openssh: "10.0",
    rsync: "3.5",
    tinc: "1.0",
    tayga: "0.9.2",
    // bind9 9.20 ships no default-zones file: its named.conf includes named.conf.root-hints,
    // which defines only the root hint zone.
    bind_hints: "/etc/bind/named.conf.root-hints",
    bind_hint_zones: &[],
};

impl Suite {
    /// Every known suite, oldest first.
    pub const ALL: [Suite; 2] = [Suite::Bookworm, Suite::Trixie];

    /// The code name, as in "debian:<name>" and the archive's `dists/<name>`.
    pub fn name(self) -> &'static str {
        match self {
            Suite::Bookworm => "bookworm",
            Suite::Trixie => "trixie",
        }
    }

    /// What this suite ships (see [`Facts`]).
    pub fn facts(self) -> &'static Facts {
        match self {
            Suite::Bookworm => &BOOKWORM,
            Suite::Trixie => &TRIXIE,
        }
    }

    pub fn from_name(name: &str) -> Option<Suite> {
        Suite::ALL.into_iter().find(|s| s.name() == name)
    }

    /// The known bases, quoted and separated for a message: `"debian:bookworm", "debian:trixie"`.
    pub fn known_bases() -> String {
        Suite::ALL.iter().map(|s| format!("\"debian:{}\"", s.name())).collect::<Vec<_>>().join(", ")
    }
}

impl fmt::Display for Suite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

text_value!(
    /// "host", or "debian:<suite>" of a suite the tool knows, such as "debian:bookworm".
    Base(String),
    "\"host\" or \"debian:<suite>\"",
    {"type": "string", "enum": Base::known(),
     "description": "\"host\" (the host's system folders, read-only; no download) or \"debian:<suite>\" of a suite the tool knows: \"debian:bookworm\" or \"debian:trixie\"."},
    |s| {
        match s.strip_prefix("debian:") {
            _ if s == "host" => Ok(s.to_string()),
            Some(suite) if Suite::from_name(suite).is_some() => Ok(s.to_string()),
            Some(suite) if !suite.is_empty() && suite.bytes().all(|b| b.is_ascii_lowercase()) => {
                let names = Suite::ALL.map(Suite::name);
                let hint = match super::did_you_mean(suite, names.iter().copied()) {
                    Some(n) => format!(" (did you mean \"debian:{n}\"?)"),
                    None => String::new(),
                };
                Err(format!("unknown Debian suite `{suite}` in base `{s}`{hint}: known are \"host\", {}",
                            Suite::known_bases()))
            }
            _ => Err(format!("invalid base `{s}`: allowed are \"host\", {}", Suite::known_bases())),
        }
    },
    |s, f| f.write_str(s)
);

/// The spec's default base.
impl Default for Base {
    fn default() -> Self {
        Base(format!("debian:{}", Suite::default()))
    }
}

impl Base {
    pub fn is_host(&self) -> bool {
        self.0 == "host"
    }

    /// Every base a spec may name: "host", then each known suite's.
    pub fn known() -> Vec<String> {
        std::iter::once("host".to_string()).chain(Suite::ALL.map(|s| format!("debian:{s}"))).collect()
    }

    /// The Debian suite of a "debian:…" base; `None` for "host".
    pub fn suite(&self) -> Option<Suite> {
        self.0.strip_prefix("debian:").and_then(Suite::from_name)
    }
}

text_deref!(Base, Mirror, Arch, AbsPath, Owner, SourcePath, DeviceNode, SignalName, IfaceName, ShaSum);

#[cfg(test)]
mod plan_value_tests {
    use super::*;

    #[test]
    fn plan_values_keep_their_text_and_refuse_the_rest() {
        for ok in ["root:root", "www-data", "1000:1000", "backup:backup"] {
            assert_eq!(Owner::parse(ok).unwrap().to_string(), ok);
        }
        for bad in ["root:", ":root", "a b", "root:root:root", "r$(id)", ""] {
            assert!(Owner::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Owner::parse("app:web").unwrap().group(), Some("web"));
        for ok in ["data", "mysql/data", "/srv/data", "/srv/data/"] {
            assert_eq!(SourcePath::parse(ok).unwrap().to_string(), ok);
        }
        for bad in ["../../../../", "a/../b", "a//b", "", "data/", "/srv/../etc"] {
            assert!(SourcePath::parse(bad).is_err(), "{bad}");
        }
        assert!(DeviceNode::parse("/dev/sda").unwrap_err().contains("allowed is /dev/net/tun"));
        assert_eq!(SignalName::parse("SIGHUP").unwrap().as_str(), "HUP");
        assert!(SignalName::parse("KILL").is_err());
        assert_eq!(Ipv4Host::parse("100.72.0.3/32").unwrap().0, Ipv4Addr::new(100, 72, 0, 3));
        assert!(Ipv4Host::parse("100.72.0.3").is_err() && Ipv4Host::parse("fd00::1/128").is_err());
        assert_eq!(Ipv6Host::parse("fd00::3/128").unwrap().to_string(), "fd00::3/128");
        assert!(ShaSum::parse("abc").is_err());
        assert!(IfaceName::parse("eth0/../x").is_err());
    }

    #[test]
    fn a_base_names_a_known_suite_by_its_code_name() {
        assert_eq!(Base::parse("debian:trixie").unwrap().suite(), Some(Suite::Trixie));
        assert_eq!(Base::parse("debian:bookworm").unwrap().suite(), Some(Suite::Bookworm));
        assert_eq!(Base::parse("host").unwrap().suite(), None);
        let e = Base::parse("debian:trixy").unwrap_err();
        assert!(e.contains("unknown Debian suite `trixy`") && e.contains("did you mean \"debian:trixie\"?"), "{e}");
        assert!(e.contains("\"debian:bookworm\", \"debian:trixie\""), "the known suites: {e}");
        // Aliases move with each release; a layer's id must not.
        for alias in ["debian:stable", "debian:oldstable", "debian:testing", "debian:sid"] {
            assert!(Base::parse(alias).unwrap_err().contains("unknown Debian suite"), "{alias}");
        }
        assert!(Base::parse("debian:../x").unwrap_err().starts_with("invalid base"));
        assert_eq!(Base::known(), ["host", "debian:bookworm", "debian:trixie"]);
    }

    #[test]
    fn sets_of_networks_and_mappings_sort_like_their_text() {
        let nets: std::collections::BTreeSet<Cidr> =
            ["9.0.0.0/8", "10.0.0.0/8", "64:ff9b::/96"].iter().map(|s| s.parse().unwrap()).collect();
        let text: Vec<String> = nets.iter().map(|n| n.to_string()).collect();
        assert_eq!(text, ["10.0.0.0/8", "64:ff9b::/96", "9.0.0.0/8"]);
        let maps: std::collections::BTreeSet<Publish> =
            ["9000:80/tcp", "10000:80/tcp"].iter().map(|s| s.parse().unwrap()).collect();
        assert_eq!(maps.iter().next().unwrap().to_string(), "10000:80/tcp");
    }
}
