//! Capability names and sets: pure data the spec, the plan and exec share.
//!
//! Invariant: no system calls here (the raw calls that drop capabilities are in
//! `exec::caps`, which re-exports this). A set is a `u64` with bit n for capability
//! n (`CAP_CHOWN` = 0 … `CAP_CHECKPOINT_RESTORE` = 40). Names are written without the
//! `CAP_` prefix, as Docker and Podman write them.

/// Capability names by number.
pub const NAMES: [&str; 41] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// The default bounding set: Podman's eleven.
pub const DEFAULT: [&str; 11] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

/// What a build step (apt, dpkg, maintainer scripts, a spec's `run`) keeps beyond the
/// default set ([`build_set`]): AUDIT_WRITE (login tools log through audit), as Buildah gives a
/// build; never SYS_ADMIN, SYS_PTRACE, SYS_MODULE, MKNOD or NET_ADMIN.
pub const BUILD_EXTRA: [&str; 1] = ["AUDIT_WRITE"];

pub const SETPCAP: u32 = 8;
pub const SYS_ADMIN: u32 = 21;

/// The number of capability `name` ("NET_ADMIN"; "CAP_NET_ADMIN" and lower case too).
pub fn number(name: &str) -> Option<u32> {
    let up = name.to_ascii_uppercase();
    let bare = up.strip_prefix("CAP_").unwrap_or(&up);
    NAMES.iter().position(|n| *n == bare).map(|i| i as u32)
}

/// The canonical spelling of `name`, if it is a capability.
pub fn canonical(name: &str) -> Option<&'static str> {
    number(name).map(|n| NAMES[n as usize])
}

/// The set of `names`; unknown names are skipped (callers validate first).
pub fn set_of<'a>(names: impl IntoIterator<Item = &'a str>) -> u64 {
    names.into_iter().filter_map(number).fold(0, |s, n| s | 1 << n)
}

/// A build step's capabilities as a mask: the default set plus [`BUILD_EXTRA`].
pub fn build_set() -> u64 {
    default_set() | set_of(BUILD_EXTRA)
}

/// The default set as a mask.
pub fn default_set() -> u64 {
    set_of(DEFAULT)
}

/// The names in `set`, by number.
pub fn names(set: u64) -> Vec<&'static str> {
    (0..NAMES.len()).filter(|&i| set & (1 << i) != 0).map(|i| NAMES[i]).collect()
}
