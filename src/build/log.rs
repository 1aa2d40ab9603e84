//! nix's `--log-format internal-json` log: each machine-readable stderr line
//! is `@nix ` followed by one JSON object (`start`, `stop`, `result`, `msg`;
//! integration-conventions.md 5.6, identical in 2.8 and current Nix). This
//! turns the stream into readable log lines for the host's log file and a
//! one-line status for progress display.

use std::collections::{HashMap, VecDeque};

use serde_json::Value;

/// Activity types (`start.type`) guard looks at.
mod activity {
    /// One derivation being built (fields: drv path, machine, round, rounds).
    pub const BUILD: u64 = 105;
    /// All builds of the invocation (its progress results count them).
    pub const BUILDS: u64 = 104;
    /// Substituting one path.
    pub const SUBSTITUTE: u64 = 108;
}

/// Result types (`result.type`) guard looks at.
mod result {
    pub const BUILD_LOG_LINE: u64 = 101;
    pub const SET_PHASE: u64 = 104;
    pub const PROGRESS: u64 = 105;
    pub const POST_BUILD_LOG_LINE: u64 = 107;
}

/// One parsed stderr line.
#[derive(Debug, Clone, PartialEq)]
pub enum LogEvent {
    /// An activity begins.
    Start {
        id: u64,
        kind: u64,
        level: u64,
        text: String,
        fields: Vec<Value>,
    },
    /// An activity ends.
    Stop { id: u64 },
    /// Progress or a log line of an activity.
    Result {
        id: u64,
        kind: u64,
        fields: Vec<Value>,
    },
    /// A message; `msg` has its ANSI escapes removed (errors start with
    /// `error:` and may span several lines).
    Msg { level: u64, msg: String },
    /// A line that is not `@nix {...}` (passed through verbatim).
    Text(String),
}

/// Parses one stderr line. Malformed `@nix` lines are kept as text.
pub fn parse_line(line: &str) -> LogEvent {
    let Some(json) = line.strip_prefix("@nix ") else {
        return LogEvent::Text(line.to_string());
    };
    let Ok(v) = serde_json::from_str::<Value>(json) else {
        return LogEvent::Text(line.to_string());
    };
    let num = |k: &str| v.get(k).and_then(Value::as_u64).unwrap_or(0);
    let fields = || {
        v.get("fields")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    match v.get("action").and_then(Value::as_str) {
        Some("start") => LogEvent::Start {
            id: num("id"),
            kind: num("type"),
            level: num("level"),
            text: v
                .get("text")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            fields: fields(),
        },
        Some("stop") => LogEvent::Stop { id: num("id") },
        Some("result") => LogEvent::Result {
            id: num("id"),
            kind: num("type"),
            fields: fields(),
        },
        Some("msg") => LogEvent::Msg {
            level: num("level"),
            msg: strip_ansi(v.get("msg").and_then(Value::as_str).unwrap_or_default()),
        },
        _ => LogEvent::Text(line.to_string()),
    }
}

/// `/nix/store/<hash>-nixos-system-web.drv` -> `nixos-system-web`.
pub fn drv_name(path: &str) -> &str {
    let base = path.rsplit('/').next().unwrap_or(path);
    let base = base.strip_suffix(".drv").unwrap_or(base);
    match base.split_once('-') {
        Some((hash, name)) if hash.len() == 32 => name,
        _ => base,
    }
}

struct Activity {
    kind: u64,
    /// The derivation or path name, for build and substitute activities.
    name: Option<String>,
    phase: Option<String>,
}

/// How many log lines [`LogState::tail`] keeps.
pub const TAIL_LINES: usize = 20;

/// What one nix process's log has said so far.
#[derive(Default)]
pub struct LogState {
    activities: HashMap<u64, Activity>,
    /// Running build activities, oldest first.
    running: Vec<u64>,
    /// `[done, expected, running, failed]` of the builds activity.
    builds: [u64; 4],
    tail: VecDeque<String>,
    /// Error messages (level 0), ANSI removed.
    pub errors: Vec<String>,
}

/// What feeding one line produced.
#[derive(Debug, Default, PartialEq)]
pub struct Fed {
    /// Readable lines for the log file.
    pub lines: Vec<String>,
    /// A derivation build started (its name), for grouped CI output.
    pub build_started: Option<String>,
    /// The one-line status changed.
    pub status_changed: bool,
}

impl LogState {
    /// A fresh state.
    pub fn new() -> LogState {
        LogState::default()
    }

    /// Consumes one stderr line.
    pub fn feed(&mut self, line: &str) -> Fed {
        let mut fed = Fed::default();
        match parse_line(line) {
            LogEvent::Text(t) => fed.lines.push(t),
            LogEvent::Msg { level, msg } => {
                if level == 0 {
                    self.errors.push(msg.trim().to_string());
                }
                fed.lines.extend(msg.lines().map(str::to_string));
            }
            LogEvent::Start {
                id,
                kind,
                level,
                text,
                fields,
            } => {
                let name = match kind {
                    activity::BUILD | activity::SUBSTITUTE => fields
                        .first()
                        .and_then(Value::as_str)
                        .map(|p| drv_name(p).to_string()),
                    _ => None,
                };
                if kind == activity::BUILD {
                    self.running.push(id);
                    fed.build_started = name.clone();
                    fed.status_changed = true;
                }
                // Level 3 (info) and below is what nix shows by default;
                // the rest (queries, downloads of metadata) is noise here.
                if !text.is_empty() && level <= 3 {
                    fed.lines.push(text);
                }
                self.activities.insert(
                    id,
                    Activity {
                        kind,
                        name,
                        phase: None,
                    },
                );
            }
            LogEvent::Stop { id } => {
                if let Some(a) = self.activities.remove(&id)
                    && a.kind == activity::BUILD
                {
                    self.running.retain(|r| *r != id);
                    fed.status_changed = true;
                }
            }
            LogEvent::Result { id, kind, fields } => match kind {
                result::BUILD_LOG_LINE | result::POST_BUILD_LOG_LINE => {
                    let text = fields.first().and_then(Value::as_str).unwrap_or_default();
                    let name = self
                        .activities
                        .get(&id)
                        .and_then(|a| a.name.as_deref())
                        .unwrap_or("nix");
                    fed.lines.push(format!("{name}> {}", strip_ansi(text)));
                }
                result::SET_PHASE => {
                    if let Some(a) = self.activities.get_mut(&id) {
                        let phase = fields.first().and_then(Value::as_str).map(String::from);
                        if let (Some(name), Some(p)) = (&a.name, &phase) {
                            fed.lines.push(format!("{name}> ({p})"));
                        }
                        a.phase = phase;
                        fed.status_changed = true;
                    }
                }
                result::PROGRESS
                    if self.activities.get(&id).map(|a| a.kind) == Some(activity::BUILDS) =>
                {
                    for (slot, v) in self.builds.iter_mut().zip(&fields) {
                        *slot = v.as_u64().unwrap_or(0);
                    }
                    fed.status_changed = true;
                }
                _ => {}
            },
        }
        for l in &fed.lines {
            if self.tail.len() == TAIL_LINES {
                self.tail.pop_front();
            }
            self.tail.push_back(l.clone());
        }
        fed
    }

    /// One line for a progress display: the newest running build, its
    /// phase, and how many of the invocation's builds are done.
    pub fn status(&self) -> String {
        let [done, expected, _, failed] = self.builds;
        let counts = if expected > 0 {
            let failed = if failed > 0 {
                format!(", {failed} failed")
            } else {
                String::new()
            };
            format!(" [{done}/{expected}{failed}]")
        } else {
            String::new()
        };
        let current = self
            .running
            .last()
            .and_then(|id| self.activities.get(id))
            .map(|a| {
                let name = a.name.as_deref().unwrap_or("derivation");
                match &a.phase {
                    Some(p) => format!("building {name} ({p})"),
                    None => format!("building {name}"),
                }
            });
        match current {
            Some(c) => format!("{c}{counts}"),
            None if expected > 0 => format!("waiting{counts}"),
            None => "starting".to_string(),
        }
    }

    /// The last [`TAIL_LINES`] readable lines.
    pub fn tail(&self) -> Vec<String> {
        self.tail.iter().cloned().collect()
    }
}

/// Removes ANSI CSI escapes (nix colours its messages).
pub use crate::nix::cli::strip_ansi;

/// Replaces every secret the scanner finds in one line of nix output by its
/// redacted form. nix quotes the source lines around an evaluation error,
/// so a plaintext secret next to a broken line would otherwise reach the
/// report, the log file, the job summary and the annotations.
pub fn redact_secrets(line: &str) -> String {
    static SCANNER: std::sync::OnceLock<Option<crate::secrets::scan::Scanner>> =
        std::sync::OnceLock::new();
    let Some(scanner) = SCANNER
        .get_or_init(|| crate::secrets::scan::Scanner::new(&crate::config::Config::default()).ok())
    else {
        return line.to_string();
    };
    let found = scanner.scan_located("nix-output.log", line.as_bytes(), None, 0, None);
    if found.is_empty() {
        return line.to_string();
    }
    // Columns count characters (1-based); a region reaching past this line
    // (a key block) redacts the rest of it.
    let chars: Vec<char> = line.chars().collect();
    let mut hide = vec![false; chars.len()];
    for l in &found {
        let start = l.finding.column.saturating_sub(1);
        let end = if l.end_line > l.finding.line {
            chars.len()
        } else {
            l.end_column.saturating_sub(1).min(chars.len())
        };
        for h in hide.iter_mut().take(end).skip(start) {
            *h = true;
        }
    }
    let mut out = String::with_capacity(line.len());
    let mut i = 0;
    while i < chars.len() {
        if hide[i] {
            let j = (i..chars.len()).find(|&j| !hide[j]).unwrap_or(chars.len());
            let secret: String = chars[i..j].iter().collect();
            out.push_str(crate::report::Redacted::new(&secret).as_str());
            i = j;
        } else {
            out.push(chars[i]);
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A shortened real 2.8 log of a failing build.
    const FAILING: &[&str] = &[
        r#"@nix {"action":"start","id":1,"level":0,"text":"","type":104}"#,
        r#"@nix {"action":"result","fields":[0,1,0,0],"id":1,"type":105}"#,
        r#"@nix {"action":"start","id":6,"level":6,"text":"querying info about missing paths","type":0}"#,
        r#"@nix {"action":"stop","id":6}"#,
        r#"@nix {"action":"start","fields":["/nix/store/2b605hl51xis8xhvb8243k0z14qc44ay-nixos-system-web.drv","",1,1],"id":7,"level":3,"parent":0,"text":"building '/nix/store/2b605hl51xis8xhvb8243k0z14qc44ay-nixos-system-web.drv'","type":105}"#,
        r#"@nix {"action":"result","fields":["buildPhase"],"id":7,"type":104}"#,
        r#"@nix {"action":"result","fields":["\u001b[1mmake: *** [all] Error 1\u001b[0m"],"id":7,"type":101}"#,
        r#"@nix {"action":"stop","id":7}"#,
        r#"@nix {"action":"msg","column":null,"file":null,"level":0,"line":null,"msg":"\u001b[31;1merror:\u001b[0m builder for '/nix/store/2b605hl51xis8xhvb8243k0z14qc44ay-nixos-system-web.drv' failed with exit code 1","raw_msg":"builder for '…' failed with exit code 1"}"#,
    ];

    #[test]
    fn parses_each_action() {
        assert!(matches!(
            parse_line(FAILING[0]),
            LogEvent::Start {
                id: 1,
                kind: 104,
                ..
            }
        ));
        assert_eq!(parse_line(FAILING[3]), LogEvent::Stop { id: 6 });
        assert!(matches!(
            parse_line(FAILING[1]),
            LogEvent::Result {
                id: 1,
                kind: 105,
                ..
            }
        ));
        match parse_line(FAILING[8]) {
            LogEvent::Msg { level: 0, msg } => {
                assert!(msg.starts_with("error: builder for"), "{msg}");
                assert!(!msg.contains('\x1b'));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            parse_line("warning: Git tree is dirty"),
            LogEvent::Text("warning: Git tree is dirty".into())
        );
        assert_eq!(
            parse_line("@nix {broken"),
            LogEvent::Text("@nix {broken".into())
        );
    }

    #[test]
    fn state_tracks_builds_phases_log_lines_and_errors() {
        let mut s = LogState::new();
        let mut lines = Vec::new();
        let mut started = Vec::new();
        for (i, l) in FAILING.iter().enumerate() {
            let fed = s.feed(l);
            lines.extend(fed.lines);
            started.extend(fed.build_started);
            if i == 5 {
                assert_eq!(s.status(), "building nixos-system-web (buildPhase) [0/1]");
            }
        }
        assert_eq!(started, vec!["nixos-system-web"]);
        assert!(
            lines.contains(&"nixos-system-web> make: *** [all] Error 1".to_string()),
            "{lines:?}"
        );
        assert!(
            !lines.iter().any(|l| l.contains("querying info")),
            "{lines:?}"
        );
        assert_eq!(s.errors.len(), 1);
        assert!(s.errors[0].contains("failed with exit code 1"));
        assert_eq!(s.tail().last(), lines.last());
        assert_eq!(s.status(), "waiting [0/1]");
    }

    #[test]
    fn tail_is_bounded() {
        let mut s = LogState::new();
        for i in 0..100 {
            s.feed(&format!("line {i}"));
        }
        let t = s.tail();
        assert_eq!(t.len(), TAIL_LINES);
        assert_eq!(t.last().unwrap(), "line 99");
    }

    #[test]
    fn drv_names() {
        assert_eq!(
            drv_name("/nix/store/2b605hl51xis8xhvb8243k0z14qc44ay-nixos-system-web.drv"),
            "nixos-system-web"
        );
        assert_eq!(drv_name("odd-name"), "odd-name");
    }
}
