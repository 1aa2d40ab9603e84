//! The reviewed verdicts of `guard scan --all` on every repository in
//! `../shared/fleets` at its pinned HEAD: each error finding guard raised
//! there (before and after the precision work of issue #14) was read and
//! judged. The test fails when a finding judged not a credential comes back
//! as an error, when a credential stops being found, or when an error
//! appears that nobody reviewed.
//!
//! Values are never written here: a verdict names the repository, commit,
//! path, line and rule only.

use std::collections::{BTreeMap, BTreeSet};

use crate::real_fleets::{FLEETS, fleet, fleet_head};
use crate::support::guard_in;

/// What a reviewed error finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// A real credential in plaintext: must stay an error.
    Credential,
    /// A credential committed on purpose (an installer or demo password):
    /// true, and marked as intentional.
    Intentional,
    /// Not a credential: must not be an error (it may be a warning).
    NotACredential,
}
use Verdict::*;

struct Reviewed {
    repo: &'static str,
    commit: &'static str,
    path: &'static str,
    line: u64,
    rule: &'static str,
    verdict: Verdict,
    /// Why, in a few words (never the value).
    why: &'static str,
}

const fn v(
    repo: &'static str,
    commit: &'static str,
    path: &'static str,
    line: u64,
    rule: &'static str,
    verdict: Verdict,
    why: &'static str,
) -> Reviewed {
    Reviewed {
        repo,
        commit,
        path,
        line,
        rule,
        verdict,
        why,
    }
}

/// Framework repositories in the mirrors, scanned like the fleets.
const FRAMEWORKS: &[&str] = &[
    "hercules-ci+flake-parts",
    "srid+nixos-unified",
    "nix-community+haumea",
];

#[rustfmt::skip]
const VERDICTS: &[Reviewed] = &[
    v("EmergentMind+nix-config", "9f488753bc06", "docs/addnewhost.md", 169, "secret-assignment", NotACredential, "commented example in documentation (warning)"),
    v("EmergentMind+nix-config", "9f488753bc06", "hosts/common/users/ta/default.nix", 40, "nix-password", Intentional, "fallback login password of a user (intentional default, still a credential)"),
    v("EmergentMind+nix-config", "9f488753bc06", "modules/nixos/semi-active-av.nix", 63, "secret-assignment", NotACredential, "sudoers NOPASSWD tag"),
    v("TUM-DSE+doctor-cluster-config", "63ccb9eea37a", "hosts/doctor.yml", 13, "nix-signing-key", NotACredential, "sops ENC[] ciphertext"),
    v("TUM-DSE+doctor-cluster-config", "63ccb9eea37a", "hosts/vicki.nix", 23, "nix-password", Credential, "user password in plaintext"),
    v("TUM-DSE+doctor-cluster-config", "63ccb9eea37a", "modules/fluent-bit.nix", 115, "secret-assignment", NotACredential, "printf format string"),
    v("TUM-DSE+doctor-cluster-config", "63ccb9eea37a", "modules/monitoring/fpga-dashboard/switch_collector.py", 15, "secret-assignment", Credential, "switch password in a script"),
    v("TUM-DSE+doctor-cluster-config", "63ccb9eea37a", "pkgs/install-iso/base-config.nix", 51, "nix-password", NotACredential, "IPv6 interface token (an address)"),
    v("badele+nix-homelab", "d747820e42b0", "justfile", 311, "secret-assignment", Intentional, "demo VM password, default of a recipe parameter (intentional)"),
    v("badele+nix-homelab", "d747820e42b0", "machines/houston/modules/telegraf/default.nix", 57, "secret-assignment", NotACredential, "<PLACEHOLDER> in a comment"),
    v("badele+nix-homelab", "d747820e42b0", "modules/home-manager/term/tools/zsh.nix", 175, "nix-password", NotACredential, "shell alias topw (a command)"),
    v("badele+nix-homelab", "d747820e42b0", "sops/secrets/hetzner-homelab-token/secret", 2, "nix-signing-key", NotACredential, "sops ENC[] ciphertext"),
    v("badele+nix-homelab", "d747820e42b0", "terraform/terraform.tfstate", 1, "secret-assignment", NotACredential, "OpenTofu pbkdf2 key-provider parameters (salt, iterations)"),
    v("badele+nix-homelab", "d747820e42b0", "vars/per-machine/constellation/mikrotik/prometheus_credentials/secret", 2, "nix-signing-key", NotACredential, "sops ENC[] ciphertext"),
    v("badele+nix-homelab", "d747820e42b0", "vars/per-machine/constellation/prompt_acme_api_key/acme_api_key/secret", 2, "nix-signing-key", NotACredential, "sops ENC[] ciphertext"),
    v("badele+nix-homelab", "d747820e42b0", "vars/per-machine/houston/dokuwiki/oauth2-client-secret/secret", 2, "nix-signing-key", NotACredential, "sops ENC[] ciphertext"),
    v("badele+nix-homelab", "d747820e42b0", "vars/per-machine/houston/grafana/oauth2-client-secret/secret", 2, "nix-signing-key", NotACredential, "sops ENC[] ciphertext"),
    v("badele+nix-homelab", "d747820e42b0", "vars/per-machine/houston/grafana/secret_key/secret", 2, "nix-signing-key", NotACredential, "sops ENC[] ciphertext"),
    v("badele+nix-homelab", "d747820e42b0", "vars/per-machine/houston/hedgedoc/envfile/secret", 7, "secret-assignment", NotACredential, "armored age ciphertext in a sops file"),
    v("badele+nix-homelab", "d747820e42b0", "vars/per-machine/houston/influxdb/telegraf_token_key/secret", 2, "nix-signing-key", NotACredential, "sops ENC[] ciphertext"),
    v("badele+nix-homelab", "d747820e42b0", "vars/per-machine/houston/prompt_acme_api_key/acme_api_key/secret", 2, "nix-signing-key", NotACredential, "sops ENC[] ciphertext"),
    v("badele+nix-homelab", "d747820e42b0", "vars/shared/private_dns_api_key/acme_api_key/secret", 2, "nix-signing-key", NotACredential, "sops ENC[] ciphertext"),
    v("badele+nix-homelab", "d747820e42b0", "vars/shared/step-ca-root-ca/root-ca.key/secret", 7, "secret-assignment", NotACredential, "armored age ciphertext in a sops file"),
    v("badele+nix-homelab", "d747820e42b0", "vars/shared/wifi.jsl22/network-name/secret", 11, "secret-assignment", NotACredential, "armored age ciphertext in a sops file"),
    v("clan-lol+clan-infra", "4dea42ac1dd2", "sops/secrets/build-x86-01-age.key/secret", 54, "secret-assignment", NotACredential, "armored age ciphertext in a sops file"),
    v("clan-lol+clan-infra", "4dea42ac1dd2", "sops/secrets/harmonia-public/secret", 46, "secret-assignment", NotACredential, "armored age ciphertext in a sops file"),
    v("clan-lol+clan-infra", "4dea42ac1dd2", "sops/secrets/hcloud-token/secret", 2, "nix-signing-key", NotACredential, "sops ENC[] ciphertext"),
    v("clan-lol+clan-infra", "4dea42ac1dd2", "sops/secrets/initrd_ssh_key/secret", 18, "secret-assignment", NotACredential, "armored age ciphertext in a sops file"),
    v("clan-lol+clan-infra", "4dea42ac1dd2", "sops/secrets/storinator01-age.key/secret", 34, "secret-assignment", NotACredential, "armored age ciphertext in a sops file"),
    v("clan-lol+clan-infra", "4dea42ac1dd2", "sops/secrets/tf-passphrase/secret", 54, "secret-assignment", NotACredential, "armored age ciphertext in a sops file"),
    v("clan-lol+clan-infra", "4dea42ac1dd2", "terraform-cache-new/terraform.tfstate", 5, "secret-assignment", NotACredential, "OpenTofu pbkdf2 key-provider parameters (salt, iterations)"),
    v("clan-lol+clan-infra", "4dea42ac1dd2", "terraform/terraform.tfstate", 5, "secret-assignment", NotACredential, "OpenTofu pbkdf2 key-provider parameters (salt, iterations)"),
    v("clan-lol+clan-infra", "4dea42ac1dd2", "terraform/terraform.tfstate.1765815698.backup", 1, "secret-assignment", NotACredential, "OpenTofu pbkdf2 key-provider parameters (salt, iterations)"),
    v("clan-lol+clan-infra", "4dea42ac1dd2", "terraform/terraform.tfstate.1765816005.backup", 1, "secret-assignment", NotACredential, "OpenTofu pbkdf2 key-provider parameters (salt, iterations)"),
    v("clan-lol+clan-infra", "4dea42ac1dd2", "vars/per-machine/build-x86-01/user-password-root/user-password/secret", 30, "secret-assignment", NotACredential, "armored age ciphertext in a sops file"),
    v("clan-lol+clan-infra", "4dea42ac1dd2", "vars/per-machine/build-x86-01/wireguard-keys-wireguard-infra/privatekey/secret", 30, "secret-assignment", NotACredential, "armored age ciphertext in a sops file"),
    v("clan-lol+clan-infra", "4dea42ac1dd2", "vars/per-machine/build-x86-01/wireguard-keys-wireguard-infra/publickey/value", 1, "wireguard-private-key", NotACredential, "clan WireGuard public key"),
    v("clan-lol+clan-infra", "4dea42ac1dd2", "vars/per-machine/build01/initrd-ssh/id_ed25519/secret", 22, "secret-assignment", NotACredential, "armored age ciphertext in a sops file"),
    v("clan-lol+clan-infra", "4dea42ac1dd2", "vars/per-machine/build01/wireguard-keys-wireguard-infra/publickey/value", 1, "wireguard-private-key", NotACredential, "clan WireGuard public key"),
    v("clan-lol+clan-infra", "4dea42ac1dd2", "vars/per-machine/build02/wireguard-keys-wireguard-infra/publickey/value", 1, "wireguard-private-key", NotACredential, "clan WireGuard public key"),
    v("clan-lol+clan-infra", "4dea42ac1dd2", "vars/per-machine/build04/wireguard-keys-wireguard-infra/publickey/value", 1, "wireguard-private-key", NotACredential, "clan WireGuard public key"),
    v("clan-lol+clan-infra", "4dea42ac1dd2", "vars/per-machine/jitsi01/lasuite-meet-livekit/for-lasuite-meet/secret", 2, "nix-signing-key", NotACredential, "sops ENC[] ciphertext"),
    v("clan-lol+clan-infra", "4dea42ac1dd2", "vars/per-machine/jitsi01/lasuite-meet-livekit/for-livekit/secret", 14, "secret-assignment", NotACredential, "armored age ciphertext in a sops file"),
    v("clan-lol+clan-infra", "4dea42ac1dd2", "vars/per-machine/jitsi01/wireguard-keys-wireguard-infra/publickey/value", 1, "wireguard-private-key", NotACredential, "clan WireGuard public key"),
    v("clan-lol+clan-infra", "4dea42ac1dd2", "vars/per-machine/storinator01/matthew-smb-password/password/secret", 38, "secret-assignment", NotACredential, "armored age ciphertext in a sops file"),
    v("clan-lol+clan-infra", "4dea42ac1dd2", "vars/per-machine/storinator01/wireguard-keys-wireguard-infra/publickey/value", 1, "wireguard-private-key", NotACredential, "clan WireGuard public key"),
    v("clan-lol+clan-infra", "4dea42ac1dd2", "vars/per-machine/web01/enzime-mail/enzime-password/secret", 14, "secret-assignment", NotACredential, "armored age ciphertext in a sops file"),
    v("clan-lol+clan-infra", "4dea42ac1dd2", "vars/per-machine/web01/niks3-signing-key/key/secret", 34, "secret-assignment", NotACredential, "armored age ciphertext in a sops file"),
    v("clan-lol+clan-infra", "4dea42ac1dd2", "vars/per-machine/web01/wireguard-keys-wireguard-infra/privatekey/secret", 50, "secret-assignment", NotACredential, "armored age ciphertext in a sops file"),
    v("clan-lol+clan-infra", "4dea42ac1dd2", "vars/per-machine/web01/wireguard-keys-wireguard-infra/publickey/value", 1, "wireguard-private-key", NotACredential, "clan WireGuard public key"),
    v("clan-lol+clan-infra", "4dea42ac1dd2", "vars/per-machine/web02/user-password-root/password-hash/secret", 26, "secret-assignment", NotACredential, "armored age ciphertext in a sops file"),
    v("clan-lol+clan-infra", "4dea42ac1dd2", "vars/per-machine/web02/wireguard-keys-wireguard-infra/publickey/value", 1, "wireguard-private-key", NotACredential, "clan WireGuard public key"),
    v("colemickens+nixcfg", "2e6fc4241571", ".github/workflows/build.yaml", 19, "secret-assignment", NotACredential, "workflow permission level"),
    v("colemickens+nixcfg", "2e6fc4241571", ".github/workflows/next.yaml", 10, "secret-assignment", NotACredential, "workflow permission level"),
    v("colemickens+nixcfg", "2e6fc4241571", ".github/workflows/risky-dev.yaml", 10, "secret-assignment", NotACredential, "workflow permission level"),
    v("colemickens+nixcfg", "2e6fc4241571", ".github/workflows/risky.yaml", 20, "secret-assignment", NotACredential, "workflow permission level"),
    v("colemickens+nixcfg", "2e6fc4241571", "misc/zrepl-backup.nu", 14, "secret-assignment", NotACredential, "name of a secret, not its value"),
    v("colemickens+nixcfg", "2e6fc4241571", "misc/zrepl-backup.nu", 25, "secret-assignment", NotACredential, "name of a secret, not its value"),
    v("colemickens+nixcfg", "2e6fc4241571", "secrets/encrypted/cachix_authtoken_colemickens", 10, "secret-assignment", NotACredential, "armored age ciphertext in a sops file"),
    v("dustinlyons+nixos-config", "24dddbd9a86c", "modules/shared/home-manager.nix", 64, "secret-assignment", NotACredential, "colon-separated list of commands"),
    v("dustinlyons+nixos-config", "24dddbd9a86c", "templates/starter-with-secrets/modules/shared/home-manager.nix", 36, "secret-assignment", NotACredential, "colon-separated list of commands"),
    v("dustinlyons+nixos-config", "24dddbd9a86c", "templates/starter/modules/shared/home-manager.nix", 36, "secret-assignment", NotACredential, "colon-separated list of commands"),
    v("hercules-ci+flake-parts", "427bf4bd9435", "dev/tests/perSystem-memoize.nix", 30, "secret-assignment", NotACredential, "echo message"),
    v("mitchellh+nixos-config", "d314004d9f51", "users/mitchellh/home-manager.nix", 115, "nix-password", NotACredential, "1Password reference"),
    v("mitchellh+nixos-config", "d314004d9f51", "users/mitchellh/home-manager.nix", 116, "nix-password", NotACredential, "1Password reference"),
    v("nmasur+dotfiles", "a979036462f9", "platforms/home-manager/modules/nmasur/presets/programs/helix.nix", 167, "nix-password", NotACredential, "list of comment tokens"),
    v("nmasur+dotfiles", "a979036462f9", "platforms/nixos/modules/nmasur/presets/services/metrics/victoriametrics.nix", 34, "nix-password", NotACredential, "%{VAR} template"),
    v("nmasur+dotfiles", "a979036462f9", "platforms/nixos/modules/nmasur/presets/services/minecraft-server.nix", 14, "nix-password", Intentional, "RCON password in plaintext (intentional)"),
    v("nmasur+dotfiles", "a979036462f9", "platforms/nixos/modules/nmasur/presets/services/transmission.nix", 40, "nix-password", NotACredential, "transmission salted hash (warning)"),
    v("nmasur+dotfiles", "a979036462f9", "platforms/nixos/modules/nmasur/presets/zfs.nix", 40, "nix-password", NotACredential, "list of dataset names"),
    v("nmasur+dotfiles", "a979036462f9", "platforms/nixos/modules/nmasur/presets/zfs.nix", 41, "nix-password", NotACredential, "list of dataset names"),
    v("nmasur+dotfiles", "a979036462f9", "platforms/nixos/modules/nmasur/presets/zfs.nix", 42, "nix-password", NotACredential, "list of dataset names"),
    v("nmasur+dotfiles", "a979036462f9", "platforms/nixos/modules/nmasur/presets/zfs.nix", 43, "nix-password", NotACredential, "list of dataset names"),
    v("nmasur+dotfiles", "a979036462f9", "platforms/nixos/modules/nmasur/presets/zfs.nix", 44, "nix-password", NotACredential, "list of dataset names"),
    v("oddlama+nix-config", "d406dd8d472c", "flake/installer-configuration.nix", 13, "nix-password", Intentional, "installer ISO password (intentional, well known)"),
    v("oddlama+nix-config", "d406dd8d472c", "modules/backups.nix", 79, "nix-password", NotACredential, "name of a secret, not its value"),
    v("oddlama+nix-config", "d406dd8d472c", "users/malte/graphical/niri.nix", 37, "nix-password", NotACredential, "D-Bus portal interface name"),
    v("ryan4yin+nix-config", "9ee947dc0ac4", "home/base/gui/zed-editor.nix", 61, "nix-password", NotACredential, "editor setting semantic_tokens"),
    v("ryan4yin+nix-config", "9ee947dc0ac4", "hosts/idols-ai/hardware-nvidia.nix", 60, "nix-password", NotACredential, "encoder setting twopass"),
    v("srid+nixos-config", "66ed7369c139", "configurations/home/toor@kolu-bot.nix", 71, "secret-assignment", NotACredential, "printf format string"),
    v("wimpysworld+nix-config", "931f27996f18", "home-manager/_mixins/agentic/hooks/communication-rules/core/dispatch.py", 46, "secret-assignment", NotACredential, "value repeats its name"),
    v("wimpysworld+nix-config", "931f27996f18", "home-manager/_mixins/agentic/hooks/communication-rules/core/state.py", 79, "secret-assignment", NotACredential, "value repeats its name"),
    v("wimpysworld+nix-config", "931f27996f18", "home-manager/_mixins/desktop/default.nix", 211, "nix-password", NotACredential, "D-Bus portal interface name"),
    v("wimpysworld+nix-config", "931f27996f18", "home-manager/_mixins/development/slack/slack-post-tests.sh", 58, "slack-token", NotACredential, "printf format string"),
    v("wimpysworld+nix-config", "931f27996f18", "home-manager/_mixins/scripts/youtube-ready/youtube-ready.sh", 65, "secret-assignment", NotACredential, "multipass encoder flag"),
    v("wimpysworld+nix-config", "931f27996f18", "home-manager/_mixins/users/martin/default.nix", 67, "nix-password", NotACredential, "shell alias (a command)"),
    v("wimpysworld+nix-config", "931f27996f18", "home-manager/_mixins/users/martin/default.nix", 84, "nix-password", NotACredential, "shell alias (a command)"),
    v("wimpysworld+nix-config", "931f27996f18", "home-manager/_mixins/users/martin/default.nix", 90, "nix-password", NotACredential, "shell alias (a command)"),
    v("wimpysworld+nix-config", "931f27996f18", "justfile", 747, "secret-assignment", NotACredential, "relative path to a sops file"),
    v("wimpysworld+nix-config", "931f27996f18", "justfile", 808, "secret-assignment", NotACredential, "command-line options"),
    v("wimpysworld+nix-config", "931f27996f18", "nixos/_mixins/scripts/install-system/install-system.sh", 319, "secret-assignment", NotACredential, "relative path to a sops file"),
    v("wimpysworld+nix-config", "931f27996f18", "nixos/_mixins/server/postgresql/default.nix", 86, "secret-assignment", NotACredential, "psql variable naming a secret"),
    v("wimpysworld+nix-config", "931f27996f18", "nixos/_mixins/server/reframe/tests/module-test.nix", 74, "secret-assignment", NotACredential, "test code matching a prefix"),
    v("wimpysworld+nix-config", "931f27996f18", "nixos/_mixins/server/reframe/tests/module-test.nix", 108, "secret-assignment", NotACredential, "test code matching a prefix"),
    v("wimpysworld+nix-config", "931f27996f18", "secrets/hermes.yaml", 10, "nix-signing-key", NotACredential, "sops ENC[] ciphertext"),
    v("wimpysworld+nix-config", "931f27996f18", "secrets/hermes.yaml", 11, "nix-signing-key", NotACredential, "sops ENC[] ciphertext"),
    v("wimpysworld+nix-config", "931f27996f18", "secrets/hermes.yaml", 12, "nix-signing-key", NotACredential, "sops ENC[] ciphertext"),
    v("wimpysworld+nix-config", "931f27996f18", "secrets/hermes.yaml", 13, "nix-signing-key", NotACredential, "sops ENC[] ciphertext"),
    v("wimpysworld+nix-config", "931f27996f18", "secrets/librechat.yaml", 1, "nix-signing-key", NotACredential, "sops ENC[] ciphertext"),
    v("wimpysworld+nix-config", "931f27996f18", "secrets/librechat.yaml", 3, "nix-signing-key", NotACredential, "sops ENC[] ciphertext"),
    v("wimpysworld+nix-config", "931f27996f18", "secrets/librechat.yaml", 4, "nix-signing-key", NotACredential, "sops ENC[] ciphertext"),
    v("wimpysworld+nix-config", "931f27996f18", "secrets/mcp.yaml", 8, "nix-signing-key", NotACredential, "sops ENC[] ciphertext"),
    v("wimpysworld+nix-config", "931f27996f18", "secrets/tailscale.yaml", 11, "nix-signing-key", NotACredential, "sops ENC[] ciphertext"),
];

#[test]
fn real_fleet_errors_match_the_reviewed_verdicts() {
    let mut problems = Vec::new();
    let mut credentials = 0;
    for &repo in FLEETS.iter().chain(FRAMEWORKS) {
        let head = fleet_head(repo);
        let reviewed: Vec<&Reviewed> = VERDICTS.iter().filter(|r| r.repo == repo).collect();
        for r in &reviewed {
            assert!(
                head.starts_with(r.commit),
                "{repo}: the verdicts were reviewed at {}, the mirror is at {head}",
                r.commit
            );
        }
        let out = guard_in(&fleet(repo), &["scan", "--all", "--format", "json"]);
        assert!(
            out.code == 0 || out.code == 1,
            "{repo}: guard scan --all exited {}: {}",
            out.code,
            out.stderr
        );
        let json = out.json();
        let errors: BTreeSet<(String, u64, String)> = json["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["severity"] == "error")
            .map(|f| {
                (
                    f["path"].as_str().unwrap().to_string(),
                    f["line"].as_u64().unwrap(),
                    f["rule"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        let by_place: BTreeMap<(&str, u64), &Reviewed> =
            reviewed.iter().map(|r| ((r.path, r.line), *r)).collect();
        for r in &reviewed {
            let key = (r.path.to_string(), r.line, r.rule.to_string());
            let any_error_here = errors.iter().any(|(p, l, _)| p == r.path && *l == r.line);
            match r.verdict {
                Credential | Intentional => {
                    credentials += 1;
                    if !errors.contains(&key) {
                        problems.push(format!(
                            "{repo} {}:{} {}: a reviewed credential is no longer an error",
                            r.path, r.line, r.rule
                        ));
                    }
                }
                NotACredential => {
                    if any_error_here {
                        problems.push(format!(
                            "{repo} {}:{}: reviewed as not a credential ({}), reported as an error again",
                            r.path, r.line, r.why
                        ));
                    }
                }
            }
        }
        for (path, line, rule) in &errors {
            if !by_place.contains_key(&(path.as_str(), *line)) {
                problems.push(format!(
                    "{repo} {path}:{line} {rule}: an error finding nobody reviewed (read it, fix \
                     the rule or add its verdict)"
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(
        credentials > 0,
        "the verdicts hold no credential: the test would prove nothing"
    );
}
