//! Plan: compile a spec into the desired state, diff it against the last applied
//! state and render the changes.
//!
//! Invariant: pure and deterministic. Same spec + same state ⇒ byte-identical plan
//! and output. The only input besides the spec is what `Env` hands in (the address
//! pool and files next to the spec); nothing here touches the OS. The plan's data
//! types live in the leaf `vocab` (modules and hooks produce them too) and are
//! re-exported here as `plan::types` and `plan::text`.

pub mod actions;
pub mod compile;
pub mod diff;
pub mod image;
pub mod layer;
pub mod pool;
pub mod render;
pub mod secrets;

// The plan's data lives in the leaf `vocab` (modules and hooks produce it too); these
// names keep `plan::types::…` and `plan::text::…` working for the layers above.
pub use crate::vocab::plan as types;
pub use crate::vocab::source::{SourceReader, MAX_SOURCE_BYTES};
pub use crate::vocab::text;
pub use compile::{compile, Env};
pub use diff::{diff, Change, Changes};
pub use types::Plan;
