//! Capabilities: names, sets, and the raw calls that drop them.
//!
//! Invariant: the name functions are pure; the `unsafe fn`s are raw system calls on
//! plain integers and stack memory, safe between fork and exec.
//!
//! A set is a `u64` with bit n for capability n (`CAP_CHOWN` = 0 … `CAP_CHECKPOINT_RESTORE`
//! = 40). Names are written without the `CAP_` prefix, as Docker and Podman write them.

use libc::c_int;

pub use crate::vocab::caps::*;

fn errno() -> c_int {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO)
}

/// Drop every capability outside `keep` from the bounding set (needs `CAP_SETPCAP`).
/// Numbers the kernel does not know answer EINVAL and end the loop.
///
/// # Safety
/// Raw prctl calls; no memory is touched. The caller must want the bounding set of
/// the calling process (inherited by everything it forks and execs) reduced for
/// good: call it in a forked child about to exec (it is async-signal-safe).
pub unsafe fn drop_bounding(keep: u64) -> Result<(), c_int> {
    for cap in 0..64u32 {
        if keep & (1u64 << cap) != 0 {
            continue;
        }
        // SAFETY: PR_CAPBSET_DROP takes only integers (the capability number, unused
        // zeros) and touches no memory of ours; an unknown number answers EINVAL.
        if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) } != 0 {
            match errno() {
                libc::EINVAL => break,
                e => return Err(e),
            }
        }
    }
    Ok(())
}

/// Clear the ambient set (kernels before 4.3 have none: EINVAL is fine).
///
/// # Safety
/// A raw prctl call on integers; the caller must want the ambient set of the
/// calling process emptied (call it in a forked child about to exec).
pub unsafe fn clear_ambient() -> Result<(), c_int> {
    // SAFETY: PR_CAP_AMBIENT_CLEAR_ALL takes only integer arguments and touches no
    // memory; it only changes this process's ambient capability set.
    if unsafe { libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong, 0, 0, 0) } != 0 {
        match errno() {
            libc::EINVAL => {}
            e => return Err(e),
        }
    }
    Ok(())
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: c_int,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// Is capability `cap` in the calling process's effective set?
///
/// # Safety
/// A raw capget on stack structs; nothing is changed. `cap` must be below 64: a
/// larger one panics on the index, which must not happen in a forked child.
pub unsafe fn effective_has(cap: u32) -> bool {
    let mut hdr = CapHeader { version: CAPABILITY_VERSION_3, pid: 0 };
    let mut data = [CapData { effective: 0, permitted: 0, inheritable: 0 }; 2];
    // SAFETY: `hdr` and `data` are live stack values with the C layout of
    // `cap_user_header_t` and the two `cap_user_data_t` elements version 3 writes.
    if unsafe { libc::syscall(libc::SYS_capget, &mut hdr as *mut CapHeader, data.as_mut_ptr()) } != 0 {
        return false;
    }
    data[(cap / 32) as usize].effective & (1 << (cap % 32)) != 0
}

/// Limit the effective and permitted sets to `keep` and empty the inheritable set.
///
/// # Safety
/// Raw capget/capset on stack structs. The caller must want the calling process's
/// capabilities reduced for good (call it in a forked child right before exec).
pub unsafe fn limit(keep: u64) -> Result<(), c_int> {
    let mut hdr = CapHeader { version: CAPABILITY_VERSION_3, pid: 0 };
    let mut data = [CapData { effective: 0, permitted: 0, inheritable: 0 }; 2];
    // SAFETY: `hdr` and `data` are live stack values with the C layout of
    // `cap_user_header_t` and the two `cap_user_data_t` elements version 3 writes.
    if unsafe { libc::syscall(libc::SYS_capget, &mut hdr as *mut CapHeader, data.as_mut_ptr()) } != 0 {
        return Err(errno());
    }
    for (i, d) in data.iter_mut().enumerate() {
        let k = (keep >> (32 * i)) as u32;
        d.permitted &= k;
        d.effective = d.permitted;
        d.inheritable = 0;
    }
    // SAFETY: the same stack header and two data elements, now only read by capset.
    if unsafe { libc::syscall(libc::SYS_capset, &mut hdr as *mut CapHeader, data.as_ptr()) } != 0 {
        return Err(errno());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers() {
        assert_eq!(number("CHOWN"), Some(0));
        assert_eq!(number("cap_net_admin"), Some(12));
        assert_eq!(number("SYS_ADMIN"), Some(SYS_ADMIN));
        assert_eq!(number("CHECKPOINT_RESTORE"), Some(40));
        assert_eq!(number("NOPE"), None);
        assert_eq!(canonical("Cap_Kill"), Some("KILL"));
        let d = default_set();
        assert_eq!(d.count_ones(), 11);
        assert_eq!(
            names(d),
            [
                "CHOWN",
                "DAC_OVERRIDE",
                "FOWNER",
                "FSETID",
                "KILL",
                "SETGID",
                "SETUID",
                "SETPCAP",
                "NET_BIND_SERVICE",
                "SYS_CHROOT",
                "SETFCAP"
            ]
        );
    }
}
