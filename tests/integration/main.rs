//! guard's integration tests: one test binary (fast to link), one module per
//! topic. Every test drives real git (and, where named, real nix).

mod affected;
mod age;
mod age_real_fleets;
mod age_sops;
mod bisect;
mod build;
mod check_sections;
mod ci;
mod cli;
mod everyday;
mod faults;
mod fleet;
mod git_layer;
mod guard_flake;
mod hooks;
mod host_layouts;
mod hostile;
mod layering;
mod nix_versions;
mod pipeline;
mod policy;
mod real_fleets;
mod real_hosts;
mod real_precision;
mod rollout;
mod scan;
mod scan_sources;
mod scan_verdicts;
mod self_check;
mod snapshots;
mod support;
