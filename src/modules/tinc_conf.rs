//! Checked values of the tinc module: the node's VPN address and peers' PEM keys.

use crate::vocab::values::{Cidr, Net};
use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::{de, Deserialize, Deserializer, Serialize, Serializer};
use std::borrow::Cow;
use std::fmt;
use std::net::IpAddr;

/// An interface address with its prefix length: "10.10.0.1/24" (host bits set).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VpnAddress {
    pub addr: IpAddr,
    pub len: u8,
}

impl VpnAddress {
    pub fn parse(s: &str) -> Result<Self, String> {
        let bad = || {
            format!("invalid VPN address `{s}`: write this node's address with the VPN's prefix length, e.g. \"10.10.0.1/24\"")
        };
        let (a, l) = s.split_once('/').ok_or_else(bad)?;
        let addr: IpAddr = a.parse().map_err(|_| bad())?;
        let len: u8 = l.parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if len > max {
            return Err(format!("invalid VPN address `{s}`: prefix length is at most {max}"));
        }
        let net = Cidr::parse(&format!("{}/{len}", masked(addr, len))).map_err(|_| bad())?.0;
        let host_bits = max - len;
        if host_bits >= 2 {
            let is_net = addr == net.addr;
            let is_broadcast = matches!(addr, IpAddr::V4(v4) if u32::from(v4) | (u32::MAX >> len) == u32::from(v4));
            if is_net || is_broadcast {
                let what = if is_net { "network" } else { "broadcast" };
                return Err(format!("invalid VPN address `{s}`: that is the {what} address of {}/{len}; use a host address such as \"{}\"", net.addr, example(net)));
            }
        }
        Ok(VpnAddress { addr, len })
    }

    /// The network the address is in.
    pub fn net(&self) -> Net {
        Net { addr: masked(self.addr, self.len), len: self.len }
    }

    /// This address alone: /32 or /128.
    pub fn host(&self) -> Cidr {
        Cidr(Net { addr: self.addr, len: if self.addr.is_ipv4() { 32 } else { 128 } })
    }
}

fn masked(addr: IpAddr, len: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => IpAddr::V4((u32::from(a) & u32::MAX.checked_shl(32 - len as u32).unwrap_or(0)).into()),
        IpAddr::V6(a) => IpAddr::V6((u128::from(a) & u128::MAX.checked_shl(128 - len as u32).unwrap_or(0)).into()),
    }
}

fn example(net: Net) -> String {
    let first = match net.addr {
        IpAddr::V4(a) => IpAddr::V4((u32::from(a) + 1).into()),
        IpAddr::V6(a) => IpAddr::V6((u128::from(a) + 1).into()),
    };
    format!("{first}/{}", net.len)
}

impl fmt::Display for VpnAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl Serialize for VpnAddress {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for VpnAddress {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Parse inside the visitor so that an error points at the value itself.
        struct V;
        impl de::Visitor<'_> for V {
            type Value = VpnAddress;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an address with a prefix length such as \"10.10.0.1/24\"")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<VpnAddress, E> {
                VpnAddress::parse(s).map_err(E::custom)
            }
        }
        d.deserialize_str(V)
    }
}

impl JsonSchema for VpnAddress {
    fn schema_name() -> Cow<'static, str> {
        "VpnAddress".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": crate::vocab::patterns::CIDR,
            "description": "This node's VPN address with the VPN's prefix length, e.g. \"10.10.0.1/24\"."
        })
    }
}

/// Check a PEM public key: RSA PUBLIC KEY (PKCS#1) or PUBLIC KEY (SPKI) armor, base64 body.
pub fn check_pem(pem: &str) -> Result<(), String> {
    let lines: Vec<&str> = pem.trim().lines().map(str::trim).collect();
    let (first, last) = match (lines.first(), lines.last()) {
        (Some(f), Some(l)) if lines.len() >= 3 => (*f, *l),
        _ => return Err("expected a PEM block of several lines".into()),
    };
    let kind = first
        .strip_prefix("-----BEGIN ")
        .and_then(|k| k.strip_suffix("-----"))
        .filter(|k| *k == "RSA PUBLIC KEY" || *k == "PUBLIC KEY")
        .ok_or("the first line must be -----BEGIN RSA PUBLIC KEY-----")?;
    if last != format!("-----END {kind}-----") {
        return Err(format!("the last line must be -----END {kind}-----"));
    }
    let body: String = lines[1..lines.len() - 1].concat();
    if crate::modules::sshd::base64_decode(&body).is_none_or(|d| d.is_empty()) {
        return Err("the lines between BEGIN and END are not valid base64".into());
    }
    Ok(())
}
