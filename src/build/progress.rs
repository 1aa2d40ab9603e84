//! Live progress of a build run, on stderr: an indicatif multi-progress
//! display (one spinner per running host) on a terminal, plain
//! `[host] started/ok/failed (12.3s)` lines otherwise (CI logs), nothing
//! with `--quiet`.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::report::{BuildHost, BuildStatus};

/// Receives what the runner does. Implementations must be cheap: they are
/// called from the threads reading nix's output.
pub trait Progress: Send + Sync {
    /// A step that concerns all hosts began (evaluation, store queries).
    fn phase(&self, text: &str);
    /// That step ended.
    fn phase_done(&self, text: &str);
    /// Work on a host began.
    fn started(&self, host: &str, what: &str);
    /// A host's one-line status changed.
    fn status(&self, host: &str, status: &str);
    /// A derivation build started for a host (plain mode prints these:
    /// nix's own default output, grouped by host).
    fn build_started(&self, host: &str, drv: &str);
    /// A host is done (ok, failed or skipped).
    fn finished(&self, host: &BuildHost);
    /// Removes any live display before the report is printed.
    fn clear(&self);
}

/// The right progress for stderr: bars on a terminal, lines otherwise.
pub fn for_stderr(quiet: bool) -> Box<dyn Progress> {
    if quiet {
        Box::new(Silent)
    } else if std::io::stderr().is_terminal() {
        Box::new(Bars::new())
    } else {
        Box::new(Lines)
    }
}

/// No output.
pub struct Silent;

impl Progress for Silent {
    fn phase(&self, _: &str) {}
    fn phase_done(&self, _: &str) {}
    fn started(&self, _: &str, _: &str) {}
    fn status(&self, _: &str, _: &str) {}
    fn build_started(&self, _: &str, _: &str) {}
    fn finished(&self, _: &BuildHost) {}
    fn clear(&self) {}
}

/// One line per event, for logs (no terminal control codes).
pub struct Lines;

fn seconds(ms: u64) -> String {
    format!("{:.1}s", ms as f64 / 1000.0)
}

/// `ok (12.3s)`, `failed (1.0s): reason`, `skipped: reason`.
fn outcome(h: &BuildHost) -> String {
    let reason = h
        .reason
        .as_deref()
        .and_then(|r| r.lines().next())
        .unwrap_or_default();
    match h.status {
        BuildStatus::Ok => format!("ok ({})", seconds(h.duration_ms)),
        BuildStatus::Failed => format!("failed ({}): {reason}", seconds(h.duration_ms)),
        BuildStatus::Skipped => format!("skipped: {reason}"),
    }
}

impl Lines {
    fn line(&self, s: &str) {
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "{s}");
    }
}

impl Progress for Lines {
    fn phase(&self, text: &str) {
        self.line(&format!("guard: {text}"));
    }
    fn phase_done(&self, text: &str) {
        self.line(&format!("guard: {text}"));
    }
    fn started(&self, host: &str, what: &str) {
        self.line(&format!("[{host}] started ({what})"));
    }
    fn status(&self, _: &str, _: &str) {}
    fn build_started(&self, host: &str, drv: &str) {
        self.line(&format!("[{host}] building {drv}"));
    }
    fn finished(&self, h: &BuildHost) {
        self.line(&format!("[{}] {}", h.name, outcome(h)));
    }
    fn clear(&self) {}
}

/// indicatif spinners, one per running host plus one for global phases.
pub struct Bars {
    multi: MultiProgress,
    bars: Mutex<HashMap<String, ProgressBar>>,
}

impl Default for Bars {
    fn default() -> Self {
        Bars::new()
    }
}

impl Bars {
    /// A display drawing on stderr.
    pub fn new() -> Bars {
        Bars {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
            bars: Mutex::new(HashMap::new()),
        }
    }

    fn bars(&self) -> std::sync::MutexGuard<'_, HashMap<String, ProgressBar>> {
        self.bars.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn spinner(&self, key: &str, prefix: &str, msg: &str) {
        let pb = self.multi.add(ProgressBar::new_spinner());
        if let Ok(style) = ProgressStyle::with_template("{spinner} {prefix:.bold} {msg} {elapsed}")
        {
            pb.set_style(style);
        }
        pb.set_prefix(prefix.to_string());
        pb.set_message(msg.to_string());
        pb.enable_steady_tick(Duration::from_millis(120));
        if let Some(old) = self.bars().insert(key.to_string(), pb) {
            old.finish_and_clear();
            self.multi.remove(&old);
        }
    }

    fn done(&self, key: &str, line: &str) {
        if let Some(pb) = self.bars().remove(key) {
            pb.finish_and_clear();
            self.multi.remove(&pb);
        }
        let _ = self.multi.println(line);
    }
}

const PHASE: &str = "\u{0}phase";

impl Progress for Bars {
    fn phase(&self, text: &str) {
        self.spinner(PHASE, "guard", text);
    }
    fn phase_done(&self, text: &str) {
        self.done(PHASE, &format!("guard: {text}"));
    }
    fn started(&self, host: &str, what: &str) {
        self.spinner(host, host, what);
    }
    fn status(&self, host: &str, status: &str) {
        if let Some(pb) = self.bars().get(host) {
            pb.set_message(status.to_string());
        }
    }
    fn build_started(&self, _: &str, _: &str) {}
    fn finished(&self, h: &BuildHost) {
        let mark = match h.status {
            BuildStatus::Ok => "✓",
            BuildStatus::Failed => "✗",
            BuildStatus::Skipped => "-",
        };
        self.done(&h.name, &format!("{mark} {} {}", h.name, outcome(h)));
    }
    fn clear(&self) {
        for (_, pb) in self.bars().drain() {
            pb.finish_and_clear();
        }
        let _ = self.multi.clear();
    }
}
