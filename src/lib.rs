//! guard: a git-native CI runner and pre-commit guard for NixOS fleet
//! repositories. The binary (`src/main.rs`) is a thin shell over this
//! library; every analysis here is a pure function of a snapshot.

pub mod affected;
pub mod app;
pub mod bisect;
pub mod build;
pub mod cli;
pub mod config;
pub mod doctor;
pub mod git;
pub mod github_env;
pub mod nix;
pub mod policy;
pub mod process;
pub mod report;
pub mod rollout;
pub mod secrets;
