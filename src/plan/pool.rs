//! Address pool for `"auto"` addresses.
//!
//! Invariant: allocation is a pure function of the pool's recorded state and the
//! container name: a name keeps its address; a new name gets the lowest free one.
//! The executor records allocations on apply and frees them on destroy.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Default IPv4 pool: a /16 inside the shared address space 100.64.0.0/10.
pub const POOL_V4: (Ipv4Addr, u8) = (Ipv4Addr::new(100, 72, 0, 0), 16);
/// Default IPv6 pool: a ULA /64 ("contain" in its bytes).
pub const POOL_V6: (Ipv6Addr, u8) = (Ipv6Addr::new(0xfd63, 0x6f6e, 0x7461, 0x696e, 0, 0, 0, 0), 64);

/// The networks "auto" addresses come from: [`POOL_V4`] and [`POOL_V6`] unless the
/// host configuration names others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ranges {
    pub v4: (Ipv4Addr, u8),
    pub v6: (Ipv6Addr, u8),
}

impl Default for Ranges {
    fn default() -> Self {
        Ranges { v4: POOL_V4, v6: POOL_V6 }
    }
}

impl Ranges {
    /// The host configuration's pools (validated there: the right family, room left).
    pub fn of(host: &crate::spec::host::HostConfig) -> Ranges {
        let mut r = Ranges::default();
        if let Some(IpAddr::V4(a)) = host.network.ipv4_pool.as_ref().map(|c| c.0.addr) {
            r.v4 = (a, host.network.ipv4_pool.as_ref().map_or(16, |c| c.0.len));
        }
        if let Some(IpAddr::V6(a)) = host.network.ipv6_pool.as_ref().map(|c| c.0.addr) {
            r.v6 = (a, host.network.ipv6_pool.as_ref().map_or(64, |c| c.0.len));
        }
        r
    }
}

/// Addresses in use, by container name (statically given ones included, so that
/// two containers never get one address), and the ranges new ones come from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddressPool {
    #[serde(default)]
    pub ipv4: BTreeMap<String, Ipv4Addr>,
    #[serde(default)]
    pub ipv6: BTreeMap<String, Ipv6Addr>,
    /// Not recorded: the host configuration's, at each compile.
    #[serde(skip)]
    pub ranges: Ranges,
}

impl AddressPool {
    /// This pool handing out new addresses from `ranges`.
    pub fn within(mut self, ranges: Ranges) -> AddressPool {
        self.ranges = ranges;
        self
    }

    /// The address for `name`: `want` if given (and free), else its recorded or the
    /// lowest free pool address.
    pub fn v4(&self, name: &str, want: Option<Ipv4Addr>) -> Result<Ipv4Addr, String> {
        if let Some(a) = want {
            return match self.ipv4.iter().find(|(n, x)| **x == a && n.as_str() != name) {
                Some((other, _)) => Err(format!("{a} is already used by container `{other}`")),
                None => Ok(a),
            };
        }
        if let Some(a) = self.ipv4.get(name) {
            return Ok(*a);
        }
        let base = u32::from(self.ranges.v4.0);
        let size = 1u32 << (32 - self.ranges.v4.1);
        (2..size - 1)
            .map(|i| Ipv4Addr::from(base + i))
            .find(|a| !self.ipv4.values().any(|x| x == a))
            .ok_or_else(|| "the IPv4 pool is exhausted".to_string())
    }

    pub fn v6(&self, name: &str, want: Option<Ipv6Addr>) -> Result<Ipv6Addr, String> {
        if let Some(a) = want {
            return match self.ipv6.iter().find(|(n, x)| **x == a && n.as_str() != name) {
                Some((other, _)) => Err(format!("{a} is already used by container `{other}`")),
                None => Ok(a),
            };
        }
        if let Some(a) = self.ipv6.get(name) {
            return Ok(*a);
        }
        let base = u128::from(self.ranges.v6.0);
        // At most 2^20 candidates: a /64 is never searched to its end.
        let size = 1u128 << (128 - u32::from(self.ranges.v6.1)).min(20);
        (2..size - 1)
            .map(|i| Ipv6Addr::from(base + i))
            .find(|a| !self.ipv6.values().any(|x| x == a))
            .ok_or_else(|| "the IPv6 pool is exhausted".to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_addresses_are_stable_and_never_shared() {
        let mut pool = AddressPool::default();
        let a = pool.v4("a", None).unwrap();
        assert_eq!(a, Ipv4Addr::new(100, 72, 0, 2));
        pool.ipv4.insert("a".into(), a);
        assert_eq!(pool.v4("a", None).unwrap(), a);
        assert_eq!(pool.v4("b", None).unwrap(), Ipv4Addr::new(100, 72, 0, 3));
        assert!(pool.v4("b", Some(a)).unwrap_err().contains("`a`"));
        assert_eq!(pool.v6("b", None).unwrap().to_string(), "fd63:6f6e:7461:696e::2");
    }

    #[test]
    fn new_addresses_come_from_the_hosts_ranges_and_old_ones_stay() {
        let ranges = Ranges { v4: (Ipv4Addr::new(100, 80, 4, 0), 30), v6: ("fd12::".parse().unwrap(), 126) };
        let mut pool = AddressPool::default().within(ranges);
        pool.ipv4.insert("old".into(), Ipv4Addr::new(100, 72, 0, 2));
        assert_eq!(pool.v4("old", None).unwrap(), Ipv4Addr::new(100, 72, 0, 2));
        assert_eq!(pool.v4("a", None).unwrap(), Ipv4Addr::new(100, 80, 4, 2));
        pool.ipv4.insert("a".into(), Ipv4Addr::new(100, 80, 4, 2));
        // A /30 holds one container: .0 and .1 are never handed out, nor .3.
        assert!(pool.v4("b", None).unwrap_err().contains("exhausted"));
        assert_eq!(pool.v6("a", None).unwrap().to_string(), "fd12::2");
    }
}
