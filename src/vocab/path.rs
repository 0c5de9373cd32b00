//! Places in a document: the byte range a value came from and the dotted path to it.
//!
//! Invariant: plain data, no parsing of documents here. The spec's tree, its
//! deserializer, the modules (which name the setting a resource came from) and the
//! diagnostics all speak of places in these two types.

use std::fmt;
use std::ops::Range;

/// Byte range in the source text.
pub type Span = Range<usize>;

/// One step of a path into the document: `services.caddy.sites[0].address`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PathSeg {
    Key(String),
    Index(usize),
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Path(pub Vec<PathSeg>);

impl Path {
    pub fn root() -> Self {
        Path(Vec::new())
    }
    pub fn key(&self, k: &str) -> Self {
        let mut p = self.clone();
        p.0.push(PathSeg::Key(k.to_string()));
        p
    }
    pub fn index(&self, i: usize) -> Self {
        let mut p = self.clone();
        p.0.push(PathSeg::Index(i));
        p
    }
    /// Parse a dotted path such as `services.caddy.sites[0].root`.
    pub fn parse(s: &str) -> Self {
        let mut out = Vec::new();
        for part in s.split('.').filter(|p| !p.is_empty()) {
            let mut rest = part;
            if let Some(b) = rest.find('[') {
                if b > 0 {
                    out.push(PathSeg::Key(rest[..b].to_string()));
                }
                rest = &rest[b..];
                while let Some(stripped) = rest.strip_prefix('[') {
                    let end = stripped.find(']').unwrap_or(stripped.len());
                    match stripped[..end].parse() {
                        Ok(i) => out.push(PathSeg::Index(i)),
                        Err(_) => out.push(PathSeg::Key(stripped[..end].to_string())),
                    }
                    rest = stripped.get(end + 1..).unwrap_or("");
                }
            } else {
                out.push(PathSeg::Key(rest.to_string()));
            }
        }
        Path(out)
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for seg in &self.0 {
            match seg {
                PathSeg::Key(k) => {
                    if !first {
                        f.write_str(".")?;
                    }
                    f.write_str(k)?;
                }
                PathSeg::Index(i) => write!(f, "[{i}]")?,
            }
            first = false;
        }
        Ok(())
    }
}
