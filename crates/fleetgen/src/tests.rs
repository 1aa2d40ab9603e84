use super::*;
use std::collections::BTreeMap;

fn spec(hosts: usize, modules: usize, files: usize, commits: usize, seed: u64) -> Spec {
    Spec {
        hosts,
        modules,
        files,
        commits,
        seed,
    }
}

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

/// Every file under `root` except `.git`, repo-relative, with its content.
fn tree(root: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            if p.file_name().unwrap() == ".git" {
                continue;
            }
            if e.file_type().unwrap().is_dir() {
                walk(root, &p, out);
            } else {
                let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// Repo-relative targets of the `imports = [ ... ];` line of a Nix file.
fn parse_imports(path: &str, content: &str) -> Vec<String> {
    let Some(line) = content
        .lines()
        .find(|l| l.trim_start().starts_with("imports = ["))
    else {
        return Vec::new();
    };
    let inner = line.split('[').nth(1).unwrap().split(']').next().unwrap();
    let dir: Vec<&str> = path.split('/').collect();
    let dir = &dir[..dir.len() - 1];
    inner
        .split_whitespace()
        .map(|lit| {
            let mut parts: Vec<&str> = dir.to_vec();
            for seg in lit.split('/') {
                match seg {
                    "." => {}
                    ".." => {
                        parts.pop();
                    }
                    s => parts.push(s),
                }
            }
            parts.join("/")
        })
        .collect()
}

#[test]
fn same_seed_same_repo() {
    let (a, b) = (tmp(), tmp());
    let s = spec(20, 30, 200, 15, 42);
    let fa = generate(a.path(), &s).unwrap();
    let fb = generate(b.path(), &s).unwrap();
    assert_eq!(fa.commits.len(), 16);
    assert_eq!(fa.commits, fb.commits);
    assert_eq!(fa.closure, fb.closure);
    assert_eq!(tree(a.path()), tree(b.path()));
}

#[test]
fn different_seeds_differ() {
    let (a, b) = (tmp(), tmp());
    let fa = generate(a.path(), &spec(10, 20, 100, 3, 1)).unwrap();
    let fb = generate(b.path(), &spec(10, 20, 100, 3, 2)).unwrap();
    assert_ne!(fa.head(), fb.head());
    assert_ne!(tree(a.path()), tree(b.path()));
}

#[test]
fn refuses_non_empty_dir() {
    let d = tmp();
    std::fs::write(d.path().join("x"), "x").unwrap();
    assert!(generate(d.path(), &Spec::default()).is_err());
}

#[test]
fn import_graph_is_acyclic_and_matches_closure() {
    let d = tmp();
    let fleet = generate(d.path(), &spec(30, 80, 300, 60, 7)).unwrap();
    let files = tree(d.path());
    let graph: BTreeMap<String, Vec<String>> = files
        .iter()
        .filter(|(p, _)| p.ends_with(".nix"))
        .map(|(p, c)| (p.clone(), parse_imports(p, std::str::from_utf8(c).unwrap())))
        .collect();
    for (p, imps) in &graph {
        for i in imps {
            assert!(files.contains_key(i), "{p} imports missing {i}");
        }
    }
    // Cycle check: DFS with colours.
    fn visit<'a>(
        n: &'a str,
        g: &'a BTreeMap<String, Vec<String>>,
        state: &mut BTreeMap<&'a str, u8>,
    ) {
        match state.get(n) {
            Some(1) => panic!("import cycle through {n}"),
            Some(2) => return,
            _ => {}
        }
        state.insert(n, 1);
        for m in &g[n] {
            visit(m, g, state);
        }
        state.insert(n, 2);
    }
    let mut state = BTreeMap::new();
    for n in graph.keys() {
        visit(n, &graph, &mut state);
    }
    // The closure computed by the generator equals the one parsed from disk
    // (Nix files), plus the data/conf files those modules reference.
    for host in &fleet.hosts {
        let mut seen = BTreeSet::new();
        let mut stack = vec![format!("machines/{host}/default.nix")];
        while let Some(f) = stack.pop() {
            if seen.insert(f.clone()) {
                stack.extend(graph[&f].iter().cloned());
            }
        }
        let nix: BTreeSet<String> = fleet.closure[host]
            .iter()
            .filter(|p| p.ends_with(".nix"))
            .cloned()
            .collect();
        assert_eq!(nix, seen, "closure of {host}");
    }
}

#[test]
fn every_host_imports_common() {
    let d = tmp();
    let fleet = generate(d.path(), &spec(25, 40, 0, 30, 3)).unwrap();
    let files = tree(d.path());
    let hosts: Vec<&String> = files
        .keys()
        .filter(|p| {
            p.starts_with("machines/") && p.ends_with("/default.nix") && p.matches('/').count() == 2
        })
        .collect();
    assert_eq!(hosts.len(), fleet.hosts.len());
    for h in hosts {
        let imps = parse_imports(h, std::str::from_utf8(&files[h]).unwrap());
        assert!(imps.contains(&COMMON.to_string()), "{h} lacks common");
    }
    for (h, c) in &fleet.closure {
        assert!(c.contains(COMMON), "{h}");
    }
}

#[test]
fn file_count_is_met() {
    let d = tmp();
    let fleet = generate(d.path(), &spec(40, 60, 1000, 0, 9)).unwrap();
    assert_eq!(tree(d.path()).len(), 1000);
    assert_eq!(fleet.commits.len(), 1);
    assert!(!fleet.filler_files().is_empty());
    assert_eq!(
        tree(d.path()).get("lib/eval.nix").unwrap(),
        eval_nix().as_bytes()
    );
}

#[test]
fn targeted_edits_record_ground_truth() {
    let d = tmp();
    let mut fleet = generate(d.path(), &spec(12, 20, 80, 0, 5)).unwrap();

    let filler = fleet.filler_files()[0].clone();
    fleet.modify_filler(&filler).unwrap();
    fleet.commit("filler").unwrap();
    let last = fleet.history.last().unwrap();
    assert_eq!(last.touched, BTreeSet::from([filler]));
    assert!(last.affected.is_empty());

    let module = fleet.modules()[0].clone();
    let readers = fleet.hosts_reading(&[&module]);
    fleet.set_module_value(&module).unwrap();
    fleet.commit("value").unwrap();
    assert_eq!(fleet.history.last().unwrap().affected, readers);

    fleet.add_comment(COMMON).unwrap();
    fleet.commit("comment").unwrap();
    assert_eq!(
        fleet.history.last().unwrap().affected.len(),
        fleet.hosts.len()
    );

    let renamed = fleet.rename_module(&module).unwrap();
    assert_ne!(renamed, module);
    fleet.commit("rename").unwrap();
    assert_eq!(fleet.hosts_reading(&[&renamed]), readers);
    assert!(fleet.history.last().unwrap().affected.is_superset(&readers));

    let host = fleet.hosts[0].clone();
    let new = fleet.add_module(&host).unwrap();
    fleet.commit("add module").unwrap();
    assert!(fleet.closure[&host].contains(&new));

    let added = fleet.add_host().unwrap();
    fleet.delete_host(&host).unwrap();
    fleet.commit("hosts").unwrap();
    let last = fleet.history.last().unwrap();
    assert!(last.affected.contains(&added) && last.affected.contains(&host));
    assert!(!fleet.hosts.contains(&host) && !d.path().join("machines").join(&host).exists());
    assert_eq!(fleet.commits.len(), 7);
}
