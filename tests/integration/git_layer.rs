//! The git layer against real git repositories: every selector, every kind of
//! change, hook-style index overrides, shallow clones, odd file names, and
//! the promise that reading never changes the repository.

use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use guard::git::{
    BStr, BString, ByteSlice, ChangeKind, ChangeSet, FileMode, GitError, ObjectId, Repo, Selector,
    SnapshotSpec,
};

use crate::support::{RepoState, TempRepo, git_cmd};

fn oid(hex: &str) -> ObjectId {
    ObjectId::from_hex(hex.as_bytes()).unwrap()
}

fn b(s: &str) -> &BStr {
    s.as_bytes().as_bstr()
}

/// `(path, kind)` pairs, renames as `renamed<-from`, for compact assertions.
fn summary(cs: &ChangeSet) -> Vec<(String, String)> {
    cs.changes
        .iter()
        .map(|c| {
            let kind = match &c.kind {
                ChangeKind::Renamed { from } => format!("renamed<-{from}"),
                k => k.as_str().to_string(),
            };
            (c.path.to_string(), kind)
        })
        .collect()
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

/// Runs `f` against a freshly discovered `Repo` and asserts that nothing the
/// user can see (refs, HEAD, index, work tree) changed.
fn untouched<T>(repo: &TempRepo, f: impl FnOnce(&Repo) -> T) -> T {
    let before = repo.state();
    let r = Repo::discover(repo.path()).unwrap();
    let out = f(&r);
    drop(r);
    assert_eq!(
        before,
        repo.state(),
        "the git layer modified the repository"
    );
    out
}

fn chmod(repo: &TempRepo, rel: &str, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(repo.path().join(rel), std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A repository with one commit holding every kind of file we then change.
fn base_repo() -> TempRepo {
    let repo = TempRepo::new();
    repo.write("keep.nix", "{ }\n");
    repo.write("modify.nix", "{ a = 1; }\n");
    repo.write("delete.nix", "{ gone = true; }\n");
    repo.write("lib/rename-me.nix", "{ moved = true; }\n");
    repo.write("script.sh", "echo hi\n");
    repo.write("typechange", "was a file\n");
    repo.commit_all("base");
    repo
}

/// Applies one of each change kind to the work tree (not staged).
fn change_everything(repo: &TempRepo) {
    repo.write("modify.nix", "{ a = 2; }\n");
    repo.remove("delete.nix");
    std::fs::create_dir_all(repo.path().join("environments")).unwrap();
    std::fs::rename(
        repo.path().join("lib/rename-me.nix"),
        repo.path().join("environments/renamed.nix"),
    )
    .unwrap();
    chmod(repo, "script.sh", 0o755);
    repo.write("added.nix", "{ new = 1; }\n");
    std::os::unix::fs::symlink("keep.nix", repo.path().join("link.nix")).unwrap();
    repo.remove("typechange");
    std::os::unix::fs::symlink("keep.nix", repo.path().join("typechange")).unwrap();
}

fn expected_everything() -> Vec<(String, String)> {
    pairs(&[
        ("added.nix", "added"),
        ("delete.nix", "deleted"),
        ("environments/renamed.nix", "renamed<-lib/rename-me.nix"),
        ("link.nix", "added"),
        ("modify.nix", "modified"),
        ("script.sh", "mode_changed"),
        ("typechange", "type_changed"),
    ])
}

#[test]
fn staged_worktree_and_commit_see_every_change_kind() {
    let repo = base_repo();
    change_everything(&repo);

    // Nothing staged yet: the index equals HEAD, the work tree has it all.
    untouched(&repo, |r| {
        assert!(r.change_set(&Selector::Staged).unwrap().changes.is_empty());
        // --worktree covers tracked files only: untracked new files (and so
        // the new side of the rename) are not part of it until added.
        let wt = r.change_set(&Selector::Worktree).unwrap();
        assert_eq!(
            summary(&wt),
            pairs(&[
                ("delete.nix", "deleted"),
                ("lib/rename-me.nix", "deleted"),
                ("modify.nix", "modified"),
                ("script.sh", "mode_changed"),
                ("typechange", "type_changed"),
            ])
        );
        assert_eq!(wt.new.label(), "work tree");
        assert!(wt.old.label().starts_with("HEAD ("), "{}", wt.old.label());
    });

    repo.git(&["add", "-A"]);
    untouched(&repo, |r| {
        let cs = r.change_set(&Selector::Staged).unwrap();
        assert_eq!(summary(&cs), expected_everything());
        assert_eq!(cs.new.label(), "index");
        let by = |p: &str| cs.changes.iter().find(|c| c.path == p).unwrap();
        assert_eq!(by("script.sh").old.unwrap().mode, FileMode::Regular);
        assert_eq!(by("script.sh").new.unwrap().mode, FileMode::Executable);
        assert_eq!(by("link.nix").new.unwrap().mode, FileMode::Symlink);
        assert_eq!(by("typechange").new.unwrap().mode, FileMode::Symlink);
        // Symlinks read as their target text, never followed.
        assert_eq!(cs.new.read(b("link.nix")).unwrap().unwrap(), b"keep.nix");
        assert_eq!(
            cs.new.read(b("modify.nix")).unwrap().unwrap(),
            b"{ a = 2; }\n"
        );
        assert_eq!(cs.new.read(b("delete.nix")).unwrap(), None);
        assert_eq!(
            cs.old.read(b("delete.nix")).unwrap().unwrap(),
            b"{ gone = true; }\n"
        );
        // Renames count as both paths.
        let paths = cs.paths();
        assert!(paths.contains(&BString::from("lib/rename-me.nix")));
        assert!(paths.contains(&BString::from("environments/renamed.nix")));
        assert_eq!(paths.len(), 8);
        // The work tree now agrees with the index.
        let wt = r.change_set(&Selector::Worktree).unwrap();
        assert_eq!(summary(&wt), expected_everything());
        assert_eq!(wt.new.entries(), cs.new.entries());
    });

    let c = repo.commit_all("everything");
    untouched(&repo, |r| {
        for sel in [Selector::Commit("HEAD".into()), Selector::Commit(c.clone())] {
            let cs = r.change_set(&sel).unwrap();
            assert_eq!(summary(&cs), expected_everything());
            assert_eq!(cs.new.commit(), Some(oid(&c)));
            assert_eq!(cs.new.read(b("link.nix")).unwrap().unwrap(), b"keep.nix");
        }
        assert!(r.change_set(&Selector::Staged).unwrap().changes.is_empty());
        assert!(
            r.change_set(&Selector::Worktree)
                .unwrap()
                .changes
                .is_empty()
        );
    });
}

#[test]
fn change_kinds_serialize_as_lowercase_strings() {
    let repo = base_repo();
    change_everything(&repo);
    repo.commit_all("everything");
    let r = Repo::discover(repo.path()).unwrap();
    let cs = r.change_set(&Selector::Commit("HEAD".into())).unwrap();
    let json = serde_json::to_value(&cs.changes).unwrap();
    let renamed = json
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["kind"] == "renamed")
        .unwrap();
    assert_eq!(renamed["from"], "lib/rename-me.nix");
    assert_eq!(renamed["new"]["mode"], "regular");
    assert!(
        json.as_array()
            .unwrap()
            .iter()
            .any(|c| c["kind"] == "mode_changed")
    );
}

#[test]
fn worktree_deletions_exec_bit_and_untracked_files() {
    let repo = base_repo();
    repo.remove("delete.nix");
    chmod(&repo, "script.sh", 0o755);
    repo.write("untracked.nix", "ignored by --worktree\n");
    repo.write("modify.nix", "on disk\n");
    untouched(&repo, |r| {
        let cs = r.change_set(&Selector::Worktree).unwrap();
        assert_eq!(
            summary(&cs),
            pairs(&[
                ("delete.nix", "deleted"),
                ("modify.nix", "modified"),
                ("script.sh", "mode_changed"),
            ])
        );
        assert_eq!(cs.new.read(b("modify.nix")).unwrap().unwrap(), b"on disk\n");
        assert_eq!(cs.new.read(b("untracked.nix")).unwrap(), None);
        // The work-tree id is what git would hash.
        let git_id = repo.git(&["hash-object", "modify.nix"]);
        assert_eq!(cs.new.get(b("modify.nix")).unwrap().id, oid(git_id.trim()));
    });
}

#[test]
fn partially_staged_file_reads_index_bytes_for_staged_and_disk_for_worktree() {
    let repo = base_repo();
    repo.write("modify.nix", "{ a = 1; secret = \"staged\"; }\n");
    repo.git(&["add", "modify.nix"]);
    repo.write("modify.nix", "{ a = 1; }\n"); // the unstaged edit removes it again
    untouched(&repo, |r| {
        let staged = r.change_set(&Selector::Staged).unwrap();
        assert_eq!(summary(&staged), pairs(&[("modify.nix", "modified")]));
        assert_eq!(
            staged.new.read(b("modify.nix")).unwrap().unwrap(),
            b"{ a = 1; secret = \"staged\"; }\n"
        );
        // The work tree equals HEAD for this file: no change at all.
        let wt = r.change_set(&Selector::Worktree).unwrap();
        assert!(wt.changes.is_empty(), "{:?}", summary(&wt));
        let snap = r.snapshot(SnapshotSpec::Worktree).unwrap();
        assert_eq!(
            snap.read(b("modify.nix")).unwrap().unwrap(),
            b"{ a = 1; }\n"
        );
        let idx = r.snapshot(SnapshotSpec::Index).unwrap();
        assert_eq!(
            idx.read(b("modify.nix")).unwrap().unwrap(),
            b"{ a = 1; secret = \"staged\"; }\n"
        );
    });
}

#[test]
fn intent_to_add_is_an_empty_new_file() {
    let repo = base_repo();
    repo.write("later.nix", "content not staged\n");
    repo.git(&["add", "-N", "later.nix"]);
    untouched(&repo, |r| {
        let cs = r.change_set(&Selector::Staged).unwrap();
        assert_eq!(summary(&cs), pairs(&[("later.nix", "added")]));
        assert_eq!(cs.new.read(b("later.nix")).unwrap().unwrap(), b"");
        let wt = r.change_set(&Selector::Worktree).unwrap();
        assert_eq!(summary(&wt), pairs(&[("later.nix", "added")]));
        assert_eq!(
            wt.new.read(b("later.nix")).unwrap().unwrap(),
            b"content not staged\n"
        );
    });
}

#[test]
fn merge_commit_diffs_against_first_parent() {
    let repo = base_repo();
    repo.git(&["checkout", "-q", "-b", "feature"]);
    repo.write("feature.nix", "{ feature = true; }\n");
    repo.commit_all("feature");
    repo.git(&["checkout", "-q", "main"]);
    repo.write("main-only.nix", "{ }\n");
    let main_tip = repo.commit_all("main work");
    repo.git(&["merge", "-q", "--no-ff", "-m", "merge feature", "feature"]);
    let merge = repo.rev("HEAD");
    untouched(&repo, |r| {
        let cs = r.change_set(&Selector::Commit(merge.clone())).unwrap();
        assert_eq!(summary(&cs), pairs(&[("feature.nix", "added")]));
        assert_eq!(cs.old.commit(), Some(oid(&main_tip)));
        let info = r.commit_info(oid(&merge)).unwrap();
        assert_eq!(info.parents.len(), 2);
        assert_eq!(info.parents[0], oid(&main_tip));
        assert_eq!(info.subject, "merge feature");
        assert_eq!(info.author, "Guard Test <guard@example.invalid>");
        assert_eq!(info.time, 1_767_225_600);
    });
}

#[test]
fn range_uses_merge_base_and_defaults_head() {
    let repo = base_repo();
    let base = repo.rev("HEAD");
    repo.git(&["checkout", "-q", "-b", "feature"]);
    repo.write("feature.nix", "1\n");
    repo.commit_all("f1");
    repo.write("modify.nix", "changed on feature\n");
    let tip = repo.commit_all("f2");
    repo.git(&["checkout", "-q", "main"]);
    repo.write("main-only.nix", "not in the range\n");
    repo.commit_all("main moves on");
    repo.git(&["checkout", "-q", "feature"]);
    untouched(&repo, |r| {
        let want = pairs(&[("feature.nix", "added"), ("modify.nix", "modified")]);
        let cs = r
            .change_set(&Selector::Range {
                base: "main".into(),
                head: None,
            })
            .unwrap();
        assert_eq!(summary(&cs), want);
        assert_eq!(cs.old.commit(), Some(oid(&base)));
        assert_eq!(cs.new.commit(), Some(oid(&tip)));
        let cs = r
            .change_set(&Selector::Range {
                base: "main".into(),
                head: Some("feature".into()),
            })
            .unwrap();
        assert_eq!(summary(&cs), want);
        assert_eq!(
            r.merge_base(r.resolve("main").unwrap(), oid(&tip)).unwrap(),
            oid(&base)
        );
    });
}

#[test]
fn all_lists_every_file_as_added() {
    let repo = base_repo();
    untouched(&repo, |r| {
        let cs = r.change_set(&Selector::All).unwrap();
        assert_eq!(cs.old.label(), "empty tree");
        assert_eq!(cs.changes.len(), 6);
        assert!(cs.changes.iter().all(|c| c.kind == ChangeKind::Added));
    });
}

#[test]
fn empty_repository() {
    let repo = TempRepo::new();
    repo.write("first.nix", "{ }\n");
    repo.git(&["add", "first.nix"]);
    untouched(&repo, |r| {
        assert_eq!(r.head_commit().unwrap(), None);
        let cs = r.change_set(&Selector::Staged).unwrap();
        assert_eq!(summary(&cs), pairs(&[("first.nix", "added")]));
        assert_eq!(cs.old.label(), "empty tree");
        for sel in [
            Selector::All,
            Selector::Commit("HEAD".into()),
            Selector::Range {
                base: "main".into(),
                head: None,
            },
        ] {
            let err = r.change_set(&sel).unwrap_err();
            assert!(matches!(err, GitError::EmptyRepo), "{sel:?}: {err:?}");
            assert_eq!(err.to_string(), "repository has no commits yet");
        }
        assert!(matches!(r.resolve("HEAD"), Err(GitError::EmptyRepo)));
    });
}

#[test]
fn unknown_and_non_commit_revisions() {
    let repo = base_repo();
    untouched(&repo, |r| {
        let err = r
            .change_set(&Selector::Commit("no-such-branch".into()))
            .unwrap_err();
        assert!(
            matches!(&err, GitError::UnknownRev { rev } if rev == "no-such-branch"),
            "{err:?}"
        );
        assert!(err.to_string().contains("no-such-branch"));
        let missing = "0123456789abcdef0123456789abcdef01234567";
        assert!(matches!(
            r.resolve(missing),
            Err(GitError::UnknownRev { .. })
        ));
        let err = r.resolve("HEAD^{tree}").unwrap_err();
        assert!(matches!(err, GitError::NotACommit { .. }), "{err:?}");
        assert!(matches!(
            r.resolve("HEAD~5"),
            Err(GitError::UnknownRev { .. })
        ));
    });
}

#[test]
fn resolve_short_sha_tags_and_ancestry() {
    let repo = base_repo();
    let first = repo.rev("HEAD");
    repo.git(&["tag", "-a", "-m", "annotated", "v1"]);
    repo.write("x", "1");
    let second = repo.commit_all("second");
    repo.write("x", "2");
    let third = repo.commit_all("third");
    untouched(&repo, |r| {
        assert_eq!(
            r.resolve("v1").unwrap(),
            oid(&first),
            "annotated tags are peeled"
        );
        assert_eq!(r.resolve(&third[..8]).unwrap(), oid(&third));
        assert_eq!(r.resolve("HEAD~2").unwrap(), oid(&first));
        assert_eq!(r.resolve("main^").unwrap(), oid(&second));
        assert_eq!(r.head_commit().unwrap(), Some(oid(&third)));
    });
}

#[test]
fn first_parent_history_and_merge_base() {
    let repo = base_repo();
    let root = repo.rev("HEAD");
    repo.write("a", "1");
    let a = repo.commit_all("a");
    repo.git(&["checkout", "-q", "-b", "side"]);
    repo.write("side", "1");
    let side = repo.commit_all("side");
    repo.git(&["checkout", "-q", "main"]);
    repo.write("b", "1");
    let bb = repo.commit_all("b");
    repo.git(&["merge", "-q", "--no-ff", "-m", "merge", "side"]);
    let m = repo.rev("HEAD");
    untouched(&repo, |r| {
        let ids = |v: &[&String]| v.iter().map(|s| oid(s)).collect::<Vec<_>>();
        assert_eq!(
            r.first_parent_history(oid(&m), None).unwrap(),
            ids(&[&m, &bb, &a, &root]),
            "the side branch is not on the first-parent chain"
        );
        assert_eq!(
            r.first_parent_history(oid(&m), Some(oid(&a))).unwrap(),
            ids(&[&m, &bb])
        );
        assert_eq!(
            r.first_parent_history(oid(&m), Some(oid(&m))).unwrap(),
            Vec::<ObjectId>::new()
        );
        assert_eq!(r.merge_base(oid(&bb), oid(&side)).unwrap(), oid(&a));
        assert_eq!(r.merge_base(oid(&m), oid(&side)).unwrap(), oid(&side));
    });
}

#[test]
fn unrelated_histories_have_no_merge_base() {
    let repo = base_repo();
    let main = repo.rev("HEAD");
    repo.git(&["checkout", "-q", "--orphan", "other"]);
    repo.write("other", "1");
    let other = repo.commit_all("other root");
    let r = Repo::discover(repo.path()).unwrap();
    let err = r.merge_base(oid(&main), oid(&other)).unwrap_err();
    assert!(matches!(err, GitError::NoMergeBase { .. }), "{err:?}");
}

#[test]
fn shallow_clone_reports_missing_base_with_fix() {
    let src = base_repo();
    let old = src.rev("HEAD");
    src.write("x", "1");
    src.commit_all("two");
    src.write("x", "2");
    src.commit_all("three");
    let dst = tempfile::tempdir().unwrap();
    let clone = dst.path().join("clone");
    let url = format!("file://{}", src.path().display());
    let out = git_cmd(dst.path())
        .args(["clone", "-q", "--depth", "1", &url])
        .arg(&clone)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let before = RepoState::capture(&clone);
    let r = Repo::discover(&clone).unwrap();
    assert!(r.is_shallow());
    let err = r
        .change_set(&Selector::Range {
            base: old.clone(),
            head: None,
        })
        .unwrap_err();
    assert!(
        matches!(&err, GitError::ShallowMissing { rev } if rev == &old),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(msg.contains("shallow"), "{msg}");
    assert!(msg.contains("fetch-depth: 0"), "{msg}");
    assert!(msg.contains("git fetch --unshallow"), "{msg}");
    // Walking past the boundary, or diffing the boundary commit, says the same.
    assert!(matches!(
        r.resolve("HEAD~1"),
        Err(GitError::ShallowMissing { .. })
    ));
    assert!(matches!(
        r.change_set(&Selector::Commit("HEAD".into())),
        Err(GitError::ShallowMissing { .. })
    ));
    let head = r.head_commit().unwrap().unwrap();
    assert_eq!(r.first_parent_history(head, None).unwrap(), vec![head]);
    assert!(matches!(
        r.first_parent_history(head, Some(oid(&old))),
        Err(GitError::ShallowMissing { .. })
    ));
    // What is present still works.
    assert_eq!(r.change_set(&Selector::All).unwrap().changes.len(), 7);
    drop(r);
    assert_eq!(before, RepoState::capture(&clone));
}

#[test]
fn discover_from_subdirectory_and_outside() {
    let repo = base_repo();
    std::fs::create_dir_all(repo.path().join("lib/deep/er")).unwrap();
    let r = Repo::discover(&repo.path().join("lib/deep/er")).unwrap();
    let root = repo.path().canonicalize().unwrap();
    assert_eq!(r.workdir().unwrap().canonicalize().unwrap(), root);
    assert_eq!(r.git_dir().canonicalize().unwrap(), root.join(".git"));
    assert!(!r.is_shallow());
    // Paths stay repository-relative whatever the starting directory.
    let all = r.change_set(&Selector::All).unwrap();
    assert!(all.paths().contains(&BString::from("lib/rename-me.nix")));

    let nowhere = tempfile::tempdir().unwrap();
    let err = Repo::discover(&nowhere.path().join("missing"))
        .err()
        .unwrap();
    assert!(matches!(err, GitError::NotARepo { .. }), "{err:?}");
    assert!(err.to_string().contains("not a git repository"));
}

#[test]
fn odd_file_names() {
    let repo = TempRepo::new();
    repo.write("with space/a file.nix", "space\n");
    repo.write("ünïcødé/ファイル.nix", "unicode\n");
    let raw: &[u8] = b"latin1-\xe9t\xe9.nix";
    std::fs::write(
        repo.path().join(std::ffi::OsStr::from_bytes(raw)),
        "bytes\n",
    )
    .unwrap();
    repo.commit_all("odd names");
    repo.write("with space/a file.nix", "space 2\n");
    std::fs::write(
        repo.path().join(std::ffi::OsStr::from_bytes(raw)),
        "bytes 2\n",
    )
    .unwrap();
    untouched(&repo, |r| {
        let all = r.change_set(&Selector::All).unwrap();
        let paths = all.paths();
        assert!(paths.contains(&BString::from("with space/a file.nix")));
        assert!(paths.contains(&BString::from("ünïcødé/ファイル.nix")));
        assert!(paths.contains(&BString::from(raw)));
        assert_eq!(all.new.read(raw.as_bstr()).unwrap().unwrap(), b"bytes\n");
        assert_eq!(
            all.new.read(b("ünïcødé/ファイル.nix")).unwrap().unwrap(),
            b"unicode\n"
        );
        let wt = r.change_set(&Selector::Worktree).unwrap();
        assert_eq!(
            wt.paths(),
            vec![BString::from(raw), BString::from("with space/a file.nix")]
        );
        assert_eq!(wt.new.read(raw.as_bstr()).unwrap().unwrap(), b"bytes 2\n");
    });
}

#[test]
fn snapshots_read_in_parallel() {
    let repo = TempRepo::new();
    for i in 0..200 {
        repo.write(&format!("d{}/f{i}.nix", i % 7), format!("{{ n = {i}; }}\n"));
    }
    repo.commit_all("many");
    let r = Repo::discover(repo.path()).unwrap();
    let head = r.head_commit().unwrap().unwrap();
    let snap = r.snapshot(SnapshotSpec::Commit(head)).unwrap();
    assert!(snap.label().starts_with("HEAD ("));
    let idx = r.snapshot(SnapshotSpec::Index).unwrap();
    std::thread::scope(|s| {
        for t in 0..4 {
            let (snap, idx) = (snap.clone(), idx.clone());
            s.spawn(move || {
                for i in (t..200).step_by(4) {
                    let p = format!("d{}/f{i}.nix", i % 7);
                    let want = format!("{{ n = {i}; }}\n").into_bytes();
                    assert_eq!(snap.read(p.as_bytes().as_bstr()).unwrap().unwrap(), want);
                    assert_eq!(idx.read(p.as_bytes().as_bstr()).unwrap().unwrap(), want);
                }
            });
        }
    });
    assert_eq!(snap.entries(), idx.entries());
    // Reading one file of a commit snapshot that was never flattened works too.
    let lazy = r.change_set(&Selector::Commit("HEAD".into())).unwrap();
    assert_eq!(
        lazy.new.read(b("d3/f3.nix")).unwrap().unwrap(),
        b"{ n = 3; }\n"
    );
    assert_eq!(lazy.new.read(b("d3")).unwrap(), None);
    assert_eq!(lazy.new.read(b("d3/nope")).unwrap(), None);
    let blob = lazy.new.get(b("d3/f3.nix")).unwrap().id;
    assert_eq!(r.read_blob(blob).unwrap(), b"{ n = 3; }\n");
}

#[test]
fn directory_subtrees_that_did_not_change_are_skipped_but_moves_are_found() {
    let repo = TempRepo::new();
    for i in 0..20 {
        repo.write(
            &format!("machines/h{i}/default.nix"),
            format!("{{ host = {i}; }}\n"),
        );
    }
    repo.commit_all("hosts");
    repo.git(&["mv", "machines/h3", "machines/renamed"]);
    repo.write("machines/h4/default.nix", "changed\n");
    std::fs::remove_dir_all(repo.path().join("machines/h5")).unwrap();
    repo.write("machines/h5", "now a file\n");
    repo.commit_all("move");
    untouched(&repo, |r| {
        let cs = r.change_set(&Selector::Commit("HEAD".into())).unwrap();
        assert_eq!(
            summary(&cs),
            pairs(&[
                ("machines/h4/default.nix", "modified"),
                ("machines/h5", "added"),
                ("machines/h5/default.nix", "deleted"),
                (
                    "machines/renamed/default.nix",
                    "renamed<-machines/h3/default.nix"
                ),
            ])
        );
        // The lazily flattened side agrees with an explicit snapshot.
        let head = r.head_commit().unwrap().unwrap();
        let snap = r.snapshot(SnapshotSpec::Commit(head)).unwrap();
        assert_eq!(cs.new.entries(), snap.entries());
    });
}

/// A fake GitHub token, unique per `tag`, built at run time (so guard's
/// own scan of this file finds no literal): `guard scan --staged` names
/// the files whose *staged* content holds one, which shows both which
/// files and which content the git layer saw.
fn token(tag: char) -> String {
    format!("ghp_{}", tag.to_string().repeat(36))
}

/// The paths `guard scan --staged` finds a token in, run in `dir` with
/// `env` (as git runs a hook), sorted.
fn staged_token_paths(dir: &Path, env: &[(&str, &Path)]) -> Vec<String> {
    let mut c = crate::support::guard_cmd(dir);
    c.args(["scan", "--staged", "--format", "json"]);
    for (k, v) in env {
        c.env(k, v);
    }
    let out: crate::support::GuardOutput = c.output().unwrap().into();
    let v = out.json();
    let mut paths: Vec<String> = v["findings"]
        .as_array()
        .unwrap_or_else(|| panic!("no findings array: {}", out.stdout))
        .iter()
        .map(|f| f["path"].as_str().unwrap().to_string())
        .collect();
    paths.sort();
    paths.dedup();
    paths
}

/// `GIT_INDEX_FILE` (and `GIT_DIR`/`GIT_WORK_TREE`) as git sets them for a
/// pre-commit hook: the guard binary, run with them, judges that index.
#[test]
fn git_index_file_from_hook_environment() {
    let repo = base_repo();
    // Another index: HEAD plus a change that exists only there, like the
    // temporary index `git commit <paths>` hands to the hook.
    let alt = repo.path().join(".git/next-index-test.lock");
    std::fs::copy(repo.path().join(".git/index"), &alt).unwrap();
    repo.write("modify.nix", format!("{{ t = \"{}\"; }}\n", token('a')));
    let out = git_cmd(repo.path())
        .env("GIT_INDEX_FILE", &alt)
        .args(["add", "modify.nix"])
        .output()
        .unwrap();
    assert!(out.status.success());
    repo.write("modify.nix", "{ a = 1; }\n"); // disk back to HEAD
    // The regular index has a different staged change.
    repo.write("keep.nix", format!("{{ t = \"{}\"; }}\n", token('b')));
    repo.git(&["add", "keep.nix"]);
    let before = repo.state();

    // As `git commit <paths>` runs the hook: GIT_INDEX_FILE absolute.
    assert_eq!(
        staged_token_paths(repo.path(), &[("GIT_INDEX_FILE", &alt)]),
        ["modify.nix"]
    );
    // GIT_DIR + GIT_WORK_TREE + GIT_INDEX_FILE together.
    let git_dir = repo.path().join(".git");
    assert_eq!(
        staged_token_paths(
            repo.path(),
            &[
                ("GIT_INDEX_FILE", &alt),
                ("GIT_DIR", &git_dir),
                ("GIT_WORK_TREE", repo.path()),
            ]
        ),
        ["modify.nix"]
    );
    // Without the override the repository index is used.
    assert_eq!(staged_token_paths(repo.path(), &[]), ["keep.nix"]);
    assert_eq!(before, repo.state());
}

#[test]
fn bare_repository_has_no_staged_or_worktree() {
    let src = base_repo();
    let dst = tempfile::tempdir().unwrap();
    let bare = dst.path().join("bare.git");
    let out = git_cmd(dst.path())
        .args(["clone", "-q", "--bare"])
        .arg(src.path())
        .arg(&bare)
        .output()
        .unwrap();
    assert!(out.status.success());
    let r = Repo::discover(&bare).unwrap();
    assert!(r.workdir().is_none());
    assert!(matches!(
        r.change_set(&Selector::Staged),
        Err(GitError::Bare { .. })
    ));
    assert!(matches!(
        r.change_set(&Selector::Worktree),
        Err(GitError::Bare { .. })
    ));
    assert_eq!(r.change_set(&Selector::All).unwrap().changes.len(), 6);
}

/// Each row of integration-conventions.md 1.3: a real pre-commit hook runs
/// the guard binary (`guard scan --staged`), which reports the staged files
/// holding a token, i.e. what the git layer sees as the index being
/// committed. The hook always fails, so no commit is made and the
/// repository is left as it was.
#[test]
fn real_pre_commit_hook_sees_the_index_being_committed() {
    let repo = base_repo();
    let out_file = repo.path().join(".git/hook-output");
    let hook = repo.path().join(".git/hooks/pre-commit");
    std::fs::create_dir_all(hook.parent().unwrap()).unwrap();
    std::fs::write(
        &hook,
        format!(
            "#!/bin/sh\nNO_COLOR=1 '{}' scan --staged --format json > '{}' 2>&1\nexit 1\n",
            crate::support::guard_bin().display(),
            out_file.display()
        ),
    )
    .unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    // Staged: keep.nix. Unstaged: modify.nix. Untracked: new.nix. Each
    // holds its own token.
    repo.write("keep.nix", format!("{{ t = \"{}\"; }}\n", token('k')));
    repo.git(&["add", "keep.nix"]);
    repo.write("modify.nix", format!("{{ t = \"{}\"; }}\n", token('m')));
    repo.write("new.nix", format!("{{ t = \"{}\"; }}\n", token('n')));

    let commit = |args: &[&str]| -> String {
        let _ = std::fs::remove_file(&out_file);
        let before = repo.state();
        let out = git_cmd(repo.path())
            .args(["commit", "-q", "-m", "x"])
            .args(args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "the hook must abort the commit");
        // git itself rewrites the index (stat refresh, cache tree) before
        // running the hook, so only refs and files are compared here.
        let after = repo.state();
        assert_eq!((before.refs, before.files), (after.refs, after.files));
        let text = std::fs::read_to_string(&out_file).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("hook output is not JSON ({e}):\n{text}"));
        let mut paths: Vec<&str> = v["findings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["path"].as_str().unwrap())
            .collect();
        paths.sort();
        paths.dedup();
        paths.join(" ")
    };
    // Plain `git commit`: the repository index.
    assert_eq!(commit(&[]), "keep.nix");
    // `git commit -a`: a locked copy with tracked changes auto-added.
    assert_eq!(commit(&["-a"]), "keep.nix modify.nix");
    // `git commit <paths>`: HEAD plus only the named path.
    assert_eq!(commit(&["--", "modify.nix"]), "modify.nix");
    // `git commit -i <paths>`: the index plus the named path.
    assert_eq!(commit(&["-i", "--", "modify.nix"]), "keep.nix modify.nix");
}

#[test]
fn merge_conflict_worktree_keeps_the_conflicted_file() {
    let repo = base_repo();
    repo.git(&["checkout", "-q", "-b", "other"]);
    repo.write("modify.nix", "{ a = \"other\"; }\n");
    repo.commit_all("other");
    repo.git(&["checkout", "-q", "main"]);
    repo.write("modify.nix", "{ a = \"main\"; }\n");
    repo.commit_all("main");
    let out = git_cmd(repo.path())
        .args(["merge", "-q", "other"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "the merge must conflict");
    untouched(&repo, |r| {
        // Unmerged paths are not staged content.
        let staged = r.change_set(&Selector::Staged).unwrap();
        assert_eq!(summary(&staged), pairs(&[("modify.nix", "deleted")]));
        // On disk the file exists, with conflict markers: modified, not deleted.
        let wt = r.change_set(&Selector::Worktree).unwrap();
        assert_eq!(summary(&wt), pairs(&[("modify.nix", "modified")]));
        let text = wt.new.read(b("modify.nix")).unwrap().unwrap();
        assert!(text.starts_with(b"<<<<<<<"), "{}", text.as_bstr());
    });
}
