//! Regular expressions for address-like text values, as the schema states them.
//!
//! Invariant: each pattern accepts exactly the texts the matching value type in
//! [`super::values`] parses (checked against std's parsers by `schema::shape`'s
//! tests). They live in the leaf vocabulary because the value types name them in
//! their schema, and `schema` uses them when it shapes the output.

/// Dotted-quad IPv4, each part 0-255 without leading zeros.
macro_rules! ipv4 {
    () => {
        r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(\.(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3}"
    };
}

/// IPv6 in any of RFC 4291's text forms (compressed, full, with an embedded IPv4).
macro_rules! ipv6 {
    () => {
        concat!(
            r"(([0-9a-fA-F]{1,4}:){7}[0-9a-fA-F]{1,4}",
            r"|([0-9a-fA-F]{1,4}:){1,7}:",
            r"|([0-9a-fA-F]{1,4}:){1,6}:[0-9a-fA-F]{1,4}",
            r"|([0-9a-fA-F]{1,4}:){1,5}(:[0-9a-fA-F]{1,4}){1,2}",
            r"|([0-9a-fA-F]{1,4}:){1,4}(:[0-9a-fA-F]{1,4}){1,3}",
            r"|([0-9a-fA-F]{1,4}:){1,3}(:[0-9a-fA-F]{1,4}){1,4}",
            r"|([0-9a-fA-F]{1,4}:){1,2}(:[0-9a-fA-F]{1,4}){1,5}",
            r"|[0-9a-fA-F]{1,4}:(:[0-9a-fA-F]{1,4}){1,6}",
            r"|:((:[0-9a-fA-F]{1,4}){1,7}|:)",
            r"|([0-9a-fA-F]{1,4}:){6}",
            ipv4!(),
            r"|([0-9a-fA-F]{1,4}:){1,5}:",
            ipv4!(),
            r"|::([fF]{4}(:0{1,4})?:)?",
            ipv4!(),
            r")"
        )
    };
}

/// An IPv4 address.
pub const IPV4: &str = concat!("^", ipv4!(), "$");
/// An IPv6 address.
pub const IPV6: &str = concat!("^", ipv6!(), "$");
/// An IPv4 or IPv6 address.
pub const IP: &str = concat!("^(", ipv4!(), "|", ipv6!(), ")$");
/// A network: an IPv4 address with a prefix length 0-32, or IPv6 with 0-128.
pub const CIDR: &str = concat!("^(", ipv4!(), "/(3[0-2]|[12]?[0-9])|", ipv6!(), "/(12[0-8]|1[01][0-9]|[1-9]?[0-9]))$");
/// A port forward: `[ADDR:]HOST:CONTAINER[/tcp|udp]`, IPv6 addresses in brackets.
pub const PUBLISH: &str = concat!(r"^((\[", ipv6!(), r"\]|", ipv4!(), "):)?[0-9]{1,5}:[0-9]{1,5}(/(tcp|udp))?$");
