//! A long-lived evaluation worker: one `nix repl` process that is handed
//! hosts one after another (as nix-eval-jobs' workers are), so the flake is
//! fetched and its shared files parsed once per worker instead of once per
//! host, and so that the caller can watch the worker's resident memory and
//! replace it (see `build::eval`).
//!
//! The protocol is plain repl input, valid on Nix 2.8 and current Nix:
//! `guardFlake = builtins.getFlake "<url>"` once, then per host one line
//! whose value is a JSON string tagged with a sequence number, followed by
//! a sync line (`"guard-sync-<n>"`). stdout and stderr share one pipe, so
//! an error message (stderr) arrives before the sync line that ends it.
//!
//! Purity: a pinned flake (`?rev=`) is evaluated with `pure-eval = true`
//! where the repl honours it (Nix 2.10+); Nix 2.8's repl is always impure,
//! an unpinned work tree cannot be read in pure mode, and pure getFlake
//! refuses a flake.lock that lacks an input (which `nix build` locks in
//! memory), so those are evaluated impurely (as `nix repl` does): a flake
//! that reads `builtins.getEnv` then sees the environment.

use std::io::{BufRead, BufReader, Write};
use std::process::{ChildStdin, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use super::cli::{Drv, HostAttr, Nix, NixError, error_message, nix_string, quote_attr, strip_ansi};
use super::modgraph::{NixGraph, graph_expr};
use crate::process::{self, RunError, Running};

/// How often a running evaluation is checked (memory, timeout, Ctrl-C).
const POLL: Duration = Duration::from_millis(40);

/// One host's answer from a worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Ok(Drv),
    /// No such host in `nixosConfigurations`.
    Missing,
    /// The host's module graph ([`Worker::graph`]).
    Graph(NixGraph),
    /// The host's configuration has no `graph` (a nixpkgs older than the
    /// module graph, or not `lib.evalModules`).
    NoGraph,
    /// Evaluation threw: nix's message.
    Failed(String),
    /// The worker passed the memory limit while evaluating (it was killed).
    OverLimit {
        rss: u64,
    },
    /// The per-host timeout passed (the worker was killed).
    TimedOut {
        secs: u64,
    },
    /// Ctrl-C (the worker was killed).
    Interrupted,
    /// The worker exited on its own (killed by the OOM killer, ...).
    Died(String),
}

/// A running `nix repl` with a flake loaded.
pub struct Worker {
    running: Option<Running>,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    seq: u64,
    /// Hosts this worker answered.
    pub evaluated: usize,
}

impl Worker {
    /// Starts a worker for `flake` and waits until it is ready (the flake
    /// and the names of its hosts are evaluated: a flake that cannot be
    /// fetched fails here, once, not once per host).
    pub fn start(nix: &Nix, flake: &str, timeout: Option<Duration>) -> Result<Worker, NixError> {
        let pinned = flake
            .split_once('?')
            .is_some_and(|(_, q)| q.split(['&', '#']).any(|kv| kv.starts_with("rev=")));
        if pinned && nix.release.is_none_or(|r| r >= (2, 10)) {
            match Worker::start_with(nix, flake, timeout, true) {
                // A flake.lock that lacks an input: `nix build` locks it in
                // memory, pure getFlake refuses; evaluate as `nix build`
                // would, impurely (as Nix 2.8's repl always does).
                Err(NixError::Failed { message, .. }) if message.contains("in pure mode") => {}
                r => return r,
            }
        }
        Worker::start_with(nix, flake, timeout, false)
    }

    fn start_with(
        nix: &Nix,
        flake: &str,
        timeout: Option<Duration>,
        pure: bool,
    ) -> Result<Worker, NixError> {
        let what = format!("repl {flake}");
        let mut c = nix.command();
        c.arg("repl");
        if pure {
            c.args(["--option", "pure-eval", "true"]);
        }
        c.arg("--show-trace");
        c.args(&nix.extra_args);
        c.env("NO_COLOR", "1").env("TERM", "dumb");
        let (reader, writer) = process::pipe().map_err(NixError::Spawn)?;
        c.stdin(Stdio::piped());
        c.stdout(writer.try_clone().map_err(NixError::Spawn)?);
        c.stderr(writer);
        let mut running = Running::spawn(c).map_err(|e| match e {
            RunError::NotFound => NixError::Missing(super::cli::missing_where(&nix.program)),
            RunError::Spawn(e) => NixError::Spawn(e),
            RunError::Interrupted => NixError::Interrupted { what: what.clone() },
            RunError::TimedOut { secs } => NixError::TimedOut {
                what: what.clone(),
                secs,
            },
        })?;
        let stdin = running.child_mut().stdin.take();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut r = BufReader::new(reader);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match r.read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let line = strip_ansi(String::from_utf8_lossy(&buf).trim_end());
                        if tx.send(line).is_err() {
                            break;
                        }
                    }
                }
            }
        });
        let mut w = Worker {
            running: Some(running),
            stdin,
            lines: rx,
            seq: 0,
            evaluated: 0,
        };
        // The sync line stands alone: after an error the repl goes on with
        // the next line, so it still arrives.
        let setup = format!(
            "guardFlake = builtins.getFlake {}\nbuiltins.length (builtins.attrNames guardFlake.nixosConfigurations)\n\"guard-sync-0\"\n",
            nix_string(flake)
        );
        match w.exchange(&setup, 0, None, timeout) {
            (Some(_), _) | (None, Ok(_)) => Ok(w),
            (None, Err(Answer::Failed(m))) => Err(NixError::Failed { what, message: m }),
            (None, Err(Answer::TimedOut { secs })) => Err(NixError::TimedOut { what, secs }),
            (None, Err(Answer::Interrupted)) => Err(NixError::Interrupted { what }),
            (None, Err(a)) => Err(NixError::Failed {
                what,
                message: format!("{a:?}"),
            }),
        }
    }

    /// Resident memory of the worker, in bytes.
    pub fn rss(&self) -> u64 {
        self.running.as_ref().map_or(0, Running::rss_bytes)
    }

    /// Evaluates one host's `attr`. `max_rss`: kill the worker and answer
    /// [`Answer::OverLimit`] as soon as it holds more. `peak` is raised to
    /// the highest resident memory seen.
    pub fn eval(
        &mut self,
        host: &str,
        attr: HostAttr,
        max_rss: Option<u64>,
        timeout: Option<Duration>,
        peak: &mut u64,
    ) -> Answer {
        let h = quote_attr(host);
        let line = |n: u64| {
            format!(
                "builtins.toJSON (let cs = guardFlake.nixosConfigurations; in if !(cs ? {h}) then {{ guard = {n}; missing = true; }} else let t = cs.{h}.config.system.build.{}; in {{ guard = {n}; drv = t.drvPath; out = t.outPath; }})\n\"guard-sync-{n}\"\n",
                attr.name()
            )
        };
        let v = match self.ask(line, max_rss, timeout, peak) {
            Ok(v) => v,
            Err(a) => return a,
        };
        match serde_json::from_value::<Drv>(v) {
            Ok(d) => Answer::Ok(d),
            Err(e) => Answer::Failed(format!("unexpected answer from nix repl: {e}")),
        }
    }

    /// The module graph nix collected for one host (nixpkgs'
    /// `nixosConfigurations.<host>.graph`), watched like [`Worker::eval`].
    pub fn graph(
        &mut self,
        host: &str,
        max_rss: Option<u64>,
        timeout: Option<Duration>,
        peak: &mut u64,
    ) -> Answer {
        let h = quote_attr(host);
        let v = match self.ask(|n| graph_expr(n, &h), max_rss, timeout, peak) {
            Ok(v) => v,
            Err(a) => return a,
        };
        if v.get("nograph").is_some() {
            return Answer::NoGraph;
        }
        match serde_json::from_value::<NixGraph>(v) {
            Ok(g) => Answer::Graph(g),
            Err(e) => Answer::Failed(format!("unexpected module graph from nix repl: {e}")),
        }
    }

    /// One question about a host: `line(n)` is the repl input tagged `n`.
    /// The tagged value, or the answer that ends the question (an error, a
    /// missing host, a worker that stopped).
    fn ask(
        &mut self,
        line: impl FnOnce(u64) -> String,
        max_rss: Option<u64>,
        timeout: Option<Duration>,
        peak: &mut u64,
    ) -> Result<serde_json::Value, Answer> {
        self.seq += 1;
        let n = self.seq;
        let (value, r) = self.exchange_watched(&line(n), n, max_rss, timeout, peak);
        r?;
        self.evaluated += 1;
        // No value, only text: the error.
        let v = value.ok_or_else(|| Answer::Failed("nix repl printed no value".into()))?;
        if v.get("missing").is_some() {
            return Err(Answer::Missing);
        }
        Ok(v)
    }

    fn exchange(
        &mut self,
        input: &str,
        n: u64,
        max_rss: Option<u64>,
        timeout: Option<Duration>,
    ) -> (Option<serde_json::Value>, Result<(), Answer>) {
        let mut peak = 0;
        self.exchange_watched(input, n, max_rss, timeout, &mut peak)
    }

    /// Sends `input`, reads up to `"guard-sync-<n>"`: the tagged JSON value
    /// if one came, and `Err` with the error text or why the worker stopped.
    fn exchange_watched(
        &mut self,
        input: &str,
        n: u64,
        max_rss: Option<u64>,
        timeout: Option<Duration>,
        peak: &mut u64,
    ) -> (Option<serde_json::Value>, Result<(), Answer>) {
        let sent = self
            .stdin
            .as_mut()
            .map(|s| s.write_all(input.as_bytes()).and_then(|()| s.flush()));
        if !matches!(sent, Some(Ok(()))) {
            return (None, Err(self.died()));
        }
        let sync = format!("\"guard-sync-{n}\"");
        let start = Instant::now();
        let mut text: Vec<String> = Vec::new();
        let mut value = None;
        loop {
            match self.lines.recv_timeout(POLL) {
                Ok(line) => {
                    let t = line.trim();
                    if t == sync {
                        break;
                    }
                    if t.starts_with("nix-repl>") || t.starts_with("Welcome to Nix") {
                        continue;
                    }
                    if let Some(s) = parse_nix_string(t)
                        && let Ok(v) = serde_json::from_str::<serde_json::Value>(&s)
                        && v.get("guard").and_then(|g| g.as_u64()) == Some(n)
                    {
                        value = Some(v);
                        continue;
                    }
                    text.push(line);
                }
                Err(RecvTimeoutError::Disconnected) => return (None, Err(self.died())),
                Err(RecvTimeoutError::Timeout) => {}
            }
            if process::is_interrupted() {
                self.stop();
                return (None, Err(Answer::Interrupted));
            }
            let rss = self.rss();
            *peak = (*peak).max(rss);
            if let Some(limit) = max_rss
                && rss > limit
            {
                self.stop();
                return (None, Err(Answer::OverLimit { rss }));
            }
            if let Some(t) = timeout
                && start.elapsed() > t
            {
                self.stop();
                return (None, Err(Answer::TimedOut { secs: t.as_secs() }));
            }
        }
        if value.is_some() {
            return (value, Ok(()));
        }
        // Only an error of its own: nix also prints warnings that quote
        // retried errors ("warning: error: SQLite database ... is busy").
        let joined = text.join("\n");
        if text.iter().any(|l| l.trim_start().starts_with("error:")) {
            (None, Err(Answer::Failed(error_message(joined.as_bytes()))))
        } else {
            (None, Ok(()))
        }
    }

    fn died(&mut self) -> Answer {
        let status = self.running.take().and_then(Running::kill);
        let how = match status {
            Some(s) => match std::os::unix::process::ExitStatusExt::signal(&s) {
                Some(sig) => format!("nix repl was killed by signal {sig}"),
                None => format!("nix repl exited ({s})"),
            },
            None => "nix repl stopped".into(),
        };
        if process::is_interrupted() {
            Answer::Interrupted
        } else {
            Answer::Died(how)
        }
    }

    /// Kills the worker (it is replaced by a new one, if needed).
    pub fn stop(&mut self) {
        self.stdin = None;
        if let Some(r) = self.running.take() {
            r.kill();
        }
    }

    /// Ends the worker: closes its input so the repl exits, then reaps it.
    pub fn finish(mut self) {
        self.stdin = None;
        if let Some(r) = self.running.take() {
            // The repl exits at end of input; kill it if it does not soon.
            let deadline = Instant::now() + Duration::from_secs(2);
            while Instant::now() < deadline {
                match self.lines.recv_timeout(POLL) {
                    Err(RecvTimeoutError::Disconnected) => break,
                    _ => continue,
                }
            }
            r.kill();
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The value of a Nix string literal as the repl prints it (`"..."` with
/// `\"`, `\\`, `\n`, `\r`, `\t` and `\$` escapes), or `None`.
fn parse_nix_string(s: &str) -> Option<String> {
    let inner = s.strip_prefix('"')?.strip_suffix('"')?;
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next()? {
                'n' => out.push('\n'),
                'r' => out.push('\r'),
                't' => out.push('\t'),
                other => out.push(other),
            }
        } else if c == '"' {
            return None;
        } else {
            out.push(c);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nix_strings_are_unescaped() {
        assert_eq!(
            parse_nix_string(r#""{\"guard\":1,\"drv\":\"/nix/store/a.drv\"}""#).as_deref(),
            Some(r#"{"guard":1,"drv":"/nix/store/a.drv"}"#)
        );
        assert_eq!(
            parse_nix_string(r#""a\${b}\n""#).as_deref(),
            Some("a${b}\n")
        );
        assert_eq!(parse_nix_string("nix-repl> x"), None);
        assert_eq!(parse_nix_string(r#""a" + "b""#), None);
    }
}
