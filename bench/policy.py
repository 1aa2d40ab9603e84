#!/usr/bin/env python3
"""Cost of the fleet policy (issue 19). Run through scripts/bench-policy.

For the example fleet, every real fleet in ../shared/fleets and generated
fleets, the median wall time of `guard check --commit HEAD --level none`
without and with a `[policy]` (one input rule for every host, lock hygiene
on), and of `guard plan --commit HEAD`. The configurations are passed with
--config: the repositories are not changed.
"""
import os, shutil, statistics, subprocess, sys, tarfile, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GUARD = os.path.join(ROOT, "target/release/guard")
FLEETGEN = os.path.join(ROOT, "target/release/fleetgen")
FLEETS = os.environ.get("GUARD_FLEETS_DIR", os.path.join(ROOT, "..", "shared", "fleets"))
RUNS = int(os.environ.get("RUNS", "7"))
ENV = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
ENV.update(GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL="/dev/null", NO_COLOR="1")
POLICY = '[build]\ncritical = []\n\n[[policy.rules]]\nhosts = ["*"]\nforbid_inputs = ["nixpkgs_unstable", "nixpkgs-unstable", "nixpkgs-master"]\n'


def once(repo, args):
    t = time.perf_counter()
    r = subprocess.run([GUARD, "-C", repo, *args], env=ENV, capture_output=True)
    if r.returncode not in (0, 1):
        sys.exit(f"guard {args} failed in {repo}: {r.stderr.decode()[-800:]}")
    return (time.perf_counter() - t) * 1000


def measure(name, repo, tmp):
    empty = os.path.join(tmp, "empty.toml")
    policy = os.path.join(tmp, "policy.toml")
    with open(empty, "w") as f:
        f.write("")
    with open(policy, "w") as f:
        f.write(POLICY)
    check = ["check", "--commit", "HEAD", "--level", "none"]
    cases = [["--config", empty, *check], ["--config", policy, *check],
             ["--config", empty, "plan", "--commit", "HEAD"]]
    times = [[], [], []]
    # Interleaved, after one warm-up round (page cache, parse cache): a
    # busy machine slows every case alike.
    for i in range(RUNS + 1):
        for c, args in enumerate(cases):
            t = once(repo, args)
            if i > 0:
                times[c].append(t)
    without, with_policy, plan = (statistics.median(t) for t in times)
    print(f"| {name} | {without:.1f} | {with_policy:.1f} | {with_policy - without:+.1f} | {plan:.1f} |")


def git(cwd, *args):
    subprocess.run(["git", *args], cwd=cwd, env=ENV, check=True, capture_output=True)


def main():
    for exe in (GUARD, FLEETGEN):
        if not os.path.exists(exe):
            sys.exit(f"missing {exe}: run scripts/bench-policy")
    print(f"median of {RUNS} warm runs (interleaved), ms; policy = one input rule for every host + lock hygiene")
    print("| repository | check | check + [policy] | policy cost | plan |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="guard-bench-") as tmp:
        example = os.path.join(tmp, "example")
        shutil.copytree(os.path.join(ROOT, "examples", "fleet"), example)
        git(example, "init", "-q", "-b", "main")
        git(example, "add", "-A")
        git(example, "-c", "user.name=b", "-c", "user.email=b@x", "commit", "-qm", "x")
        with open(os.path.join(example, "services/prometheus.nix"), "a") as f:
            f.write("\n# bench\n")
        git(example, "-c", "user.name=b", "-c", "user.email=b@x", "commit", "-qam", "edit")
        measure("example fleet", example, tmp)
        mirrors = os.path.join(FLEETS, "mirrors")
        for tar in sorted(os.listdir(mirrors)):
            name = tar[:-4]
            if not tar.endswith(".tar") or name.startswith(("hercules-ci+", "srid+nixos-unified", "nix-community+")):
                continue
            with tarfile.open(os.path.join(mirrors, tar)) as t:
                t.extractall(tmp, filter="fully_trusted")
            work = os.path.join(tmp, name + "-work")
            subprocess.run(["git", "clone", "-q", os.path.join(tmp, name, "repo"), work], check=True)
            measure(name, work, tmp)
        for hosts in (100, 1000):
            repo = os.path.join(tmp, f"gen-{hosts}")
            subprocess.run([FLEETGEN, "--hosts", str(hosts), "--modules", str(hosts), "--files",
                            str(hosts * 10), "--commits", "5", "--seed", "7", repo],
                           env=ENV, check=True, capture_output=True)
            measure(f"generated, {hosts} hosts", repo, tmp)


if __name__ == "__main__":
    main()
