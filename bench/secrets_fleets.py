#!/usr/bin/env python3
"""Benchmark of `guard secrets --all` on the real fleets (issue 15). Run
through scripts/bench-secrets-fleets.

For each fleet of ../shared/fleets that keeps encrypted secrets (agenix,
agenix-rekey, sops-nix, clan vars), extracted from its mirror tar and
cloned at the mirror's HEAD: the median wall time and peak RSS of
`guard secrets --all` over RUNS runs (one warm-up first), the median of
COLD runs with guard's caches under the git dir removed first (`cold`),
the number of secret files read, and the findings by severity and rule.
GUARD=<binary> measures another build (e.g. an older commit's).
"""
import collections, json, os, shutil, statistics, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GUARD = os.environ.get("GUARD", os.path.join(ROOT, "target/release/guard"))
FLEETS = os.environ.get("GUARD_FLEETS_DIR", os.path.join(ROOT, "../shared/fleets"))
ENV = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
ENV.update(GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL="/dev/null", NO_COLOR="1")
RUNS = int(os.environ.get("RUNS", "15"))
COLD = int(os.environ.get("COLD", "3"))
NAMES = [
    "oddlama+nix-config",
    "nmasur+dotfiles",
    "srid+nixos-config",
    "dustinlyons+nixos-config",
    "TUM-DSE+doctor-cluster-config",
    "wimpysworld+nix-config",
    "colemickens+nixcfg",
    "badele+nix-homelab",
    "clan-lol+clan-infra",
    "EmergentMind+nix-config",
]


def run(cmd, cwd=None):
    r = subprocess.run(cmd, cwd=cwd, env=ENV, capture_output=True)
    if r.returncode != 0:
        sys.exit(f"{cmd} failed ({r.returncode}): {r.stderr.decode()[-2000:]}")
    return r.stdout


def main():
    tmp = tempfile.mkdtemp(prefix="guard-bench-secrets-fleets-")
    head = run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"]).decode().strip()
    load = os.getloadavg()[0]
    which = head if GUARD == os.path.join(ROOT, "target/release/guard") else GUARD
    print(f"guard {which}, {os.cpu_count()} cpus, load {load:.1f}, median of {RUNS} runs (min-max), cold = median of {COLD} runs without .git/guard, CPU = user+sys median, peak RSS max")
    print(f"{'fleet':32} {'files':>6} {'wall':>10} {'range':>14} {'cold':>10} {'CPU':>8} {'RSS':>8}  errors/warnings/infos  rules")
    for name in NAMES:
        tar = os.path.join(FLEETS, "mirrors", f"{name}.tar")
        run(["tar", "-xf", tar, "-C", tmp])
        work = os.path.join(tmp, name + "-work")
        run(["git", "clone", "-q", os.path.join(tmp, name, "repo"), work])
        cmd = [GUARD, "secrets", "--all", "--format", "json"]
        out = subprocess.run(cmd, cwd=work, env=ENV, capture_output=True)
        if out.returncode not in (0, 1):
            sys.exit(f"{name}: guard exited {out.returncode}: {out.stderr.decode()[-2000:]}")
        d = json.loads(out.stdout)
        cold = []
        for _ in range(COLD):
            shutil.rmtree(os.path.join(work, ".git", "guard"), ignore_errors=True)
            t = time.perf_counter()
            subprocess.run(cmd, cwd=work, env=ENV, capture_output=True)
            cold.append(time.perf_counter() - t)
        times, cpu, rss = [], [], []
        for _ in range(RUNS):
            t = time.perf_counter()
            r = subprocess.run(["/usr/bin/time", "-f", "%U %S %M"] + cmd, cwd=work, env=ENV, capture_output=True)
            times.append(time.perf_counter() - t)
            user, sys_, kb = r.stderr.decode().strip().splitlines()[-1].split()
            cpu.append(float(user) + float(sys_))
            rss.append(int(kb) / 1024)
        sev = collections.Counter(f["severity"] for f in d["findings"])
        rules = collections.Counter(f["rule"] for f in d["findings"] if f["severity"] != "info")
        print(
            f"{name:32} {d['scanned']['files']:>6} {statistics.median(times) * 1000:>8.1f} ms"
            f" {min(times) * 1000:>6.1f}-{max(times) * 1000:<6.1f} {statistics.median(cold) * 1000:>7.1f} ms"
            f" {statistics.median(cpu) * 1000:>5.0f} ms {max(rss):>6.1f} MB"
            f"  {sev.get('error', 0)}/{sev.get('warning', 0)}/{sev.get('info', 0)}"
            f"  {', '.join(f'{k} {v}' for k, v in sorted(rules.items())) or '-'}"
        )


if __name__ == "__main__":
    main()
