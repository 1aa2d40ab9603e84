//! What changed in a built host's closure against the base toplevel, as
//! `nix store diff-closures` and nvd show it: store paths grouped by
//! package name, the versions each side has, and the size difference (nar
//! sizes), plus the closure sizes. Computed from `nix path-info -r --json`
//! of both toplevels, so it needs both in the store.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use serde::Serialize;

/// Size changes below this alone do not list a package (diff-closures'
/// threshold).
const SIZE_NOISE: i64 = 8 * 1024;

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

/// `/nix/store/<hash>-htop-3.3.0` -> ("htop", "3.3.0"): the version starts
/// at the first `-` followed by a digit (nix's DrvName rule).
pub fn split_name(path: &str) -> (String, String) {
    let base = path.rsplit('/').next().unwrap_or(path);
    let name = match base.split_once('-') {
        Some((hash, rest)) if hash.len() == 32 => rest,
        _ => base,
    };
    let b = name.as_bytes();
    for i in 0..b.len() {
        if b[i] == b'-' && b.get(i + 1).is_some_and(u8::is_ascii_digit) {
            return (name[..i].to_string(), name[i + 1..].to_string());
        }
    }
    (name.to_string(), String::new())
}

/// The difference between two closures (store path -> nar size).
pub fn diff(
    base_out: &str,
    old: &BTreeMap<String, u64>,
    new: &BTreeMap<String, u64>,
) -> ClosureDiff {
    #[derive(Default)]
    struct Side {
        versions: BTreeSet<String>,
        size: u64,
    }
    let group = |c: &BTreeMap<String, u64>| {
        let mut g: BTreeMap<String, Side> = BTreeMap::new();
        for (p, size) in c {
            let (name, version) = split_name(p);
            let e = g.entry(name).or_default();
            e.versions.insert(version);
            e.size += size;
        }
        g
    };
    let (o, n) = (group(old), group(new));
    let names: BTreeSet<&String> = o.keys().chain(n.keys()).collect();
    let mut packages = Vec::new();
    for name in names {
        let empty = Side::default();
        let a = o.get(name).unwrap_or(&empty);
        let b = n.get(name).unwrap_or(&empty);
        let delta = b.size as i64 - a.size as i64;
        if a.versions != b.versions || delta.abs() >= SIZE_NOISE {
            packages.push(PackageChange {
                name: name.clone(),
                old: a.versions.iter().cloned().collect(),
                new: b.versions.iter().cloned().collect(),
                size_delta: delta,
            });
        }
    }
    ClosureDiff {
        base_out: base_out.to_string(),
        base_size: old.values().sum(),
        new_size: new.values().sum(),
        packages,
    }
}

/// The closure of `root` (path -> nar size) within `info`.
pub fn closure_of(
    root: &str,
    info: &BTreeMap<String, crate::nix::cli::PathInfo>,
) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_string()];
    while let Some(p) = stack.pop() {
        if out.contains_key(&p) {
            continue;
        }
        let Some(i) = info.get(&p) else { continue };
        out.insert(p, i.nar_size);
        stack.extend(
            i.references
                .iter()
                .filter(|r| !out.contains_key(*r))
                .cloned(),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_split_at_the_first_dash_before_a_digit() {
        let h = "/nix/store/00000000000000000000000000000000-";
        assert_eq!(
            split_name(&format!("{h}htop-3.3.0")),
            ("htop".into(), "3.3.0".into())
        );
        assert_eq!(
            split_name(&format!("{h}nixos-system-linda-24.05")),
            ("nixos-system-linda".into(), "24.05".into())
        );
        assert_eq!(
            split_name(&format!("{h}admins.pub")),
            ("admins.pub".into(), "".into())
        );
        assert_eq!(
            split_name("python3.11-foo-1"),
            ("python3.11-foo".into(), "1".into())
        );
    }

    #[test]
    fn versions_sizes_added_and_removed() {
        let h = "/nix/store/00000000000000000000000000000000-";
        let m = |v: &[(&str, u64)]| -> BTreeMap<String, u64> {
            v.iter().map(|(p, s)| (format!("{h}{p}"), *s)).collect()
        };
        let old = m(&[
            ("htop-3.3.0", 100),
            ("git-2.44", 5000),
            ("vim", 10),
            ("big", 1000),
        ]);
        let new = m(&[
            ("htop-3.4.0", 120),
            ("git-2.44", 5000),
            ("tmux-3.4", 40),
            ("big", 50000),
        ]);
        let d = diff("/nix/store/b", &old, &new);
        let kinds: Vec<(&str, &str)> = d
            .packages
            .iter()
            .map(|p| (p.name.as_str(), p.kind()))
            .collect();
        assert_eq!(
            kinds,
            vec![
                ("big", "size"),
                ("htop", "changed"),
                ("tmux", "added"),
                ("vim", "removed")
            ]
        );
        assert_eq!(d.size_delta(), 55160 - 6110);
        assert_eq!(d.lines()[1], "htop: 3.3.0 → 3.4.0, +20 B (changed)");
        assert_eq!(d.lines()[3], "vim: ε → ∅, -10 B (removed)");
        assert!(
            d.summary().starts_with("1 changed, 1 added, 1 removed; "),
            "{}",
            d.summary()
        );
        assert_eq!(bytes(-1536, true), "-1.5 KiB");
    }
}
