#!/usr/bin/env python3
"""Benchmark of the pre-commit hook (issue 8). Run through scripts/bench-hook.

The same one-file commit on a copy of the example fleet (an edit of
services/prometheus.nix, staged), judged by:

  guard       .git/hooks/pre-commit installed by `guard hook install`
              (POSIX sh shim -> `guard pre-commit`, nix level none)
  pre-commit  the pre-commit framework's hook running one secret scanner,
              detect-secrets, as a local hook (its files from the index)
  pre-commit + guard
              the pre-commit framework running guard (id guard-system)

Two figures each: the hook alone (the script git runs, started the way git
starts it: cwd = work tree root, GIT_INDEX_FILE=.git/index) and the whole
`git commit` (then `git reset --soft HEAD~1`, so every run commits the same
change). `git commit --no-verify` is the floor.
"""
import os, shutil, statistics, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GUARD = os.path.join(ROOT, "target/release/guard")
VENV = os.environ["BENCH_VENV"]
RUNS = int(os.environ.get("RUNS", "21"))
ENV = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "PRE_COMMIT"))}
ENV.update(
    GIT_CONFIG_NOSYSTEM="1",
    GIT_CONFIG_GLOBAL="/dev/null",
    NO_COLOR="1",
    PATH=f"{os.path.join(VENV, 'bin')}:{os.path.dirname(GUARD)}:{ENV.get('PATH', '')}",
    PRE_COMMIT_HOME=os.path.join(os.environ.get("BENCH_DIR", "/tmp"), "pre-commit-home"),
    GIT_AUTHOR_NAME="b", GIT_AUTHOR_EMAIL="b@b", GIT_COMMITTER_NAME="b", GIT_COMMITTER_EMAIL="b@b",
)


def run(cmd, cwd, ok=(0,), env=None):
    r = subprocess.run(cmd, cwd=cwd, env=env or ENV, capture_output=True)
    if r.returncode not in ok:
        sys.exit(f"{cmd} failed ({r.returncode}):\n{r.stdout.decode()[-2000:]}\n{r.stderr.decode()[-2000:]}")
    return r


def median_ms(cmd, cwd, env=None, after=None):
    times = []
    for i in range(RUNS + 2):
        t = time.perf_counter()
        run(cmd, cwd, env=env)
        dt = time.perf_counter() - t
        if after:
            after()
        if i >= 2:  # two warm-up runs (page cache, pre-commit's env cache)
            times.append(dt)
    return statistics.median(times) * 1000, min(times) * 1000, max(times) * 1000


def fleet(tmp, name):
    repo = os.path.join(tmp, name)
    shutil.copytree(os.path.join(ROOT, "examples/fleet"), repo)
    run(["git", "init", "-q", "-b", "main"], repo)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "init"], repo)
    return repo


def stage_one_file(repo):
    with open(os.path.join(repo, "services/prometheus.nix"), "a") as f:
        f.write("# bench: one more scrape target\n")
    run(["git", "add", "services/prometheus.nix"], repo)


PRE_COMMIT_CONFIG = """repos:
- repo: local
  hooks:
  - id: detect-secrets
    name: detect-secrets
    entry: detect-secrets-hook
    language: system
"""

GUARD_VIA_FRAMEWORK = """repos:
- repo: {manifest}
  rev: {rev}
  hooks:
  - id: guard-system
"""


def setup_framework(repo, config):
    with open(os.path.join(repo, ".pre-commit-config.yaml"), "w") as f:
        f.write(config)
    run(["git", "add", ".pre-commit-config.yaml"], repo)
    run(["git", "commit", "-qm", "pre-commit config", "--no-verify"], repo)
    run([os.path.join(VENV, "bin", "pre-commit"), "install", "-t", "pre-commit"], repo)


def manifest_repo(tmp):
    """guard's .pre-commit-hooks.yaml in a repository of its own."""
    repo = os.path.join(tmp, "guard-manifest")
    os.makedirs(repo)
    shutil.copy(os.path.join(ROOT, ".pre-commit-hooks.yaml"), repo)
    run(["git", "init", "-q", "-b", "main"], repo)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "manifest"], repo)
    return repo, run(["git", "rev-parse", "HEAD"], repo).stdout.decode().strip()


def measure(label, repo):
    stage_one_file(repo)
    hook = os.path.join(repo, ".git/hooks/pre-commit")
    env = dict(ENV, GIT_INDEX_FILE=".git/index")
    alone = median_ms([hook], repo, env=env)
    undo = lambda: run(["git", "reset", "-q", "--soft", "HEAD~1"], repo)
    commit = median_ms(["git", "commit", "-q", "-m", "bench"], repo, after=undo)
    return label, alone, commit


def main():
    version = run([GUARD, "--version"], ROOT).stdout.decode().strip()
    pc = run([os.path.join(VENV, "bin", "pre-commit"), "--version"], ROOT).stdout.decode().strip()
    ds = run([os.path.join(VENV, "bin", "detect-secrets"), "--version"], ROOT).stdout.decode().strip()
    git_v = run(["git", "--version"], ROOT).stdout.decode().strip()
    print(f"{version}, {pc}, detect-secrets {ds}, {git_v}, {os.cpu_count()} cpus, median of {RUNS} runs (min-max)")
    print("one-file commit on the example fleet (services/prometheus.nix staged)\n")
    rows = []
    with tempfile.TemporaryDirectory(prefix="guard-bench-hook-") as tmp:
        g = fleet(tmp, "guard")
        run([GUARD, "-C", g, "hook", "install"], g)
        rows.append(measure("guard hook (shim -> guard pre-commit)", g))

        ds_repo = fleet(tmp, "detect-secrets")
        setup_framework(ds_repo, PRE_COMMIT_CONFIG)
        rows.append(measure("pre-commit framework + detect-secrets", ds_repo))

        manifest, rev = manifest_repo(tmp)
        pg = fleet(tmp, "pre-commit-guard")
        setup_framework(pg, GUARD_VIA_FRAMEWORK.format(manifest=manifest, rev=rev))
        rows.append(measure("pre-commit framework + guard-system", pg))

        floor = fleet(tmp, "floor")
        stage_one_file(floor)
        undo = lambda: run(["git", "reset", "-q", "--soft", "HEAD~1"], floor)
        nv = median_ms(["git", "commit", "-q", "--no-verify", "-m", "bench"], floor, after=undo)

    print(f"{'':40} {'hook alone':>22}   {'git commit':>22}")
    for label, alone, commit in rows:
        print(f"{label:40} {alone[0]:7.1f} ms ({alone[1]:.0f}-{alone[2]:.0f})   {commit[0]:7.1f} ms ({commit[1]:.0f}-{commit[2]:.0f})")
    print(f"{'git commit --no-verify (no hook)':40} {'':>22}   {nv[0]:7.1f} ms ({nv[1]:.0f}-{nv[2]:.0f})")


if __name__ == "__main__":
    main()
