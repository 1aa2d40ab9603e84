//! A staged rollout of a change (`guard plan`): the hosts it changes in
//! waves (canaries first, then the rest, `critical` hosts last) with the
//! deploy command of the tool the flake is set up for. Pure: the affected
//! set, the host list and the configuration in, a [`Plan`] out. guard
//! prints the plan; it never deploys.

use crate::config::{Config, selects};
use crate::nix::cli::quote_attr;
use crate::nix::hosts::HostSet;
use crate::report::{Affected, Plan, Warning, Wave};

/// Plans the rollout of the hosts `affected` lists as changed. Restamped
/// hosts are listed apart and deployed in no wave: their systems differ
/// only by a stamp.
pub fn plan(affected: &Affected, hosts: &HostSet, flake_dir: &str, config: &Config) -> Plan {
    let critical = &config.build.critical;
    let tool = config
        .rollout
        .tool
        .clone()
        .or_else(|| {
            ["nixinate", "colmena", "deploy-rs"]
                .into_iter()
                .find(|t| hosts.deploy_tools.contains_key(*t))
                .map(String::from)
        })
        .unwrap_or_else(|| "nixos-rebuild".into());
    let mut warnings = Vec::new();
    let changed: Vec<&str> = affected.hosts.iter().map(|h| h.name.as_str()).collect();
    let is_critical = |h: &str| critical.iter().any(|c| c == h);
    let is_canary = |h: &str| selects(&config.rollout.canary, critical, h);
    for h in changed.iter().filter(|h| is_canary(h) && is_critical(h)) {
        warnings.push(Warning {
            path: None,
            message: format!(
                "{h} is both a canary ([rollout] canary) and critical ([build] critical): deployed last, with the critical hosts"
            ),
        });
    }
    let wave_of = |h: &str| {
        if is_critical(h) {
            "critical"
        } else if is_canary(h) {
            "canary"
        } else {
            "main"
        }
    };
    let flake = if flake_dir.is_empty() {
        ".".to_string()
    } else {
        format!("./{flake_dir}")
    };
    let deployable = |h: &str| {
        hosts
            .deploy_tools
            .get(&tool)
            .is_none_or(|names| names.iter().any(|n| n == h))
    };
    let mut out = Plan {
        tool: tool.clone(),
        ..Plan::default()
    };
    for name in ["canary", "main", "critical"] {
        let members: Vec<String> = changed
            .iter()
            .filter(|h| wave_of(h) == name)
            .map(|h| h.to_string())
            .collect();
        if members.is_empty() {
            continue;
        }
        let (tool_hosts, others): (Vec<&String>, Vec<&String>) =
            members.iter().partition(|h| deployable(h));
        let mut commands = Vec::new();
        match tool.as_str() {
            "colmena" if !tool_hosts.is_empty() => {
                let on: Vec<&str> = tool_hosts.iter().map(|h| h.as_str()).collect();
                let config_flag = if flake_dir.is_empty() {
                    String::new()
                } else {
                    format!("-f {flake_dir}/flake.nix ")
                };
                commands.push(format!("colmena {config_flag}apply --on {}", on.join(",")));
            }
            _ => {
                for h in &tool_hosts {
                    commands.push(command(&tool, &flake, h, config));
                }
            }
        }
        for h in &others {
            warnings.push(Warning {
                path: None,
                message: format!(
                    "{h} is not a {tool} target in the flake: its command is nixos-rebuild's"
                ),
            });
            commands.push(command("nixos-rebuild", &flake, h, config));
        }
        out.waves.push(Wave {
            name: name.to_string(),
            hosts: members,
            commands,
        });
    }
    out.restamped = affected.restamped.iter().map(|h| h.name.clone()).collect();
    out.removed = affected.removed_hosts.clone();
    out.warnings = warnings;
    out
}

/// The command that deploys one host with `tool`.
fn command(tool: &str, flake: &str, host: &str, config: &Config) -> String {
    let installable = |attr: String| shell_word(&format!("{flake}#{attr}"));
    match tool {
        "nixinate" => format!(
            "nix run {}",
            installable(format!("apps.nixinate.{}", quote_attr(host)))
        ),
        "deploy-rs" => format!("deploy {}", installable(quote_attr(host))),
        "colmena" => format!("colmena apply --on {}", shell_word(host)),
        _ => format!(
            "nixos-rebuild switch --flake {} --target-host {}",
            installable(quote_attr(host)),
            shell_word(&config.rollout.target_host.replace("{host}", host))
        ),
    }
}

/// A word as the shell reads it: single-quoted when it holds anything but
/// plain characters (host names are restricted, attribute quotes are not).
fn shell_word(s: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_./#@:,=+".contains(c);
    if s.chars().all(plain) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_words() {
        assert_eq!(shell_word(".#apps.nixinate.linda"), ".#apps.nixinate.linda");
        assert_eq!(
            shell_word(".#apps.nixinate.\"swarm.0\""),
            "'.#apps.nixinate.\"swarm.0\"'"
        );
        assert_eq!(shell_word("a'b c"), "'a'\\''b c'");
    }
}
