//! `container`: build and run service containers from declarative specs.
//!
//! Pipeline: `spec` (parse, validate) → `plan` (pure compile, diff, render) → `exec`
//! (the only code that touches the kernel). `main.rs` is a thin CLI over this crate.

pub mod cli;
pub mod diag;
pub mod exec;
pub mod modules;
pub mod plan;
pub mod runtime;
pub mod schema;
pub mod script;
pub mod spec;
pub mod state;
pub mod vocab;
