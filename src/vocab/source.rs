//! Files next to the spec: the only input a plan may read besides the spec itself.
//!
//! Invariant: a compile reads through `SourceReader` only, so tests and benchmarks
//! hand in a map and stay pure. The real one, `exec::beneath::SpecFolder`, never
//! leaves the spec's folder (symlinks are followed only while they stay inside),
//! reads regular files only, and at most `MAX_SOURCE_BYTES` of them.

/// Reads files next to the spec (hook scripts, `source` files). The only I/O a plan
/// may depend on, behind a trait so that tests and benchmarks stay pure.
pub trait SourceReader {
    fn read(&self, rel: &str) -> Result<String, String>;
}

/// Largest file a spec may pull in through `source` or a hook.
pub const MAX_SOURCE_BYTES: u64 = 1 << 20;
