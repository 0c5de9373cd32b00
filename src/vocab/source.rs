//! Files next to the spec: the only input a plan may read besides the spec itself.
//!
//! Invariant: a compile reads through `SourceReader` only, so tests and benchmarks
//! hand in a map and stay pure; `DirReader`, the real one, never leaves the spec's
//! folder and refuses files larger than `MAX_SOURCE_BYTES`.

use std::path::PathBuf;

/// Reads files next to the spec (hook scripts, `source` files). The only I/O a plan
/// may depend on, behind a trait so that tests and benchmarks stay pure.
pub trait SourceReader {
    fn read(&self, rel: &str) -> Result<String, String>;
}

/// Largest file a spec may pull in through `source` or a hook.
pub const MAX_SOURCE_BYTES: u64 = 1 << 20;

/// Reads relative paths inside one folder.
pub struct DirReader(pub PathBuf);

impl SourceReader for DirReader {
    fn read(&self, rel: &str) -> Result<String, String> {
        if rel.starts_with('/') || rel.split('/').any(|c| c == "..") {
            return Err(format!("`{rel}` is outside the spec's folder"));
        }
        let path = self.0.join(rel);
        let meta = std::fs::metadata(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        if meta.len() > MAX_SOURCE_BYTES {
            return Err(format!("{} is larger than {MAX_SOURCE_BYTES} bytes", path.display()));
        }
        std::fs::read_to_string(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))
    }
}
