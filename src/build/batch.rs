//! One `nix build` for all hosts of a batch, its internal-json log split
//! per host: nix's start-up (store connection, daemon handshake, builder
//! negotiation) is paid once, and nix schedules the derivations of every
//! host together (a dependency shared by hosts is built once).
//!
//! Each activity of the log belongs to the hosts whose derivation closure
//! holds its derivation (read from the `.drv` files: a derivation names its
//! input derivations), activities below it (`parent`) to the same hosts,
//! and messages naming a derivation to the hosts that need it. What cannot
//! be placed (nix's own messages) goes to every host's log.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::Value;

/// Where a host's derivations were built: the `machine` of its build
/// activities (empty for this machine).
pub const LOCAL: &str = crate::report::LOCAL_BUILDER;

/// The derivation closure of `drv` (itself included), from the `.drv`
/// files in the local store; a `.drv` that cannot be read (a remote
/// `--store`) ends that branch.
pub fn drv_closure(drv: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut stack = vec![drv.to_string()];
    while let Some(d) = stack.pop() {
        if !seen.insert(d.clone()) {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(&d) else {
            continue;
        };
        stack.extend(input_drvs(&text).into_iter().filter(|i| !seen.contains(i)));
    }
    seen
}

/// The input derivations an ATerm `.drv` names: every quoted store path
/// ending in `.drv` (an over-approximation only routes more lines).
fn input_drvs(aterm: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = aterm;
    while let Some(i) = rest.find("\"/nix/store/") {
        rest = &rest[i + 1..];
        let Some(end) = rest.find('"') else { break };
        let s = &rest[..end];
        if s.ends_with(".drv") && !s.contains(char::is_whitespace) {
            out.push(s.to_string());
        }
        rest = &rest[end..];
    }
    out
}

/// Splits one nix invocation's log between hosts.
pub struct Router {
    hosts: usize,
    /// drv -> the hosts whose closure holds it.
    owners: HashMap<String, Vec<usize>>,
    /// activity id -> hosts.
    activities: HashMap<u64, Vec<usize>>,
    /// Per host: the machines its build activities ran on.
    pub machines: Vec<BTreeSet<String>>,
    /// Per host: whether an error message was placed in its log alone (not
    /// broadcast): the host failed by itself.
    pub own_error: Vec<bool>,
}

impl Router {
    /// A router for hosts with these derivation closures.
    pub fn new(closures: &[BTreeSet<String>]) -> Router {
        let mut owners: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, c) in closures.iter().enumerate() {
            for d in c {
                owners.entry(d.clone()).or_default().push(i);
            }
        }
        Router {
            hosts: closures.len(),
            owners,
            activities: HashMap::new(),
            machines: vec![BTreeSet::new(); closures.len()],
            own_error: vec![false; closures.len()],
        }
    }

    fn all(&self) -> Vec<usize> {
        (0..self.hosts).collect()
    }

    /// The hosts a stderr line belongs to.
    pub fn route(&mut self, line: &str) -> Vec<usize> {
        let Some(v) = line
            .strip_prefix("@nix ")
            .and_then(|j| serde_json::from_str::<Value>(j).ok())
        else {
            return self.all();
        };
        let num = |k: &str| v.get(k).and_then(Value::as_u64).unwrap_or(0);
        match v.get("action").and_then(Value::as_str) {
            Some("start") => {
                let id = num("id");
                let parent = num("parent");
                let first = v
                    .get("fields")
                    .and_then(|f| f.get(0))
                    .and_then(Value::as_str);
                let by_drv = first.and_then(|d| self.owners.get(d)).cloned();
                let hosts = by_drv
                    .or_else(|| self.activities.get(&parent).cloned())
                    .unwrap_or_else(|| self.all());
                // A build activity (105): fields are drv, machine, ...
                if num("type") == 105 {
                    let machine = v
                        .get("fields")
                        .and_then(|f| f.get(1))
                        .and_then(Value::as_str)
                        .filter(|m| !m.is_empty())
                        .unwrap_or(LOCAL)
                        .to_string();
                    for &h in &hosts {
                        self.machines[h].insert(machine.clone());
                    }
                }
                self.activities.insert(id, hosts.clone());
                hosts
            }
            Some("stop") | Some("result") => self
                .activities
                .get(&num("id"))
                .cloned()
                .unwrap_or_else(|| self.all()),
            Some("msg") => {
                let msg = crate::nix::cli::strip_ansi(
                    v.get("msg").and_then(Value::as_str).unwrap_or_default(),
                );
                let mut hosts: BTreeSet<usize> = BTreeSet::new();
                let mut named = 0;
                let mut rest = msg.as_str();
                while let Some(i) = rest.find("/nix/store/") {
                    rest = &rest[i..];
                    // Store path characters; anything else ends the path.
                    let end = rest[1..]
                        .find(|c: char| !(c.is_ascii_alphanumeric() || "+-._?=/".contains(c)))
                        .map_or(rest.len(), |e| e + 1);
                    if let Some(o) = self.owners.get(&rest[..end]) {
                        hosts.extend(o);
                        named += 1;
                    }
                    rest = &rest[end..];
                }
                if hosts.is_empty() {
                    self.all()
                } else {
                    // One derivation's failure ("builder for X failed"), not
                    // the closing "build of X, Y, Z failed" naming them all.
                    if num("level") == 0 && named == 1 {
                        for &h in &hosts {
                            self.own_error[h] = true;
                        }
                    }
                    hosts.into_iter().collect()
                }
            }
            _ => self.all(),
        }
    }
}

/// The out path of each derivation from `nix build --json` output.
pub fn outs_of(json: &Value) -> BTreeMap<String, String> {
    json.as_array()
        .into_iter()
        .flatten()
        .filter_map(|b| {
            Some((
                b.get("drvPath")?.as_str()?.to_string(),
                b.get("outputs")?.get("out")?.as_str()?.to_string(),
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_drvs_are_read_from_aterm() {
        let t = r#"Derive([("out","/nix/store/o-x","","")],[("/nix/store/a-dep.drv",["out"]),("/nix/store/b-lib.drv",["out"])],["/nix/store/s-src"],"x86_64-linux","/bin/sh",[],[("name","x")])"#;
        assert_eq!(
            input_drvs(t),
            vec!["/nix/store/a-dep.drv", "/nix/store/b-lib.drv"]
        );
    }

    #[test]
    fn lines_go_to_the_hosts_that_need_them() {
        let shared = "/nix/store/s-shared.drv";
        let a = "/nix/store/a-host-a.drv";
        let b = "/nix/store/b-host-b.drv";
        let closures = vec![
            [a, shared].iter().map(|s| s.to_string()).collect(),
            [b, shared].iter().map(|s| s.to_string()).collect(),
        ];
        let mut r = Router::new(&closures);
        let start = |id: u64, drv: &str, machine: &str| {
            format!(
                r#"@nix {{"action":"start","id":{id},"level":3,"parent":0,"text":"building","type":105,"fields":["{drv}","{machine}",1,1]}}"#
            )
        };
        assert_eq!(r.route(&start(1, a, "")), vec![0]);
        assert_eq!(r.route(&start(2, shared, "ssh://b")), vec![0, 1]);
        assert_eq!(
            r.route(r#"@nix {"action":"result","id":1,"type":101,"fields":["hello"]}"#),
            vec![0]
        );
        assert_eq!(
            r.route(r#"@nix {"action":"start","id":3,"level":4,"parent":1,"text":"x","type":0,"fields":[]}"#),
            vec![0]
        );
        let msg = format!(
            r#"@nix {{"action":"msg","level":0,"msg":"error: builder for '\u001b[35;1m{b}\u001b[0m' failed with exit code 1"}}"#
        );
        assert_eq!(r.route(&msg), vec![1]);
        assert_eq!(r.own_error, vec![false, true]);
        assert_eq!(r.route("plain text"), vec![0, 1]);
        assert!(r.machines[0].contains(LOCAL) && r.machines[0].contains("ssh://b"));
        assert_eq!(r.machines[1].iter().collect::<Vec<_>>(), vec!["ssh://b"]);
    }
}
