//! Everything Nix: the one place that spawns `nix` ([`cli`]), and (later)
//! the static reference parser, import graph and host discovery.

pub mod cli;
pub mod eval;
pub mod graph;
pub mod hosts;
pub mod inputs;
pub mod lock;
pub mod modgraph;
pub mod parse;
pub mod repl;
