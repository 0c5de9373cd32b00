//! The device allow-list on cgroup2: a `BPF_CGROUP_DEVICE` program, as runc and crun
//! attach, for hosts without the v1 `devices` controller.
//!
//! Invariant: [`attach`] either leaves exactly one program on the cgroup (ours,
//! attached without `BPF_F_ALLOW_OVERRIDE`/`BPF_F_ALLOW_MULTI`, so no cgroup below
//! can attach one of its own to widen it) that allows only the given rules, or
//! returns an error and attaches nothing. The program is assembled here by hand (a
//! few dozen instructions, no compiler, no libbpf): for each rule, compare the
//! device type, major and minor, and return 1 (allow) on a match; 0 (deny, `EPERM`
//! for the opener) at the end. Every rule grants read, write and mknod, so the
//! access bits are not looked at. The kernel's verifier checks the program; once
//! attached it lives as long as the cgroup, so its fd is closed at once.

use std::ffi::CStr;
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use super::DeviceRule;

/// Why [`attach`] failed: the step, the kernel's error, and the verifier's log if any.
#[derive(Debug, thiserror::Error)]
#[error("cannot {what} the device filter: {source}{log}")]
pub struct DeviceFilterError {
    pub what: &'static str,
    pub source: std::io::Error,
    pub log: String,
}

/// `struct bpf_insn`: opcode, dst (low nibble) and src (high nibble) registers,
/// offset, immediate.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EbpfInsn {
    code: u8,
    regs: u8,
    off: i16,
    imm: i32,
}

const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> EbpfInsn {
    EbpfInsn { code, regs: (src << 4) | (dst & 0x0f), off, imm }
}

// Opcodes (linux/bpf_common.h, linux/bpf.h).
const LDX_MEM_W: u8 = 0x61; // BPF_LDX | BPF_MEM | BPF_W
const ALU32_AND_K: u8 = 0x54; // BPF_ALU | BPF_AND | BPF_K
const ALU32_RSH_K: u8 = 0x74; // BPF_ALU | BPF_RSH | BPF_K
const ALU64_MOV_K: u8 = 0xb7; // BPF_ALU64 | BPF_MOV | BPF_K
const JMP_JNE_K: u8 = 0x55; // BPF_JMP | BPF_JNE | BPF_K
const JMP_EXIT: u8 = 0x95; // BPF_JMP | BPF_EXIT

/// `struct bpf_cgroup_dev_ctx` field offsets: `access_type` (access << 16 | type),
/// `major`, `minor`.
const CTX_ACCESS_TYPE: i16 = 0;
const CTX_MAJOR: i16 = 4;
const CTX_MINOR: i16 = 8;
const DEV_BLOCK: i32 = 1; // BPF_DEVCG_DEV_BLOCK
const DEV_CHAR: i32 = 2; // BPF_DEVCG_DEV_CHAR

/// The filter program allowing exactly `rules`.
pub fn program(rules: &[DeviceRule]) -> Vec<EbpfInsn> {
    // r1 = ctx; r2 = type, r4 = major, r5 = minor.
    let mut p = vec![
        insn(LDX_MEM_W, 2, 1, CTX_ACCESS_TYPE, 0),
        insn(ALU32_AND_K, 2, 0, 0, 0xffff),
        insn(LDX_MEM_W, 3, 1, CTX_ACCESS_TYPE, 0),
        insn(ALU32_RSH_K, 3, 0, 0, 16),
        insn(LDX_MEM_W, 4, 1, CTX_MAJOR, 0),
        insn(LDX_MEM_W, 5, 1, CTX_MINOR, 0),
    ];
    for r in rules {
        // Numbers are at most 12 (major) and 20 (minor) bits: they fit an i32.
        let mut checks = vec![(2, if r.block { DEV_BLOCK } else { DEV_CHAR })];
        checks.extend(r.major.map(|m| (4, m as i32)));
        checks.extend(r.minor.map(|m| (5, m as i32)));
        let n = checks.len();
        for (i, (reg, value)) in checks.into_iter().enumerate() {
            // On a mismatch skip the rest of this rule's checks and its "allow".
            let skip = (n - i - 1 + 2) as i16;
            p.push(insn(JMP_JNE_K, reg, 0, skip, value));
        }
        p.push(insn(ALU64_MOV_K, 0, 0, 0, 1));
        p.push(insn(JMP_EXIT, 0, 0, 0, 0));
    }
    p.push(insn(ALU64_MOV_K, 0, 0, 0, 0));
    p.push(insn(JMP_EXIT, 0, 0, 0, 0));
    p
}

/// `union bpf_attr` for `BPF_PROG_LOAD`, up to `expected_attach_type`.
#[repr(C)]
#[derive(Default)]
struct ProgLoad {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// `union bpf_attr` for `BPF_PROG_ATTACH`.
#[repr(C)]
#[derive(Default)]
struct ProgAttach {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
}

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const LICENSE: &CStr = c"MIT";

fn bpf<T>(cmd: libc::c_long, attr: &T) -> std::io::Result<libc::c_long> {
    // SAFETY: `attr` is a plain repr(C) struct of the size passed, whose pointers
    // (insns, license, log buffer) point at live data owned by the caller.
    let r = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *const T, std::mem::size_of::<T>()) };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Load the program for `rules` and attach it to the cgroup2 directory `dir`,
/// replacing a program left there by an earlier create (no children may override).
pub fn attach(dir: &Path, rules: &[DeviceRule]) -> Result<(), DeviceFilterError> {
    let err = |what, source| DeviceFilterError { what, source, log: String::new() };
    let insns = program(rules);
    let mut log = vec![0u8; 4096];
    let mut name = [0u8; 16];
    name[..9].copy_from_slice(b"container");
    let load = ProgLoad {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: LICENSE.as_ptr() as u64,
        log_level: 1,
        log_size: log.len() as u32,
        log_buf: log.as_mut_ptr() as u64,
        prog_name: name,
        expected_attach_type: BPF_CGROUP_DEVICE,
        ..ProgLoad::default()
    };
    let prog = match bpf(BPF_PROG_LOAD, &load) {
        // SAFETY: BPF_PROG_LOAD returned a new fd that nothing else owns.
        Ok(fd) => unsafe { OwnedFd::from_raw_fd(fd as i32) },
        Err(source) => {
            let end = log.iter().position(|b| *b == 0).unwrap_or(0);
            let text = String::from_utf8_lossy(&log[..end]).trim().to_string();
            let log = if text.is_empty() { text } else { format!(" (verifier: {text})") };
            return Err(DeviceFilterError { what: "load", source, log });
        }
    };
    let cgroup = File::open(dir).map_err(|e| err("open the cgroup for", e))?;
    let attach = ProgAttach {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_bpf_fd: prog.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        ..ProgAttach::default()
    };
    bpf(BPF_PROG_ATTACH, &attach).map_err(|e| err("attach", e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_rule_is_a_block_of_checks_ending_in_allow() {
        let p = program(&[DeviceRule::char(1, 3), DeviceRule { block: false, major: Some(136), minor: None }]);
        // 6 loads, then (3 checks + allow + exit), (2 checks + allow + exit), deny + exit.
        assert_eq!(p.len(), 6 + 5 + 4 + 2);
        let jumps: Vec<(u8, i16, i32)> =
            p.iter().filter(|i| i.code == JMP_JNE_K).map(|i| (i.regs & 0x0f, i.off, i.imm)).collect();
        // Each mismatch lands on the next rule's first check (or the final deny).
        assert_eq!(jumps, [(2, 4, DEV_CHAR), (4, 3, 1), (5, 2, 3), (2, 3, DEV_CHAR), (4, 2, 136)]);
        for (at, i) in p.iter().enumerate() {
            if i.code == JMP_JNE_K {
                let target = at as i64 + 1 + i64::from(i.off);
                let t = &p[target as usize];
                assert!(t.code == JMP_JNE_K || (t.code == ALU64_MOV_K && t.imm == 0), "jump at {at} lands on {t:?}");
            }
        }
        assert_eq!(p[p.len() - 2], insn(ALU64_MOV_K, 0, 0, 0, 0));
        assert_eq!(p[p.len() - 1].code, JMP_EXIT);
        // No rules: deny everything.
        assert_eq!(program(&[]).len(), 8);
    }
}
