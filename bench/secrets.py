#!/usr/bin/env python3
"""Benchmark of `guard secrets` (issue 5). Run through scripts/bench-secrets.

Prints latency and peak memory of the age/secrix checks on the example fleet
and on generated secrix fleets (real ssh-keygen host keys, secrets encrypted
with Go `age` to exactly the hosts that use them): `--all` (every secret,
every host) and `--commit HEAD` for a one-module change, plus the decrypt
proof (`--identity`) of one host.
"""
import os, random, shutil, statistics, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GUARD = os.path.join(ROOT, "target/release/guard")
ENV = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
ENV.update(GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL="/dev/null", NO_COLOR="1")
RUNS = int(os.environ.get("RUNS", "7"))


def run(cmd, cwd=None, input=None):
    r = subprocess.run(cmd, cwd=cwd, env=ENV, capture_output=True, input=input)
    if r.returncode != 0:
        sys.exit(f"{cmd} failed ({r.returncode}): {r.stderr.decode()[-2000:]}")
    return r.stdout


def measure(cmd, runs=RUNS):
    """Median wall seconds and max peak RSS (MB) over `runs` runs; guard
    must exit 0 (the fleets are clean)."""
    times, rss = [], []
    for _ in range(runs):
        t = time.perf_counter()
        r = subprocess.run(["/usr/bin/time", "-f", "%M"] + cmd, env=ENV, capture_output=True)
        times.append(time.perf_counter() - t)
        if r.returncode != 0:
            sys.exit(f"{cmd} exited {r.returncode}:\n{r.stdout.decode()[-3000:]}\n{r.stderr.decode()[-2000:]}")
        rss.append(int(r.stderr.decode().strip().splitlines()[-1]) / 1024)
    return statistics.median(times), max(rss)


def git(cwd, *args):
    return run(["git", "-c", "user.name=b", "-c", "user.email=b@b", *args], cwd=cwd).decode().strip()


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb" if isinstance(text, bytes) else "w") as f:
        f.write(text)


def age_encrypt(recipients, plaintext, armor=False):
    cmd = ["age", "-e"] + (["-a"] if armor else [])
    for r in recipients:
        cmd += ["-r", r]
    return run(cmd, input=plaintext)


def generate(tmp, hosts, envs):
    """A secrix fleet: `hosts` hosts (machines/ read with readDir), each with
    its own WireGuard secret and two of `envs` environments, each of which
    uses one shared secret. Returns (repo, first host's private key path)."""
    repo = os.path.join(tmp, f"fleet-{hosts}")
    keys = os.path.join(tmp, f"keys-{hosts}")
    os.makedirs(keys)
    rng = random.Random(5)
    write(f"{repo}/flake.nix", open(f"{ROOT}/examples/fleet/flake.nix").read())
    os.makedirs(f"{repo}/machines")
    shutil.copy(f"{ROOT}/examples/fleet/machines/default.nix", f"{repo}/machines/default.nix")
    shutil.copytree(f"{ROOT}/examples/fleet/lib", f"{repo}/lib")
    pub = {}
    users = {e: [] for e in range(envs)}
    for i in range(hosts):
        name = f"host-{i:04d}"
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"root@{name}", "-f", f"{keys}/{name}"])
        pub[name] = open(f"{keys}/{name}.pub").read().strip()
        mine = sorted({rng.randrange(envs), rng.randrange(envs)})
        for e in mine:
            users[e].append(name)
        imports = "".join(f"    ../../environments/env-{e}.nix\n" for e in mine)
        write(f"{repo}/machines/{name}/default.nix",
              f"{{ config, lib, ... }}:\n{{\n  imports = [\n{imports}  ];\n"
              f"  secrix.hostPubKey = \"{pub[name]}\";\n"
              f"  secrix.system.secrets.wg.encrypted.file = ../../secrets/wg-{name}.age;\n}}\n")
        write(f"{repo}/secrets/wg-{name}.age", age_encrypt([pub[name]], b"wg-private-key"))
    for e in range(envs):
        write(f"{repo}/environments/env-{e}.nix",
              f"{{ config, ... }}:\n{{\n  secrix.services.svc{e}.secrets.token.encrypted.file = "
              f"../secrets/env-{e}.age;\n}}\n")
        write(f"{repo}/secrets/env-{e}.age",
              age_encrypt([pub[h] for h in users[e]] or [pub["host-0000"]], b"token", armor=e % 2 == 0))
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "fleet")
    # One-module change: a comment in one environment (its users are affected).
    with open(f"{repo}/environments/env-0.nix", "a") as f:
        f.write("# bench\n")
    git(repo, "commit", "-qam", "edit env-0")
    return repo, f"{keys}/host-0000", len(users[0])


def bench(label, repo, identity, env0_users):
    c, c_rss = measure([GUARD, "-C", repo, "secrets", "--commit", "HEAD", "--format", "json"])
    a, a_rss = measure([GUARD, "-C", repo, "secrets", "--all", "--format", "json"])
    p, p_rss = measure([GUARD, "-C", repo, "secrets", "--all", "--identity", identity, "--format", "json"])
    print(f"{label:28s} --commit HEAD {c*1000:7.1f} ms {c_rss:6.1f} MB  ({env0_users} hosts affected)"
          f" | --all {a*1000:7.1f} ms {a_rss:6.1f} MB | --all --identity {p*1000:7.1f} ms {p_rss:6.1f} MB")


def main():
    if not os.path.exists(GUARD):
        sys.exit(f"{GUARD} missing: run scripts/bench-secrets")
    version = run([GUARD, "--version"]).decode().strip()
    print(f"{version}, {os.cpu_count()} cpus, median of {RUNS} runs, peak RSS = max over runs")
    print()
    with tempfile.TemporaryDirectory(prefix="guard-bench-secrets-") as tmp:
        fleet = os.path.join(tmp, "example")
        shutil.copytree(os.path.join(ROOT, "examples/fleet"), fleet)
        git(fleet, "init", "-q", "-b", "main")
        git(fleet, "add", "-A")
        git(fleet, "commit", "-qm", "fleet")
        with open(f"{fleet}/environments/display.nix", "a") as f:
            f.write("# bench\n")
        git(fleet, "commit", "-qam", "edit display")
        c, c_rss = measure([GUARD, "-C", fleet, "secrets", "--commit", "HEAD", "--format", "json"])
        a, a_rss = measure([GUARD, "-C", fleet, "secrets", "--all", "--format", "json"])
        print("## example fleet (17 hosts, 26 secrets)")
        print(f"guard secrets --commit HEAD (display.nix)  {c*1000:7.1f} ms {c_rss:6.1f} MB")
        print(f"guard secrets --all                        {a*1000:7.1f} ms {a_rss:6.1f} MB")
        print()
        print("## generated secrix fleets (one secret per host + one per environment; 2 environments per host)")
        sizes = [(100, 20), (1000, 100)]
        if os.environ.get("QUICK"):
            sizes = sizes[:1]
        for hosts, envs in sizes:
            t = time.perf_counter()
            repo, identity, env0 = generate(tmp, hosts, envs)
            gen = time.perf_counter() - t
            bench(f"{hosts} hosts, {hosts + envs} secrets", repo, identity, env0)
            print(f"{'':28s} (generated with ssh-keygen and age in {gen:.1f} s)")


if __name__ == "__main__":
    main()
