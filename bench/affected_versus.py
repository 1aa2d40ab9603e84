#!/usr/bin/env python3
"""`guard affected --commit HEAD` latency and peak memory, one guard binary
against another (issue 13's bar: unchanged within 20 %), on the real fleets
(work trees made by bench/precision.py) and the shipped example fleet.

Usage: python3 bench/affected_versus.py OLD_GUARD NEW_GUARD
Each binary gets its own clone of each repository (the parse cache under
the git dir is per version: sharing one would make both cold), runs once to
warm up, then RUNS times, the two interleaved; median wall time, max peak
RSS.
"""
import os, shutil, statistics, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORK = os.environ.get("PRECISION_WORK", os.path.join(ROOT, "target", "guard-precision"))
RUNS = int(os.environ.get("RUNS", "9"))
ENV = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
ENV.update(GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL="/dev/null", NO_COLOR="1")


def once(guard, repo):
    devnull = os.open(os.devnull, os.O_WRONLY)
    t = time.perf_counter()
    pid = os.posix_spawn(guard, [guard, "-C", repo, "affected", "--commit", "HEAD", "--format", "json"], ENV,
                         file_actions=[(os.POSIX_SPAWN_DUP2, devnull, 1), (os.POSIX_SPAWN_DUP2, devnull, 2)])
    _, status, usage = os.wait4(pid, 0)
    os.close(devnull)
    return time.perf_counter() - t, usage.ru_maxrss / 1024, os.waitstatus_to_exitcode(status)


def main():
    old, new = sys.argv[1], sys.argv[2]
    repos = [("example fleet", os.path.join(ROOT, "examples", "fleet"))]
    if os.path.isdir(WORK):
        repos += [(n, os.path.join(WORK, n)) for n in sorted(os.listdir(WORK)) if n != "bare" and (len(sys.argv) < 4 or sys.argv[3] in n)]
    print(f"{'repository':32} {'old ms':>8} {'new ms':>8} {'ratio':>6} {'old MB':>7} {'new MB':>7}")
    scratch = tempfile.mkdtemp(prefix="guard-versus-")
    for name, repo in repos:
        times = {old: [], new: []}
        rss = {old: 0.0, new: 0.0}
        clones = {}
        for i, g in enumerate((old, new)):
            clones[g] = os.path.join(scratch, f"{i}-{name}")
            if name == "example fleet":
                # A repository of its own (in guard's, it would share the
                # cache and see guard's own flake).
                shutil.copytree(repo, clones[g])
                for cmd in (["init", "-q"], ["add", "-A"], ["-c", "user.name=b", "-c", "user.email=b@b",
                            "commit", "-qm", "fleet"]):
                    subprocess.run(["git", "-C", clones[g], *cmd], env=ENV, check=True)
                continue
            subprocess.run(["git", "clone", "-q", repo, clones[g]], env=ENV, check=True)
        for g in (old, new):
            once(g, clones[g])
        for _ in range(RUNS):
            for g in (old, new):
                t, r, code = once(g, clones[g])
                if code not in (0, 1):
                    break
                times[g].append(t)
                rss[g] = max(rss[g], r)
        if not times[old] or not times[new]:
            print(f"{name:32} (a binary failed)")
            continue
        mo, mn = statistics.median(times[old]) * 1000, statistics.median(times[new]) * 1000
        print(f"{name:32} {mo:8.1f} {mn:8.1f} {mn / mo:6.2f} {rss[old]:7.1f} {rss[new]:7.1f}")
    shutil.rmtree(scratch, ignore_errors=True)


main()
