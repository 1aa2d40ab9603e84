//! The git hook end to end: `guard hook install` into a real repository,
//! then real `git commit` / `git merge` runs that go through the shim and
//! `guard pre-commit`. The hook finds the test's guard binary through the
//! absolute path recorded at install time.

use std::path::Path;
use std::process::Output;

use crate::support::{TempRepo, fleet_repo, git_cmd, guard_bin, guard_cmd};

/// A WireGuard private key shaped value (random, never a real key).
const WG_KEY: &str = "kP3xq1S9mWcT0b7Jf2hL8ZyNvE4uDsGrAoIe6Ck5pH0=";

fn leak(key: &str) -> String {
    format!(
        "{{ ... }}: {{\n  networking.wireguard.interfaces.wg0 = {{\n    privateKey = \"{key}\";\n  }};\n}}\n"
    )
}

/// The same file done right: the key stays out of the repository.
fn clean(tag: &str) -> String {
    format!(
        "{{ ... }}: {{\n  networking.wireguard.interfaces.wg0 = {{\n    privateKeyFile = \"/run/keys/{tag}\";\n  }};\n}}\n"
    )
}

/// Runs git without asserting success.
fn git_try(repo: &TempRepo, args: &[&str]) -> Output {
    git_cmd(repo.path()).args(args).output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[track_caller]
fn assert_blocked(o: &Output) {
    let err = stderr(o);
    assert!(!o.status.success(), "expected the hook to block:\n{err}");
    assert!(err.contains("commit blocked"), "{err}");
    assert!(
        err.contains("guard:allow"),
        "teaches the allow comment: {err}"
    );
    assert!(err.contains("--write-baseline"), "{err}");
    assert!(
        !err.contains("--no-verify"),
        "never suggests skipping: {err}"
    );
    assert!(
        !err.contains(&WG_KEY[6..]),
        "never prints the secret: {err}"
    );
}

#[track_caller]
fn assert_passed(o: &Output) {
    let err = stderr(o);
    assert!(o.status.success(), "expected the commit to pass:\n{err}");
    assert!(err.contains("guard: ok"), "the hook ran: {err}");
}

fn installed_fleet() -> TempRepo {
    let repo = fleet_repo();
    repo.guard(&["hook", "install"]).assert_code(0);
    repo
}

#[test]
fn staged_secret_blocks_and_a_clean_commit_passes() {
    let repo = installed_fleet();
    let head = repo.rev("HEAD");
    repo.write("machines/monitor/wg.nix", leak(WG_KEY));
    repo.git(&["add", "machines/monitor/wg.nix"]);
    let o = git_try(&repo, &["commit", "-q", "-m", "leak"]);
    assert_blocked(&o);
    assert!(
        stderr(&o).contains("machines/monitor/wg.nix:3:"),
        "{}",
        stderr(&o)
    );
    assert_eq!(repo.rev("HEAD"), head, "nothing was committed");

    // The same file, fixed: the commit goes through and says which hosts.
    repo.write("machines/monitor/wg.nix", clean("file-not-a-key"));
    repo.git(&["add", "machines/monitor/wg.nix"]);
    repo.write("services/prometheus.nix", {
        let mut t = std::fs::read_to_string(repo.path().join("services/prometheus.nix")).unwrap();
        t.push_str("# tuned\n");
        t
    });
    repo.git(&["add", "services/prometheus.nix"]);
    let o = git_try(&repo, &["commit", "-q", "-m", "clean"]);
    assert_passed(&o);
    assert!(stderr(&o).contains("2 staged paths"), "{}", stderr(&o));
    assert!(stderr(&o).contains("monitor"), "{}", stderr(&o));
    assert_ne!(repo.rev("HEAD"), head);
}

#[test]
fn a_secret_only_in_the_working_tree_does_not_block() {
    let repo = installed_fleet();
    // Partially staged: the index holds the clean version, the disk the key.
    repo.write("machines/monitor/wg.nix", clean("file-not-a-key"));
    repo.git(&["add", "machines/monitor/wg.nix"]);
    repo.write("machines/monitor/wg.nix", leak(WG_KEY));
    let before = repo.state();
    let o = git_try(&repo, &["commit", "-q", "-m", "clean part only"]);
    assert_passed(&o);
    let committed = repo.git(&["show", "HEAD:machines/monitor/wg.nix"]);
    assert!(!committed.contains(WG_KEY));
    // The unstaged key is still on disk, untouched by the hook.
    assert_eq!(
        before.files.get(Path::new("machines/monitor/wg.nix")),
        repo.state().files.get(Path::new("machines/monitor/wg.nix"))
    );
}

#[test]
fn commit_all_judges_what_it_adds() {
    let repo = installed_fleet();
    repo.write("machines/monitor/wg.nix", clean("file-not-a-key"));
    repo.commit_all("add wg.nix");
    let head = repo.rev("HEAD");
    // Nothing staged; `-a` adds the tracked change through GIT_INDEX_FILE
    // (a locked copy of the index).
    repo.write("machines/monitor/wg.nix", leak(WG_KEY));
    let o = git_try(&repo, &["commit", "-q", "-a", "-m", "all"]);
    assert_blocked(&o);
    assert_eq!(repo.rev("HEAD"), head);
    // Without -a the key is not being committed: an unrelated staged change passes.
    repo.write("README.md", "fleet\n");
    repo.git(&["add", "README.md"]);
    let o = git_try(&repo, &["commit", "-q", "-m", "readme only"]);
    assert_passed(&o);
}

#[test]
fn commit_paths_judges_only_the_named_paths() {
    let repo = installed_fleet();
    repo.write("machines/monitor/wg.nix", clean("file-not-a-key"));
    repo.write("machines/linda/notes.nix", "{ }\n");
    repo.commit_all("base");
    // A key staged in one file; `git commit <other>` commits HEAD plus only
    // <other> (a temporary index), so it passes.
    repo.write("machines/monitor/wg.nix", leak(WG_KEY));
    repo.git(&["add", "machines/monitor/wg.nix"]);
    repo.write("machines/linda/notes.nix", "{ # notes\n}\n");
    let o = git_try(
        &repo,
        &["commit", "-q", "-m", "notes", "machines/linda/notes.nix"],
    );
    assert_passed(&o);
    let show = repo.git(&["show", "--stat", "--format=", "HEAD"]);
    assert!(
        show.contains("notes.nix") && !show.contains("wg.nix"),
        "{show}"
    );
    // Naming the file with the key takes its content from disk: blocked.
    let head = repo.rev("HEAD");
    let o = git_try(
        &repo,
        &["commit", "-q", "-m", "wg", "machines/monitor/wg.nix"],
    );
    assert_blocked(&o);
    assert_eq!(repo.rev("HEAD"), head);
}

#[test]
fn amend_is_judged_like_a_commit() {
    let repo = installed_fleet();
    repo.write("machines/monitor/wg.nix", clean("file-not-a-key"));
    repo.git(&["add", "-A"]);
    assert_passed(&git_try(&repo, &["commit", "-q", "-m", "wg"]));
    let head = repo.rev("HEAD");
    repo.write("machines/monitor/wg.nix", leak(WG_KEY));
    repo.git(&["add", "-A"]);
    assert_blocked(&git_try(
        &repo,
        &["commit", "-q", "--amend", "-m", "wg (amended)"],
    ));
    assert_eq!(repo.rev("HEAD"), head);
    repo.write("machines/monitor/wg.nix", clean("still-not-a-key"));
    repo.git(&["add", "-A"]);
    assert_passed(&git_try(
        &repo,
        &["commit", "-q", "--amend", "-m", "wg (amended)"],
    ));
    assert_ne!(repo.rev("HEAD"), head);
    assert_eq!(repo.git(&["rev-list", "--count", "HEAD"]).trim(), "2");
}

#[test]
fn merges_run_pre_merge_commit() {
    let repo = installed_fleet();
    let base = repo.rev("HEAD");
    // A clean branch merges through pre-merge-commit (no pre-commit runs).
    repo.git(&["checkout", "-q", "-b", "clean"]);
    repo.write("machines/linda/notes.nix", "{ }\n");
    repo.git(&["add", "-A"]);
    assert_passed(&git_try(&repo, &["commit", "-q", "-m", "notes"]));
    repo.git(&["checkout", "-q", "main"]);
    repo.write("README.md", "fleet\n");
    repo.git(&["add", "-A"]);
    assert_passed(&git_try(&repo, &["commit", "-q", "-m", "readme"]));
    let o = git_try(&repo, &["merge", "--no-ff", "--no-edit", "clean"]);
    assert_passed(&o);
    assert_eq!(
        repo.git(&["rev-list", "--count", "--merges", "HEAD"])
            .trim(),
        "1"
    );

    // A key that arrives from the other branch is still being committed here.
    // (The branch commit is made with hooks disabled, as a colleague without
    // the hook would have.)
    repo.git(&["checkout", "-q", "-b", "leaky", &base]);
    repo.write("machines/monitor/wg.nix", leak(WG_KEY));
    repo.git(&["add", "-A"]);
    repo.git(&[
        "-c",
        "core.hooksPath=/dev/null",
        "commit",
        "-q",
        "-m",
        "leak",
    ]);
    repo.git(&["checkout", "-q", "main"]);
    let head = repo.rev("HEAD");
    let o = git_try(&repo, &["merge", "--no-ff", "--no-edit", "leaky"]);
    assert_blocked(&o);
    assert_eq!(repo.rev("HEAD"), head, "the merge commit was not made");
}

#[test]
fn a_foreign_hook_is_kept_chained_and_restored() {
    let repo = fleet_repo();
    let marker_dir = tempfile::tempdir().unwrap();
    let marker = marker_dir.path().join("ran");
    let hook = repo.path().join(".git/hooks/pre-commit");
    let foreign = format!(
        "#!/bin/sh\necho legacy >> '{}'\nexit \"${{LEGACY_EXIT:-0}}\"\n",
        marker.display()
    );
    std::fs::write(&hook, &foreign).unwrap();
    std::fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();

    let o = repo.guard(&["hook", "install"]);
    o.assert_code(0);
    assert!(o.stdout.contains("pre-commit.legacy"), "{}", o.stdout);
    let legacy = repo.path().join(".git/hooks/pre-commit.legacy");
    assert_eq!(std::fs::read_to_string(&legacy).unwrap(), foreign);

    // Re-installing is a no-op.
    let shim = std::fs::read(&hook).unwrap();
    let o = repo.guard(&["hook", "install"]);
    o.assert_code(0);
    assert!(
        o.stdout
            .contains("pre-commit: already installed, up to date"),
        "{}",
        o.stdout
    );
    assert_eq!(std::fs::read(&hook).unwrap(), shim);
    assert_eq!(std::fs::read_to_string(&legacy).unwrap(), foreign);

    // The foreign hook runs first, then guard.
    repo.write("README.md", "fleet\n");
    repo.git(&["add", "-A"]);
    assert_passed(&git_try(&repo, &["commit", "-q", "-m", "one"]));
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "legacy\n");
    // Its failure blocks the commit.
    repo.write("README.md", "fleet 2\n");
    repo.git(&["add", "-A"]);
    let head = repo.rev("HEAD");
    let o = git_cmd(repo.path())
        .args(["commit", "-q", "-m", "two"])
        .env("LEGACY_EXIT", "3")
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(
        !stderr(&o).contains("guard: ok"),
        "guard does not run after a failed legacy hook"
    );
    assert_eq!(repo.rev("HEAD"), head);

    let o = repo.guard(&["hook", "uninstall"]);
    o.assert_code(0);
    assert_eq!(std::fs::read_to_string(&hook).unwrap(), foreign);
    assert!(!legacy.exists());
    assert!(!repo.path().join(".git/hooks/pre-merge-commit").exists());
}

#[test]
fn hook_status_reports_each_hook() {
    let repo = fleet_repo();
    let o = repo.guard(&["hook", "status"]);
    o.assert_code(1);
    assert!(
        o.stdout.contains("pre-commit: not installed"),
        "{}",
        o.stdout
    );
    assert!(o.stdout.contains("(git's default)"), "{}", o.stdout);
    repo.guard(&["hook", "install"]).assert_code(0);
    let o = repo.guard(&["hook", "status"]);
    o.assert_code(0);
    assert!(
        o.stdout.contains("pre-commit: guard, up to date"),
        "{}",
        o.stdout
    );
    assert!(
        o.stdout.contains("pre-merge-commit: guard, up to date"),
        "{}",
        o.stdout
    );
    // A shim recording another guard binary is reported as such.
    let hook = repo.path().join(".git/hooks/pre-commit");
    let text = std::fs::read_to_string(&hook).unwrap();
    let bin = guard_bin().canonicalize().unwrap();
    std::fs::write(
        &hook,
        text.replace(&bin.display().to_string(), "/nonexistent/guard"),
    )
    .unwrap();
    let o = repo.guard(&["hook", "status"]);
    o.assert_code(1);
    assert!(
        o.stdout
            .contains("/nonexistent/guard, which no longer exists"),
        "{}",
        o.stdout
    );
    assert!(
        o.stdout.contains("`guard hook install` updates it"),
        "{}",
        o.stdout
    );
}

#[test]
fn install_writes_nothing_outside_the_hooks_directory() {
    let repo = fleet_repo();
    let before = repo.state();
    repo.guard(&["hook", "install"]).assert_code(0);
    assert_eq!(repo.state(), before);
    repo.guard(&["hook", "uninstall"]).assert_code(0);
    assert_eq!(repo.state(), before);
}

#[test]
fn core_hooks_path_is_honoured() {
    let repo = installed_fleet();
    // A repository-local relative core.hooksPath is relative to the work tree.
    repo.git(&["config", "core.hooksPath", ".githooks"]);
    let o = repo.guard(&["hook", "install"]);
    o.assert_code(0);
    assert!(
        repo.path().join(".githooks/pre-commit").is_file(),
        "{}",
        o.stdout
    );
    assert!(repo.path().join(".githooks/pre-merge-commit").is_file());
    repo.write("machines/monitor/wg.nix", leak(WG_KEY));
    repo.git(&["add", "machines/monitor/wg.nix"]);
    // The old .git/hooks shim is not what runs now: remove it to prove it.
    std::fs::remove_file(repo.path().join(".git/hooks/pre-commit")).unwrap();
    assert_blocked(&git_try(&repo, &["commit", "-q", "-m", "leak"]));
}

#[test]
fn a_global_hooks_path_needs_force() {
    let repo = fleet_repo();
    let global_dir = tempfile::tempdir().unwrap();
    let hooks = global_dir.path().join("hooks");
    let gitconfig = global_dir.path().join("gitconfig");
    std::fs::write(
        &gitconfig,
        format!("[core]\n\thooksPath = {}\n", hooks.display()),
    )
    .unwrap();
    let run = |args: &[&str]| {
        let mut c = guard_cmd(repo.path());
        c.env("GIT_CONFIG_GLOBAL", &gitconfig)
            .arg("-C")
            .arg(repo.path())
            .args(args);
        crate::support::GuardOutput::from(c.output().unwrap())
    };
    let o = run(&["hook", "install"]);
    o.assert_code(2);
    assert!(o.stderr.contains("global git config"), "{}", o.stderr);
    assert!(o.stderr.contains("--force"), "{}", o.stderr);
    assert!(!hooks.exists(), "nothing written without --force");
    let o = run(&["hook", "install", "--force"]);
    o.assert_code(0);
    assert!(hooks.join("pre-commit").is_file());
    assert!(o.stdout.contains("global config"), "{}", o.stdout);
}

#[test]
fn linked_worktrees_share_the_hooks() {
    let repo = fleet_repo();
    let wt_parent = tempfile::tempdir().unwrap();
    let wt = wt_parent.path().join("wt");
    repo.git(&["worktree", "add", "-q", "-b", "wt", wt.to_str().unwrap()]);
    // Installed from the worktree, into the common dir's hooks.
    crate::support::guard_in(&wt, &["hook", "install"]).assert_code(0);
    assert!(repo.path().join(".git/hooks/pre-commit").is_file());
    std::fs::write(wt.join("machines/monitor/wg.nix"), leak(WG_KEY)).unwrap();
    let add = git_cmd(&wt)
        .args(["add", "machines/monitor/wg.nix"])
        .output()
        .unwrap();
    assert!(add.status.success());
    let o = git_cmd(&wt)
        .args(["commit", "-q", "-m", "leak in worktree"])
        .output()
        .unwrap();
    assert_blocked(&o);
}

#[test]
fn a_missing_guard_binary_blocks_with_install_instructions() {
    let repo = fleet_repo();
    let hook = repo.path().join(".git/hooks/pre-commit");
    let shim =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("hooks/pre-commit"))
            .unwrap()
            .replace("GUARD_BIN=''", "GUARD_BIN='/nonexistent/guard'");
    std::fs::write(&hook, shim).unwrap();
    std::fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    repo.write("README.md", "fleet\n");
    repo.git(&["add", "-A"]);
    let head = repo.rev("HEAD");
    let o = git_cmd(repo.path())
        .args(["commit", "-q", "-m", "x"])
        .env("PATH", "/usr/bin:/bin")
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains("binary is not installed"), "{err}");
    assert!(err.contains("cargo install"), "{err}");
    assert!(!err.contains("--no-verify"), "{err}");
    assert_eq!(repo.rev("HEAD"), head);
}

#[test]
fn pre_commit_reads_a_relative_index_file_and_changes_nothing() {
    let repo = fleet_repo();
    // An alternative index (as `git commit <paths>` makes), named relative to
    // the work tree root where git runs hooks, with guard told `-C machines`.
    std::fs::copy(
        repo.path().join(".git/index"),
        repo.path().join(".git/alt-index"),
    )
    .unwrap();
    repo.write("machines/monitor/wg.nix", leak(WG_KEY));
    let add = git_cmd(repo.path())
        .args(["add", "machines/monitor/wg.nix"])
        .env("GIT_INDEX_FILE", ".git/alt-index")
        .output()
        .unwrap();
    assert!(add.status.success());
    let before = repo.state();
    let run = |index: &str| {
        let mut c = guard_cmd(repo.path());
        c.env("GIT_INDEX_FILE", index)
            .arg("-C")
            .arg(repo.path().join("machines"))
            .arg("pre-commit");
        crate::support::GuardOutput::from(c.output().unwrap())
    };
    let o = run(".git/alt-index");
    o.assert_code(1);
    assert!(
        o.stderr.contains("machines/monitor/wg.nix:3:"),
        "{}",
        o.stderr
    );
    assert_eq!(repo.state(), before, "pre-commit modifies nothing");
    // The real index does not have the file: clean.
    let o = run(".git/index");
    o.assert_code(0);
    // A missing index file is an error, not "everything was deleted".
    let o = run(".git/no-such-index");
    o.assert_code(2);
    assert!(o.stderr.contains("GIT_INDEX_FILE"), "{}", o.stderr);
}

#[test]
fn pre_commit_framework_range_is_judged() {
    let repo = fleet_repo();
    let base = repo.rev("HEAD");
    repo.write("machines/monitor/wg.nix", leak(WG_KEY));
    repo.git(&["add", "-A"]);
    repo.git(&[
        "-c",
        "core.hooksPath=/dev/null",
        "commit",
        "-q",
        "-m",
        "leak",
    ]);
    let head = repo.rev("HEAD");
    // Nothing staged, but pre-commit's pre-push stage passes the range.
    let mut c = guard_cmd(repo.path());
    c.env("PRE_COMMIT_FROM_REF", &base)
        .env("PRE_COMMIT_TO_REF", &head)
        .arg("pre-commit");
    let o = crate::support::GuardOutput::from(c.output().unwrap());
    o.assert_code(1);
    assert!(
        o.stderr
            .contains(&format!("{}..{}", &base[..10], &head[..10])),
        "{}",
        o.stderr
    );
    repo.guard(&["pre-commit"]).assert_code(0);
}

#[test]
fn a_configured_nix_level_runs_inside_the_hook() {
    crate::support::nix_cmd(); // fails loudly when nix is missing
    let repo = fleet_repo();
    repo.write("guard.toml", "[build]\npre_commit_level = \"eval\"\n");
    repo.commit_all("hook evaluates");
    repo.guard(&["hook", "install"]).assert_code(0);
    let head = repo.rev("HEAD");
    let refs = repo.state().refs;
    // Break monitor in the index only: git's GIT_INDEX_FILE must not leak
    // into nix (which runs git itself), and nix must see the staged content.
    let entry = "machines/monitor/default.nix";
    let text = std::fs::read_to_string(repo.path().join(entry)).unwrap();
    repo.write(
        entry,
        text.replacen(
            "{\n  imports",
            "{\n  boot.broken = throw \"monitor is broken on purpose\";\n  imports",
            1,
        ),
    );
    repo.git(&["add", entry]);
    repo.write(entry, &text);
    let o = git_cmd(repo.path())
        .args(["commit", "-q", "-m", "break monitor"])
        .env("NIX_CONFIG", crate::support::NIX_CONFIG)
        .output()
        .unwrap();
    let err = stderr(&o);
    assert!(!o.status.success(), "{err}");
    assert!(err.contains("monitor  failed at eval"), "{err}");
    assert!(
        err.contains("commit blocked by 1 host failing at the nix level"),
        "{err}"
    );
    assert_eq!(repo.rev("HEAD"), head);
    assert_eq!(repo.state().refs, refs, "the temporary ref is gone");

    // The on-disk (fixed) version, staged: evaluates and passes.
    repo.git(&["add", entry]);
    append_comment(&repo, "services/prometheus.nix");
    let o = git_cmd(repo.path())
        .args(["commit", "-q", "-m", "tune prometheus"])
        .env("NIX_CONFIG", crate::support::NIX_CONFIG)
        .output()
        .unwrap();
    assert_passed(&o);
    assert!(
        stderr(&o).contains("eval: 6 ok, 0 failed"),
        "{}",
        stderr(&o)
    );
}

fn append_comment(repo: &TempRepo, rel: &str) {
    let mut t = std::fs::read_to_string(repo.path().join(rel)).unwrap();
    t.push_str("# tuned\n");
    repo.write(rel, t);
    repo.git(&["add", rel]);
}
