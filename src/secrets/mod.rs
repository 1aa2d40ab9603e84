//! Secrets: plaintext credentials in a change (`scan`) and the age/secrix
//! checks of encrypted files (`age`, `sops`).

pub mod age;
pub mod clean;
pub mod scan;
pub mod scheme;
pub mod sops;
