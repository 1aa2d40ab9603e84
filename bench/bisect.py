#!/usr/bin/env python3
"""Benchmark of `guard bisect` against `git bisect run` (issue 7).

Run through scripts/bench-bisect. For each history (a generated fleet plus
N commits of which only a few touch the target host; the target's build
breaks at one of them) it runs both tools at build level and prints the
number of nix builds and the wall time side by side. Each tool gets its own
copy of the history salted so that no drvPath is shared (the nix store would
otherwise hand the second tool the first one's builds for free).
"""
import json, math, os, shutil, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GUARD = os.path.join(ROOT, "target/release/guard")
FLEETGEN = os.path.join(ROOT, "target/release/fleetgen")
NIX_CONFIG = "experimental-features = nix-command flakes\nsubstituters =\nsandbox = false\nbuild-users-group =\nwarn-dirty = false\n"
ENV = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
ENV.update(NIX_CONFIG=NIX_CONFIG, GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL="/dev/null", NO_COLOR="1",
           GIT_AUTHOR_NAME="b", GIT_AUTHOR_EMAIL="b@b", GIT_COMMITTER_NAME="b", GIT_COMMITTER_EMAIL="b@b")


def run(cmd, cwd=None, check=True):
    r = subprocess.run(cmd, cwd=cwd, env=ENV, capture_output=True, text=True)
    if check and r.returncode != 0:
        sys.exit(f"{cmd} failed ({r.returncode}): {r.stderr[-2000:]}")
    return r


def git(cwd, *args):
    return run(["git", *args], cwd=cwd).stdout.strip()


def history(tmp, name, seed, length, touching, break_at, salt):
    repo = os.path.join(tmp, name)
    out = run([FLEETGEN, "--hosts", "16", "--modules", "30", "--files", "200", "--commits", "0",
               "--seed", str(seed), "--closure", repo]).stdout
    closure = {}
    for line in out.splitlines():
        if "\t" in line:
            h, f = line.split("\t")
            closure.setdefault(h, set()).add(f)
    target = min(closure, key=lambda h: len(closure[h]))
    inside = sorted(f for f in closure[target] if f.startswith("modules/") and f.endswith(".nix"))
    readers = set().union(*closure.values())
    fillers = sorted(os.path.relpath(os.path.join(d, f), repo) for d, _, fs in os.walk(os.path.join(repo, "docs")) for f in fs)
    outside = sorted(f for f in readers if f.startswith("modules/") and f.endswith(".nix") and f not in closure[target])

    def commit(msg):
        git(repo, "add", "-A")
        git(repo, "commit", "-qm", msg)
        return git(repo, "rev-parse", "HEAD")

    def append(rel, text):
        with open(os.path.join(repo, rel), "a") as f:
            f.write(text)

    append("lib/common.nix", f"\n# salt {salt}\n")
    good = commit("salt")
    every = length // touching
    t, culprit = 0, None
    for i in range(length):
        if i % every == every // 2 and t < touching:
            if t == break_at:
                with open(os.path.join(repo, inside[0]), "w") as f:
                    f.write("{ system.build.fail = true; }\n")
                culprit = commit("break the target's build")
            else:
                append(inside[i % len(inside)], f"\n# target edit {i}\n")
                commit(f"touch target {i}")
            t += 1
        elif i % 3 == 0 and outside:
            append(outside[i % len(outside)], f"\n# other edit {i}\n")
            commit(f"other host {i}")
        else:
            append(fillers[i % len(fillers)], f"\nedit {i}\n")
            commit(f"filler {i}")
    return repo, target, good, culprit


def guard_bisect(repo, target, good):
    t = time.perf_counter()
    r = run([GUARD, "-C", repo, "bisect", "--host", target, "--good", good, "--level", "build",
             "--format", "json"], check=False)
    wall = time.perf_counter() - t
    if r.returncode != 0:
        sys.exit(f"guard bisect failed: {r.stderr[-3000:]}")
    v = json.loads(r.stdout)
    return v["first_bad"], v["builds"], wall, v["candidates"]


def git_bisect(repo, target, good):
    clone = repo + "-gitbisect"
    run(["git", "clone", "-q", repo, clone])
    counter = os.path.join(os.path.dirname(repo), "count-" + os.path.basename(repo))
    script = os.path.join(os.path.dirname(repo), "test-" + os.path.basename(repo) + ".sh")
    with open(script, "w") as f:
        f.write("#!/bin/sh\n"
                f"echo x >> {counter}\n"
                f"nix build --no-link '.#nixosConfigurations.{target}.config.system.build.toplevel' >/dev/null 2>&1\n")
    os.chmod(script, 0o755)
    t = time.perf_counter()
    git(clone, "bisect", "start", "HEAD", good)
    out = run(["git", "bisect", "run", script], cwd=clone).stdout
    wall = time.perf_counter() - t
    first = git(clone, "rev-parse", "refs/bisect/bad")
    builds = sum(1 for _ in open(counter))
    return first, builds, wall


def main():
    for exe in (GUARD, FLEETGEN):
        if not os.path.exists(exe):
            sys.exit(f"missing {exe}: run scripts/bench-bisect")
    print(f"{run([GUARD, '--version']).stdout.strip()}, {run(['nix', '--version']).stdout.strip()}, {os.cpu_count()} cpus")
    print("level build; builds = nix builds run (guard: builds not deduplicated by drvPath; git bisect run: test runs)")
    print()
    print("guard cold: nothing known. guard after CI: --good's toplevel is in the store (a deployed")
    print("generation) and `guard build` has just reported --bad failing, as CI or the hook would;")
    print("git bisect run is likewise told good and bad without testing them.")
    print()
    print(f"{'history':>34} | {'cand.':>5} | {'guard cold':>10} {'time':>6} | {'guard after CI':>14} {'time':>6} | {'git bisect run':>14} {'time':>6} | {'ratio cold/after CI':>19}")
    cases = [(64, 6, 3), (64, 6, 0), (512, 8, 7), (512, 24, 12)]
    with tempfile.TemporaryDirectory(prefix="guard-bench-bisect-") as tmp:
        for n, (length, touching, break_at) in enumerate(cases):
            seed = 100 + n
            a, target, good_a, culprit_a = history(tmp, f"g{n}", seed, length, touching, break_at, f"guard-{n}-{time.time()}")
            d, _, good_d, culprit_d = history(tmp, f"d{n}", seed, length, touching, break_at, f"deployed-{n}-{time.time()}")
            b, _, good_b, culprit_b = history(tmp, f"b{n}", seed, length, touching, break_at, f"git-{n}-{time.time()}")
            first, gb, gt, cand = guard_bisect(a, target, good_a)
            assert first == culprit_a, (first, culprit_a)
            # What precedes a bisect in practice: --good is a deployed
            # generation (in the store) and guard/CI just reported --bad
            # failing (guard remembers the failed drvPath).
            run(["nix", "build", "--no-link",
                 f"git+file://{d}?rev={good_d}#nixosConfigurations.{target}.config.system.build.toplevel"])
            run([GUARD, "-C", d, "build", "--hosts", target, "--level", "build"], check=False)
            dfirst, db, dt, _ = guard_bisect(d, target, good_d)
            assert dfirst == culprit_d, (dfirst, culprit_d)
            bfirst, bb, bt = git_bisect(b, target, good_b)
            assert bfirst == culprit_b, (bfirst, culprit_b)
            bound = math.ceil(math.log2(cand)) + 2
            label = f"{length} commits, {touching} touch host ({100*touching/length:.0f}%)"
            print(f"{label:>34} | {cand:>5} | {gb:>10} {gt:5.1f}s | {db:>14} {dt:5.1f}s | {bb:>14} {bt:5.1f}s | {bb/gb:8.1f}x / {bb/db:4.1f}x   (bound {bound})")


if __name__ == "__main__":
    main()
