#!/usr/bin/env python3
"""Precision and recall of `guard affected` on the real fleets (issue 13).
Run through scripts/bench-precision.

For the last N first-parent commits of each repository in
../shared/fleets/mirrors, runs `guard affected --commit C --format json` and
compares the hosts it names as *changed* with:

* module-graph truth where it exists (FLEET_GRAPHS=<dir> holding
  <repo>/<commit>.json from ../shared/fleets/truth/run-repo.sh, for C and its
  parent): recall = truth hosts guard names / truth hosts; the extra hosts
  guard names are listed for reading (the oracle cannot see readFile
  targets, package sources, plain imports of helpers);
* structural expectations on every repository: a commit that only touches
  files under one host's own directory names that host alone; a commit that
  touches only documentation / CI files names no host.

Prints one line per repository and, with -v, every commit that misses an
expectation.
"""
import json, os, subprocess, sys, tarfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GUARD = os.environ.get("GUARD", os.path.join(ROOT, "target/release/guard"))
MIRRORS = os.path.join(ROOT, "..", "shared", "fleets", "mirrors")
WORK = os.environ.get("PRECISION_WORK", os.path.join(ROOT, "target", "guard-precision"))
GRAPHS = os.environ.get("FLEET_GRAPHS")
N = int(os.environ.get("N", "30"))
VERBOSE = "-v" in sys.argv
ONLY = [a for a in sys.argv[1:] if not a.startswith("-")]
ENV = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
ENV.update(GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL="/dev/null", NO_COLOR="1")
FRAMEWORKS = {"hercules-ci+flake-parts", "nix-community+haumea", "srid+nixos-unified"}
DOC_SUFFIXES = (".md", ".org", ".txt", ".rst", ".png", ".jpg", ".svg", ".gif")
DOC_PREFIXES = (".github/", "docs/", ".gitlab-ci", ".forgejo/", ".gitea/")
DOC_NAMES = {"LICENSE", "LICENSE.md", ".gitignore", ".envrc", ".editorconfig", "renovate.json", ".mergify.yml", "Makefile", "justfile", ".pre-commit-config.yaml", "treefmt.toml", ".sops.yaml"}


# Reads the module-graph oracle cannot see (a file imported as an option's
# value, a home-manager module inside `home-manager.users.<u>`, overlays),
# traced by hand: (path prefix, hosts or None for every host, the evidence).
# An extra host guard names for a commit is counted right when one of the
# commit's changed paths matches an entry that covers the host.
HAND_CHECKED = {
    "mitchellh+nixos-config": [
        ("users/mitchellh/", None, "lib/mksystem.nix: home-manager.users.${user} = import ../users/${user}/home-manager.nix (a plain import; every host has user mitchellh)"),
    ],
    "TUM-DSE+doctor-cluster-config": [
        ("modules/secrets.yml", None, "modules/fluent-bit.nix (in commonModules): sops.secrets.*.sopsFile = ./secrets.yml, a value the module graph does not list"),
        ("modules/users/xrdp-passwords.yml", None, "modules/users/extra-user-options.nix (in commonModules): sopsFile = ./xrdp-passwords.yml"),
    ],
    "srid+nixos-config": [
        ("modules/home/", {"naiveintent", "pureintent"}, "configurations/nixos/{naiveintent,pureintent}: home-manager modules (\"${homeMod}/cli/odu.nix\", homeMod = self + /modules/home) inside home-manager.users.srid"),
    ],
    "dustinlyons+nixos-config": [
        ("overlays/", None, "modules/shared/default.nix: nixpkgs.overlays imports every file of ../../overlays (readDir + import)"),
        ("modules/nixos/packages.nix", {"aarch64-linux", "x86_64-linux"}, "modules/nixos/home-manager.nix: packages = pkgs.callPackage ./packages.nix"),
        ("modules/shared/packages.nix", None, "modules/nixos/packages.nix and garfield-packages.nix: import ../shared/packages.nix"),
    ],
    "EmergentMind+nix-config": [
        ("home/ta/", None, "hosts/common/users/ta: home-manager.users.ta = import (relativeToRoot \"home/${username}/${hostName}.nix\"), which imports home/ta/common/core (scanPaths)"),
        ("modules/home-manager/", None, "home/ta/common/core/default.nix: imports attrValues outputs.homeManagerModules"),
        ("modules/nixos/", None, "hosts/common/core/default.nix: imports builtins.attrValues outputs.nixosModules, where nixosModules = import ./modules/nixos (each module an `import` value, not a path: the graph does not list it)"),
    ],
}


def hand_checked(name, host, changed_paths):
    for prefix, hosts, _ in HAND_CHECKED.get(name, []):
        if (hosts is None or host in hosts) and any(p.startswith(prefix) for p in changed_paths):
            return True
    return False


def git(repo, *args):
    return subprocess.run(["git", "-C", repo, *args], env=ENV, capture_output=True, text=True, check=True).stdout


def checkout(name):
    dest = os.path.join(WORK, name)
    if not os.path.isdir(os.path.join(dest, ".git")):
        bare = os.path.join(WORK, "bare")
        os.makedirs(bare, exist_ok=True)
        if not os.path.isdir(os.path.join(bare, name)):
            with tarfile.open(os.path.join(MIRRORS, name + ".tar")) as t:
                t.extractall(bare)
        subprocess.run(["git", "clone", "-q", os.path.join(bare, name, "repo"), dest], env=ENV, check=True)
    return dest


def guard(repo, commit):
    r = subprocess.run([GUARD, "affected", "--commit", commit, "--format", "json"], cwd=repo, env=ENV, capture_output=True, text=True)
    if r.returncode not in (0, 1):
        return None, r.stderr.strip().splitlines()[-1:] if r.stderr else ["exit %d" % r.returncode]
    d = json.loads(r.stdout)
    changed = {h["name"] for h in d["hosts"]}
    restamped = {h["name"] for h in d.get("restamped", [])}
    return (changed, restamped, d), None


def own_dirs(d):
    return {h: o for h, o in (d.get("host_dirs") or {}).items() if o}


def truth(name, repo, commit, parent, changed_paths):
    """(hosts the module graphs say the commit affects, hosts judged): a
    host is judged when its graph evaluated at both commits."""
    if not GRAPHS:
        return None
    def load(c):
        p = os.path.join(GRAPHS, name, c + ".json")
        if not os.path.exists(p):
            return None
        d = json.load(open(p))
        if not d.get("hosts"):
            return None
        files = set(git(repo, "ls-tree", "-r", "--name-only", c).split("\n"))
        out = {}
        for h in d["hosts"]:
            r = d["files"][h]["result"]
            out[h] = {f + "/default.nix" if f + "/default.nix" in files else f for f in r["repo_files"]} if "repo_files" in r else None
        return out
    gc, gp = load(commit), load(parent)
    if gc is None or gp is None:
        return None
    t, judged = set(), set()
    for h in set(gc) | set(gp):
        if (h in gc) != (h in gp):
            t.add(h); judged.add(h)
            continue
        if gc[h] is None or gp[h] is None:
            continue
        if set(changed_paths) & (gc[h] | gp[h]) or "flake.nix" in changed_paths:
            t.add(h)
        elif "flake.lock" in changed_paths:
            # The graphs use stub inputs: which host uses a bumped input is
            # for reading (the oracle's own rule, every host, is too coarse).
            continue
        judged.add(h)
    return t, judged


def is_doc(p):
    base = p.rsplit("/", 1)[-1]
    return p.endswith(DOC_SUFFIXES) or p.startswith(DOC_PREFIXES) or base in DOC_NAMES


def main():
    names = sorted(f[:-4] for f in os.listdir(MIRRORS) if f.endswith(".tar"))
    names = [n for n in names if (not ONLY or any(o in n for o in ONLY)) and n not in FRAMEWORKS]
    print(f"{'repository':32} {'commits':>7} {'mean':>6} {'all':>5} {'recall':>7} {'prec':>6} {'1-host':>7} {'docs':>6} {'restamp':>7}")
    for name in names:
        repo = checkout(name)
        commits = git(repo, "rev-list", "--first-parent", "-n", str(N + 1), "HEAD").split()
        n = mean = all_hosts = 0
        t_hosts = t_found = g_extra = g_total = 0
        one_ok = one_n = doc_ok = doc_n = restamped_n = 0
        errors = []
        for c, p in zip(commits, commits[1:]):
            changed_paths = [x for x in git(repo, "diff", "--no-renames", "--name-only", p, c).split("\n") if x]
            res, err = guard(repo, c)
            if res is None:
                errors.append((c[:8], err))
                continue
            changed, restamped, d = res
            changed = changed | set(d.get("removed_hosts", []))
            hosts = set(d["all_hosts"])
            n += 1
            mean += len(changed)
            restamped_n += len(restamped)
            all_hosts += len(hosts) > 1 and changed >= hosts
            tj = truth(name, repo, c, p, changed_paths)
            if tj is not None:
                t, judged = tj
                mine = changed & judged
                extra = {h for h in mine - t if not hand_checked(name, h, changed_paths)}
                t_hosts += len(t)
                t_found += len(t & changed)
                g_total += len(mine)
                g_extra += len(extra)
                if VERBOSE and (t - changed):
                    print(f"  MISS {c[:8]} truth-only {sorted(t - changed)} paths {changed_paths[:5]}")
                if VERBOSE and extra:
                    print(f"  EXTRA {c[:8]} guard-only {sorted(extra)[:6]} paths {changed_paths[:5]}")
            dirs = own_dirs(d)
            owners = set()
            for path in changed_paths:
                o = [h for h, dd in dirs.items() if path.startswith(dd + "/")]
                owners.add(o[0] if len(o) == 1 else None)
            if changed_paths and len(owners) == 1 and None not in owners:
                one_n += 1
                ok = changed == owners
                one_ok += ok
                if VERBOSE and not ok:
                    print(f"  1-HOST {c[:8]} expected {sorted(owners)} got {sorted(changed)[:6]}{'...' if len(changed) > 6 else ''} paths {changed_paths[:4]}")
            if changed_paths and all(is_doc(x) for x in changed_paths):
                doc_n += 1
                doc_ok += not changed
                if VERBOSE and changed:
                    print(f"  DOCS {c[:8]} got {sorted(changed)[:6]} paths {changed_paths[:4]}")
        recall = f"{100 * t_found / t_hosts:.0f}%" if t_hosts else "-"
        prec = f"{100 * (g_total - g_extra) / g_total:.0f}%" if g_total else "-"
        print(f"{name:32} {n:7} {mean / max(n, 1):6.1f} {all_hosts:5} {recall:>7} {prec:>6} {one_ok:>3}/{one_n:<3} {doc_ok:>2}/{doc_n:<3} {restamped_n:7}")
        for c, e in errors[:3]:
            print(f"  error at {c}: {e}")


main()
