//! guard's integration tests: one test binary (fast to link), one module per
//! topic. Every test drives real git (and, where named, real nix).

mod affected;
mod age;
mod bisect;
mod build;
mod ci;
mod cli;
mod faults;
mod fleet;
mod git_layer;
mod hooks;
mod hostile;
mod real_fleets;
mod scan;
mod scan_sources;
mod scan_verdicts;
mod support;
