//! Plan: compile a spec into the desired state, diff it against the last applied
//! state and render the changes.
//!
//! Invariant: pure and deterministic. Same spec + same state ⇒ byte-identical plan
//! and output. The only input besides the spec is what `Env` hands in (the address
//! pool and files next to the spec); nothing here touches the OS.

pub mod compile;
pub mod diff;
pub mod layer;
pub mod pool;
pub mod render;
pub mod text;
pub mod types;

pub use compile::{compile, DirReader, Env, SourceReader};
pub use diff::{diff, Change, Changes};
pub use types::Plan;
