//! What changed in a host's closure against the base toplevel.

use serde::Serialize;

/// The closure difference of one host (filled in below).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClosureDiff {
    pub base_out: String,
}
