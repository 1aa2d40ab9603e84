//! What changed in a built host's closure against the base toplevel, as
//! `nix store diff-closures` and nvd show it: store paths grouped by
//! package name, the versions each side has, and the size difference (nar
//! sizes), plus the closure sizes. Computed from `nix path-info -r --json`
//! of both toplevels, so it needs both in the store.

use std::collections::{BTreeMap, BTreeSet};

/// Size changes below this alone do not list a package (diff-closures'
/// threshold).
const SIZE_NOISE: i64 = 8 * 1024;

pub use crate::report::closure::{ClosureDiff, PackageChange, bytes};

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
