#!/usr/bin/env python3
"""Benchmark of `guard affected` (issue 3). Run through scripts/bench-affected.

Prints, for the example fleet, guard's latency against nix evaluating the
drvPaths (the peer: what every "evaluate everything" CI does), and for
generated fleets of growing size guard's latency and peak memory.
"""
import json, os, shutil, statistics, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GUARD = os.path.join(ROOT, "target/release/guard")
FLEETGEN = os.path.join(ROOT, "target/release/fleetgen")
NIX_CONFIG = "experimental-features = nix-command flakes\nsubstituters =\nsandbox = false\nbuild-users-group =\nwarn-dirty = false\neval-cache = false\n"
ENV = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
ENV.update(NIX_CONFIG=NIX_CONFIG, GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL="/dev/null", NO_COLOR="1")
RUNS = int(os.environ.get("RUNS", "7"))


def run(cmd, cwd=None):
    r = subprocess.run(cmd, cwd=cwd, env=ENV, capture_output=True)
    if r.returncode not in (0, 1):
        sys.exit(f"{cmd} failed ({r.returncode}): {r.stderr.decode()[-2000:]}")
    return r.stdout


def measure(cmd, cwd=None, runs=RUNS):
    """Median wall seconds and max peak RSS (MB) over `runs` runs, after one
    warm-up run (page cache; guard's parse cache under the git dir). The
    child is spawned directly and reaped with wait4, so neither a wrapper
    process nor Python's pipe handling is timed."""
    times, rss = [], []
    devnull = os.open(os.devnull, os.O_WRONLY)
    for i in range(runs + 1):
        t = time.perf_counter()
        pid = os.posix_spawnp(cmd[0], cmd, ENV, file_actions=[
            (os.POSIX_SPAWN_DUP2, devnull, 1), (os.POSIX_SPAWN_DUP2, devnull, 2)],
            **({} if cwd is None else {}))
        _, status, usage = os.wait4(pid, 0)
        elapsed = time.perf_counter() - t
        code = os.waitstatus_to_exitcode(status)
        if code not in (0, 1):
            sys.exit(f"{cmd} exited {code}")
        if i > 0:
            times.append(elapsed)
            rss.append(usage.ru_maxrss / 1024)
    os.close(devnull)
    return statistics.median(times), max(rss)


def git(cwd, *args):
    return run(["git", *args], cwd=cwd).decode().strip()


def example_fleet(tmp):
    repo = os.path.join(tmp, "fleet")
    shutil.copytree(os.path.join(ROOT, "examples/fleet"), repo)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "-c", "user.name=b", "-c", "user.email=b@b", "commit", "-qm", "init")
    with open(os.path.join(repo, "services/prometheus.nix"), "a") as f:
        f.write("\n# bench\n")
    git(repo, "-c", "user.name=b", "-c", "user.email=b@b", "commit", "-qam", "edit prometheus")
    rev = git(repo, "rev-parse", "HEAD")
    url = f"git+file://{repo}?rev={rev}#nixosConfigurations"
    g, g_rss = measure([GUARD, "-C", repo, "affected", "--commit", "HEAD", "--format", "json"])
    all17, all_rss = measure(["nix", "eval", "--json", url, "--apply",
                              "cs: builtins.mapAttrs (_: c: c.config.system.build.toplevel.drvPath) cs"])
    one, one_rss = measure(["nix", "eval", "--raw", url + ".linda.config.system.build.toplevel.drvPath"])
    hosts = json.loads(run([GUARD, "-C", repo, "affected", "--commit", "HEAD", "--format", "json"]))["hosts"]
    print("## example fleet (17 hosts), one-module change (services/prometheus.nix)")
    print(f"guard affected --commit HEAD        {g*1000:8.1f} ms  {g_rss:6.1f} MB   -> {len(hosts)} hosts")
    print(f"nix eval drvPath of 1 host           {one*1000:8.1f} ms  {one_rss:6.1f} MB   ratio {one/g:5.1f}x")
    print(f"nix eval drvPaths of all 17 hosts    {all17*1000:8.1f} ms  {all_rss:6.1f} MB   ratio {all17/g:5.1f}x")
    print()


def generated(tmp, hosts, files):
    repo = os.path.join(tmp, f"gen-{hosts}")
    t = time.perf_counter()
    run([FLEETGEN, "--hosts", str(hosts), "--modules", str(hosts), "--files", str(files),
         "--commits", "5", "--seed", "7", repo])
    gen = time.perf_counter() - t
    c, c_rss = measure([GUARD, "-C", repo, "affected", "--commit", "HEAD", "--format", "json"])
    a, a_rss = measure([GUARD, "-C", repo, "affected", "--all", "--format", "json"])
    print(f"{hosts:6d} hosts {files:7d} files   --commit HEAD {c*1000:7.1f} ms {c_rss:6.1f} MB"
          f"   --all {a*1000:7.1f} ms {a_rss:6.1f} MB   (generated in {gen:.1f} s)")
    shutil.rmtree(repo)


def main():
    for exe in (GUARD, FLEETGEN):
        if not os.path.exists(exe):
            sys.exit(f"missing {exe}: run scripts/bench-affected")
    print(f"guard {run([GUARD, '--version']).decode().strip()}, {run(['nix', '--version']).decode().strip()},"
          f" {os.cpu_count()} cpus, median of {RUNS} runs, peak RSS = max over runs")
    print()
    with tempfile.TemporaryDirectory(prefix="guard-bench-") as tmp:
        example_fleet(tmp)
        print("## generated fleets (fleetgen seed 7, 5 random commits; --commit HEAD = the last one)")
        sizes = [(100, 2000), (1000, 20000), (5000, 100000)]
        if os.environ.get("QUICK"):
            sizes = sizes[:2]
        for hosts, files in sizes:
            generated(tmp, hosts, files)


if __name__ == "__main__":
    main()
