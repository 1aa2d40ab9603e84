//! The closure difference of a built host against the base toplevel: the
//! model and its text forms (computed by `crate::build::diff`).

use std::fmt::Write as _;

use serde::Serialize;

/// The closure difference of one host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClosureDiff {
    /// The base toplevel compared against.
    pub base_out: String,
    /// Closure sizes (sum of nar sizes, bytes).
    pub base_size: u64,
    pub new_size: u64,
    /// Packages whose versions or size changed, by name.
    pub packages: Vec<PackageChange>,
}

/// One package's change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PackageChange {
    pub name: String,
    /// Versions in the base closure ("" for a path without a version);
    /// empty when the package was added.
    pub old: Vec<String>,
    /// Versions in the new closure; empty when the package was removed.
    pub new: Vec<String>,
    /// Bytes.
    pub size_delta: i64,
}

impl PackageChange {
    /// `added`, `removed`, `changed` (versions) or `size`.
    pub fn kind(&self) -> &'static str {
        match (self.old.is_empty(), self.new.is_empty()) {
            (true, _) => "added",
            (_, true) => "removed",
            _ if self.old != self.new => "changed",
            _ => "size",
        }
    }
}

impl ClosureDiff {
    /// Bytes the closure grew (negative: shrank).
    pub fn size_delta(&self) -> i64 {
        self.new_size as i64 - self.base_size as i64
    }

    fn count(&self, kind: &str) -> usize {
        self.packages.iter().filter(|p| p.kind() == kind).count()
    }

    /// "2 changed, 1 added, 0 removed; 12.0 KiB → 14.1 KiB (+2.1 KiB)".
    pub fn summary(&self) -> String {
        format!(
            "{} changed, {} added, {} removed; {} → {} ({})",
            self.count("changed"),
            self.count("added"),
            self.count("removed"),
            bytes(self.base_size as i64, false),
            bytes(self.new_size as i64, false),
            bytes(self.size_delta(), true)
        )
    }

    /// One line per package: `htop: 3.3.0 → 3.4.0, +1.0 KiB`.
    pub fn lines(&self) -> Vec<String> {
        self.packages
            .iter()
            .map(|p| {
                let v = |vs: &[String]| {
                    if vs.is_empty() {
                        "∅".to_string()
                    } else {
                        vs.iter()
                            .map(|v| if v.is_empty() { "ε" } else { v.as_str() })
                            .collect::<Vec<_>>()
                            .join(", ")
                    }
                };
                let versions = if p.old == p.new {
                    String::new()
                } else {
                    format!("{} → {}, ", v(&p.old), v(&p.new))
                };
                format!(
                    "{}: {versions}{} ({})",
                    p.name,
                    bytes(p.size_delta, true),
                    p.kind()
                )
            })
            .collect()
    }

    /// Markdown: the summary, then the packages as a list.
    pub fn markdown(&self) -> String {
        let mut s = format!("{}\n", self.summary());
        if !self.packages.is_empty() {
            s.push('\n');
        }
        for l in self.lines() {
            let _ = writeln!(s, "- `{}`", l.replace('`', "'"));
        }
        s
    }
}

/// `1.5 KiB` / `+1.5 KiB`.
pub fn bytes(n: i64, signed: bool) -> String {
    let sign = match (signed, n.signum()) {
        (true, 1) | (true, 0) => "+",
        (_, -1) => "-",
        _ => "",
    };
    let a = n.unsigned_abs() as f64;
    let body = if a < 1024.0 {
        format!("{a:.0} B")
    } else if a < 1024.0 * 1024.0 {
        format!("{:.1} KiB", a / 1024.0)
    } else if a < 1024.0 * 1024.0 * 1024.0 {
        format!("{:.1} MiB", a / (1024.0 * 1024.0))
    } else {
        format!("{:.1} GiB", a / (1024.0 * 1024.0 * 1024.0))
    };
    format!("{sign}{body}")
}
