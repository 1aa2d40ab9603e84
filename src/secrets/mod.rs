//! Secrets: plaintext credentials in a change (`scan`) and the age/secrix
//! checks of encrypted files (`age`).

pub mod age;
pub mod scan;
pub mod scheme;
