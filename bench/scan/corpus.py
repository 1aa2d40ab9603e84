"""Deterministic corpora for scripts/bench-scan.

`tree(dir, megabytes, seed)` writes a large tree of NixOS-fleet-like files
(host modules, service modules with the usual hard negatives: WireGuard
public keys, SSH public keys, SRI hashes, narHash, secrix references, sops
and age files, docs, scripts, JSON data) and plants secrets into a small,
known fraction of the files. Every file is unique (some scanners
deduplicate identical content). Returns the list of planted (path, kind).

`plant_history(repo, seed)` adds commits that introduce and later remove
secrets to a fleetgen repository, so history scanners have something to
find.

Secret-shaped values are assembled from parts at run time: this file holds
no complete secret literal.
"""

import base64
import hashlib
import json
import os
import random
import string
import subprocess

WORDS = (
    "alpha bravo cache delta echo fabric gamma harbor index jolt kernel lumen "
    "mesh nova orbit pulse quartz relay shard tensor umbra vector willow zenith "
    "storage backup monitor ingress gateway proxy builder worker display kiosk"
).split()

SERVICES = [
    "nginx", "postgresql", "prometheus", "grafana", "loki", "restic", "openldap",
    "matrix-synapse", "nextcloud", "gitea", "hydra", "tailscale", "unbound",
    "kea", "chrony", "borgbackup", "minio", "vaultwarden", "home-assistant",
]


def b64(rng, nbytes):
    return base64.b64encode(bytes(rng.getrandbits(8) for _ in range(nbytes))).decode()


def hexs(rng, n):
    return "".join(rng.choice("0123456789abcdef") for _ in range(n))


def alnum(rng, n, alphabet=string.ascii_letters + string.digits):
    return "".join(rng.choice(alphabet) for _ in range(n))


def nix32(rng, n):
    return "".join(rng.choice("0123456789abcdfghijklmnpqrsvwxyz") for _ in range(n))


def wg_key(rng):
    raw = bytearray(rng.getrandbits(8) for _ in range(32))
    raw[0] &= 248
    raw[31] = (raw[31] & 127) | 64
    return base64.b64encode(bytes(raw)).decode()


def ssh_pub(rng, host):
    blob = b"\x00\x00\x00\x0bssh-ed25519\x00\x00\x00\x20" + bytes(
        rng.getrandbits(8) for _ in range(32)
    )
    return "ssh-ed25519 " + base64.b64encode(blob).decode() + f" root@{host}"


BECH = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"


def _polymod(values):
    gen = [0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3]
    chk = 1
    for v in values:
        top = chk >> 25
        chk = ((chk & 0x1FFFFFF) << 5) ^ v
        for i in range(5):
            if (top >> i) & 1:
                chk ^= gen[i]
    return chk


def bech32(hrp, data):
    values = [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp] + data
    pm = _polymod(values + [0] * 6) ^ 1
    check = [(pm >> (5 * (5 - i))) & 31 for i in range(6)]
    return hrp + "1" + "".join(BECH[d] for d in data + check)


def age_recipient(rng):
    return bech32("age", [rng.randrange(32) for _ in range(52)])


def age_identity(rng):
    return bech32("age-secret-key-", [rng.randrange(32) for _ in range(52)]).upper()


def crypt_hash(rng):
    salt = alnum(rng, 16, string.ascii_letters + string.digits + "./")
    return "$6$" + salt + "$" + alnum(rng, 86, string.ascii_letters + string.digits + "./")


# --------------------------------------------------------------------- secrets
# Each entry: kind -> function(rng) -> (filename suffix, content). The
# kinds are the NixOS-infra secrets of issue 4.

def pem(rng, label, nlines=6):
    body = "\n".join(b64(rng, 48) for _ in range(nlines))
    return f"-----BEGIN {label}-----\n{body}\n-----END {label}-----\n"


def secret_line(kind, rng):
    """A line (or block) holding a secret, for planting into a host module.
    Returns (text, is_nix_snippet)."""
    pw = alnum(rng, 14) + "!" + str(rng.randrange(100))
    if kind == "nix-password":
        return f'  users.users.{rng.choice(WORDS)}.initialPassword = "{pw}";\n', True
    if kind == "wifi-psk":
        return f'  networking.wireless.networks."{rng.choice(WORDS)}-wifi".psk = "{rng.choice(WORDS)} {rng.choice(WORDS)} {rng.randrange(1000)}";\n', True
    if kind == "ldap-bind":
        return f'  services.sssd.config.bindPassword = "{pw}";\n', True
    if kind == "wg-private":
        return f'  networking.wireguard.interfaces.wg0.privateKey = "{wg_key(rng)}";\n', True
    if kind == "tailscale":
        return f'  services.tailscale.authKey = "{"tskey-" + "auth-" + alnum(rng, 12) + "CNTRL-" + alnum(rng, 32)}";\n', True
    if kind == "nix-signing":
        return f'  environment.etc."nix/cache-key".text = "cache.{rng.choice(WORDS)}.example-1:{b64(rng, 64)}";\n', True
    if kind == "github":
        return f'  nix.settings.access-tokens = "github.com={"gh" + "p_" + alnum(rng, 36)}";\n', True
    if kind == "age-identity":
        return f'  environment.etc."age/key.txt".text = "{age_identity(rng)}";\n', True
    if kind == "basic-auth":
        return f'  services.restic.backups.b.repository = "rest:https://backup:{pw}@{rng.choice(WORDS)}.example.org/";\n', True
    if kind == "hashed-password":
        return f'  users.users.{rng.choice(WORDS)}.hashedPassword = "{crypt_hash(rng)}";\n', True
    raise ValueError(kind)


PLANT_KINDS = [
    "nix-password", "wifi-psk", "ldap-bind", "wg-private", "tailscale",
    "nix-signing", "github", "age-identity", "basic-auth", "hashed-password",
]


# ------------------------------------------------------------------- templates

def host_module(rng, host, idx):
    peers = "\n".join(
        f'      {{ publicKey = "{wg_key(rng)}"; allowedIPs = [ "10.88.{rng.randrange(255)}.{rng.randrange(255)}/32" ]; }}'
        for _ in range(rng.randrange(2, 6))
    )
    svc = rng.sample(SERVICES, 3)
    return f"""# {host}: {" ".join(rng.sample(WORDS, 6))} (generated, {idx}).
{{ config, lib, pkgs, name, ... }}:
{{
  imports = [ ../../environments/{svc[0]}.nix ../../environments/{svc[1]}.nix ../../lib/enable-wg.nix ];

  secrix.hostPubKey = "{ssh_pub(rng, host)}";
  secrix.system.secrets.wg-{host}.encrypted.file = ../../secrets/wg-{host}.age;
  secrix.services.{svc[2]}.secrets.{svc[2]}-password.encrypted.file = ../../secrets/{svc[2]}-{idx}.age;

  networking.hostName = "{host}";
  networking.hostId = "{hexs(rng, 8)}";
  networking.wireguard.interfaces.wg-mesh = {{
    ips = [ "10.88.127.{idx % 250}/24" ];
    listenPort = {51820 + idx % 10};
    privateKeyFile = config.secrix.system.secrets."wg-${{name}}".decrypted.path;
    peers = [
{peers}
    ];
  }};

  services.{svc[2]} = {{
    enable = true;
    passwordFile = config.secrix.services.{svc[2]}.secrets.{svc[2]}-password.decrypted.path;
    settings.listen = "0.0.0.0:{rng.randrange(1024, 65535)}";
  }};
  services.openssh.settings.PermitRootLogin = "prohibit-password";
  services.openssh.settings.PasswordAuthentication = false;
  users.users.root.openssh.authorizedKeys.keys = [
    "{ssh_pub(rng, "admin")}"
    "{ssh_pub(rng, "deploy")}"
  ];
  fileSystems."/" = {{ device = "/dev/disk/by-uuid/{hexs(rng, 8)}-{hexs(rng, 4)}-{hexs(rng, 4)}-{hexs(rng, 4)}-{hexs(rng, 12)}"; fsType = "ext4"; }};
  system.stateVersion = "24.11";
}}
"""


def package_module(rng, idx):
    name = f"{rng.choice(WORDS)}-{rng.choice(WORDS)}"
    return f"""{{ lib, stdenv, fetchFromGitHub, rustPlatform }}:
# Package {idx}: {" ".join(rng.sample(WORDS, 8))}
rustPlatform.buildRustPackage rec {{
  pname = "{name}";
  version = "{rng.randrange(10)}.{rng.randrange(30)}.{rng.randrange(10)}";
  src = fetchFromGitHub {{
    owner = "{rng.choice(WORDS)}";
    repo = pname;
    rev = "{hexs(rng, 40)}";
    hash = "sha256-{b64(rng, 32)}";
  }};
  cargoHash = "sha256-{b64(rng, 32)}";
  outputHash = "{nix32(rng, 52)}";
  patches = [ ./fix-{idx}.patch ];
  buildInputs = [ ];
  meta = with lib; {{
    description = "{" ".join(rng.sample(WORDS, 7))}";
    license = licenses.mit;
    maintainers = [ ];
  }};
}}
"""


def service_module(rng, idx):
    svc = rng.choice(SERVICES)
    lines = [f"# {svc} for the fleet ({idx}): {' '.join(rng.sample(WORDS, 5))}",
             "{ config, lib, pkgs, ... }:", "let",
             f"  cfg = config.services.{svc};",
             f"  secretPath = config.secrix.services.{svc}.secrets.{svc}-key.decrypted.path;",
             "in", "{", f"  services.{svc} = {{", "    enable = true;"]
    for _ in range(rng.randrange(15, 60)):
        k = rng.choice(WORDS) + rng.choice(["Port", "Dir", "Timeout", "Name", "Level", "Interval"])
        v = rng.choice([str(rng.randrange(10000)), f'"{rng.choice(WORDS)}"', "true", "false",
                        f'"/var/lib/{svc}/{rng.choice(WORDS)}"'])
        lines.append(f"    settings.{rng.choice(WORDS)}.{k} = {v};")
    lines += [
        f'    environmentFile = secretPath;',
        f'    settings.admin_password = "$__file{{${{secretPath}}}}";',
        f'    settings.database.passwordFile = "/run/secrets/{svc}-db";',
        f'    extraConfig = \'\'',
        f'      # generated {hexs(rng, 12)}',
        f'      include ${{secretPath}}',
        f'    \'\';',
        "  };",
        f"  secrix.services.{svc}.secrets.{svc}-key.encrypted.file = ../secrets/{svc}-{idx}.age;",
        f'  nix.settings.trusted-public-keys = [ "cache.nixos.org-1:{b64(rng, 32)}" "fleet-{idx}:{b64(rng, 32)}" ];',
        f"  systemd.services.{svc}.serviceConfig.LoadCredential = [ \"token:${{secretPath}}\" ];",
        "}",
    ]
    return "\n".join(lines) + "\n"


def flake_lock(rng, idx):
    nodes = {}
    for i in range(rng.randrange(5, 25)):
        nodes[f"{rng.choice(WORDS)}{i}"] = {
            "locked": {
                "lastModified": 1700000000 + rng.randrange(10**7),
                "narHash": "sha256-" + b64(rng, 32),
                "owner": rng.choice(WORDS),
                "repo": rng.choice(WORDS),
                "rev": hexs(rng, 40),
                "type": "github",
            },
            "original": {"owner": rng.choice(WORDS), "repo": rng.choice(WORDS), "type": "github"},
        }
    nodes["root"] = {"inputs": {k: k for k in nodes}}
    return json.dumps({"nodes": nodes, "root": "root", "version": 7}, indent=2) + "\n"


def peers_json(rng, idx):
    d = {f"host-{idx}-{i}": {"ip": f"10.88.{i // 250}.{i % 250}", "publicKey": wg_key(rng)}
         for i in range(rng.randrange(10, 80))}
    return json.dumps(d, indent=2) + "\n"


def sops_yaml(rng, idx):
    keys = "\n".join(
        f"{rng.choice(WORDS)}_{k}: ENC[AES256_GCM,data:{b64(rng, rng.randrange(8, 40))},iv:{b64(rng, 32)},tag:{b64(rng, 16)},type:str]"
        for k in ("password", "token", "secret", "api_key")
    )
    armored = "\n".join("            " + b64(rng, 48) for _ in range(4))
    return f"""{keys}
sops:
    age:
        - recipient: {age_recipient(rng)}
          enc: |
            -----BEGIN AGE ENCRYPTED FILE-----
{armored}
            -----END AGE ENCRYPTED FILE-----
    lastmodified: "2026-01-0{rng.randrange(1, 9)}T00:00:00Z"
    mac: ENC[AES256_GCM,data:{b64(rng, 32)},iv:{b64(rng, 32)},tag:{b64(rng, 16)},type:str]
    unencrypted_suffix: _unencrypted
    version: 3.9.{idx % 10}
"""


def age_armored(rng):
    body = "\n".join(b64(rng, 48) for _ in range(rng.randrange(3, 9)))
    return f"-----BEGIN AGE ENCRYPTED FILE-----\n{body}\n-----END AGE ENCRYPTED FILE-----\n"


def doc_md(rng, idx):
    paras = []
    for _ in range(rng.randrange(5, 30)):
        paras.append(" ".join(rng.choice(WORDS) for _ in range(rng.randrange(20, 80))) + ".")
    return (f"# {rng.choice(WORDS).title()} runbook {idx}\n\n" + "\n\n".join(paras) +
            "\n\nSecrets live in `secrets/*.age`; never commit a password. Example:\n\n"
            "```nix\npasswordFile = config.secrix.services.app.secrets.db.decrypted.path;\n```\n")


def script_sh(rng, idx):
    lines = ["#!/usr/bin/env bash", f"# deploy helper {idx}", "set -euo pipefail"]
    for _ in range(rng.randrange(10, 50)):
        lines.append(f'nix build .#nixosConfigurations.{rng.choice(WORDS)}-{rng.randrange(99)}.config.system.build.toplevel --out-link /tmp/{hexs(rng, 8)}')
    lines.append('export DB_PASSWORD_FILE=/run/secrets/db')
    lines.append('TOKEN="$(cat "$CREDENTIALS_DIRECTORY/token")"')
    return "\n".join(lines) + "\n"


def alert_yaml(rng, idx):
    out = ["groups:", f"  - name: fleet-{idx}", "    rules:"]
    for _ in range(rng.randrange(5, 30)):
        out += [f"      - alert: {rng.choice(WORDS).title()}{rng.choice(WORDS).title()}",
                f"        expr: rate(node_{rng.choice(WORDS)}_total[5m]) > {rng.randrange(100)}",
                f"        for: {rng.randrange(1, 30)}m",
                "        labels: { severity: warning }"]
    return "\n".join(out) + "\n"


TEMPLATES = [
    ("machines/{h}/default.nix", lambda rng, i: host_module(rng, f"host-{i}", i), 5),
    ("pkgs/{w}-{i}/default.nix", package_module, 3),
    ("environments/{w}-{i}.nix", service_module, 5),
    ("inputs/{w}-{i}/flake.lock", flake_lock, 1),
    ("lib/peers-{i}.json", peers_json, 1),
    ("secrets/{w}-{i}.yaml", sops_yaml, 1),
    ("secrets/{w}-{i}.age", lambda rng, i: age_armored(rng), 2),
    ("docs/{w}-{i}.md", doc_md, 2),
    ("scripts/{w}-{i}.sh", script_sh, 1),
    ("monitoring/{w}-{i}.yml", alert_yaml, 1),
]


def tree(root, megabytes, seed=1, plant_every=400):
    """Writes about `megabytes` MB under `root`; returns planted secrets."""
    rng = random.Random(seed)
    weights = [t[2] for t in TEMPLATES]
    target = megabytes * 1_000_000
    written = 0
    i = 0
    planted = []
    while written < target:
        pattern, make, _ = rng.choices(TEMPLATES, weights)[0]
        rel = pattern.format(h=f"host-{i:06d}", w=rng.choice(WORDS), i=i)
        rel = f"shard-{i // 2000:03d}/{rel}"
        text = make(rng, i)
        if i % plant_every == plant_every // 2 and rel.endswith("default.nix") and "machines" in rel:
            kind = PLANT_KINDS[(i // plant_every) % len(PLANT_KINDS)]
            line, _ = secret_line(kind, rng)
            text = text.replace("  system.stateVersion", line + "  system.stateVersion", 1)
            planted.append({"path": rel, "kind": kind})
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)
        written += len(text)
        i += 1
    return planted, written, i


# ---------------------------------------------------------------------- history

def git(repo, *args, env=None):
    e = dict(os.environ)
    e.update({
        "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@example.invalid",
        "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@example.invalid",
        "GIT_AUTHOR_DATE": "2026-01-01T00:00:00Z", "GIT_COMMITTER_DATE": "2026-01-01T00:00:00Z",
    })
    if env:
        e.update(env)
    return subprocess.run(["git", "-C", repo, *args], check=True, capture_output=True,
                          text=True, env=e).stdout


def plant_history(repo, seed=1, count=10):
    """Commits that add a secret to a host module and a later commit that
    removes it again; returns [(commit, path, kind)]."""
    rng = random.Random(seed)
    hosts = sorted(d for d in os.listdir(os.path.join(repo, "machines"))
                   if os.path.isdir(os.path.join(repo, "machines", d)))
    planted = []
    for n in range(count):
        kind = PLANT_KINDS[n % len(PLANT_KINDS)]
        host = hosts[rng.randrange(len(hosts))]
        rel = f"machines/{host}/default.nix"
        path = os.path.join(repo, rel)
        with open(path) as f:
            orig = f.read()
        line, _ = secret_line(kind, rng)
        with open(path, "w") as f:
            f.write(orig.replace("{\n", "{\n" + line, 1) if "{\n" in orig else orig + "# " + line)
        git(repo, "commit", "-qam", f"oops {n}")
        commit = git(repo, "rev-parse", "HEAD").strip()
        with open(path, "w") as f:
            f.write(orig)
        git(repo, "commit", "-qam", f"remove oops {n}")
        planted.append({"commit": commit, "path": rel, "kind": kind})
    return planted


if __name__ == "__main__":
    import sys
    p, w, n = tree(sys.argv[1], int(sys.argv[2]))
    print(json.dumps({"planted": len(p), "bytes": w, "files": n}))
