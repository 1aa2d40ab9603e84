//! The GitHub Actions environment (docs/integration-conventions.md, section 3),
//! read only: the variables guard looks at and which revisions an event
//! asks guard to compare. What guard writes for Actions (annotations,
//! outputs, the step summary) is in `report::github`; git is asked nothing
//! here (the caller resolves revisions).

use std::io;
use std::path::PathBuf;

use serde_json::Value;

/// Errors reading the event payload.
#[derive(Debug, thiserror::Error)]
pub enum GithubError {
    #[error("cannot read the event payload {path} ($GITHUB_EVENT_PATH): {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("the event payload {path} ($GITHUB_EVENT_PATH) is not JSON: {message}")]
    Json { path: PathBuf, message: String },
    #[error("the {event} event payload has no {field}")]
    Missing { event: String, field: &'static str },
}

/// The variables of the Actions environment guard reads. Empty values count
/// as unset.
#[derive(Debug, Clone, Default)]
pub struct Env {
    /// `GITHUB_ACTIONS=true`.
    pub actions: bool,
    pub event_name: Option<String>,
    pub event_path: Option<PathBuf>,
    pub sha: Option<String>,
    pub output: Option<PathBuf>,
    pub step_summary: Option<PathBuf>,
}

impl Env {
    /// Reads the process environment.
    pub fn from_process() -> Env {
        let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
        let text = |k: &str| var(k).map(|v| v.to_string_lossy().into_owned());
        Env {
            actions: text("GITHUB_ACTIONS").as_deref() == Some("true"),
            event_name: text("GITHUB_EVENT_NAME"),
            event_path: var("GITHUB_EVENT_PATH").map(PathBuf::from),
            sha: text("GITHUB_SHA"),
            output: var("GITHUB_OUTPUT").map(PathBuf::from),
            step_summary: var("GITHUB_STEP_SUMMARY").map(PathBuf::from),
        }
    }

    /// The event payload, when the environment names one.
    pub fn payload(&self) -> Result<Option<Value>, GithubError> {
        let Some(path) = &self.event_path else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(path).map_err(|source| GithubError::Read {
            path: path.clone(),
            source,
        })?;
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| GithubError::Json {
                path: path.clone(),
                message: e.to_string(),
            })
    }
}

/// What an event asks guard to compare. Revisions are as the payload gives
/// them (full hex ids); the caller resolves them and decides the fallbacks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventRange {
    /// `merge-base(base, head)..head`.
    Compare {
        base: String,
        head: String,
        /// `push` with `forced: true`: `base` may be gone or unrelated.
        forced: bool,
    },
    /// A push that created a branch: `before` is all zeros. Compare with
    /// the default branch when it is known and not the pushed branch.
    NewBranch {
        head: String,
        default_branch: Option<String>,
        /// The pushed ref (`refs/heads/x`).
        pushed_ref: Option<String>,
    },
    /// A push that deleted a branch: nothing to judge.
    Deleted,
    /// An event without a base (`workflow_dispatch`, `schedule`, ...).
    NoBase { head: Option<String> },
}

fn is_zero(sha: &str) -> bool {
    !sha.is_empty() && sha.bytes().all(|b| b == b'0')
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut cur = v;
    for k in path {
        cur = cur.get(k)?;
    }
    cur.as_str().filter(|s| !s.is_empty())
}

/// The comparison an event asks for (docs/integration-conventions.md 3.5).
pub fn event_range(
    event: &str,
    payload: &Value,
    github_sha: Option<&str>,
) -> Result<EventRange, GithubError> {
    let missing = |field| GithubError::Missing {
        event: event.to_string(),
        field,
    };
    match event {
        "push" => {
            if payload.get("deleted").and_then(Value::as_bool) == Some(true) {
                return Ok(EventRange::Deleted);
            }
            let head = str_at(payload, &["after"])
                .filter(|s| !is_zero(s))
                .or(github_sha)
                .ok_or_else(|| missing("after"))?
                .to_string();
            let before = str_at(payload, &["before"]);
            let created = payload.get("created").and_then(Value::as_bool) == Some(true);
            match before {
                Some(b) if !is_zero(b) && !created => Ok(EventRange::Compare {
                    base: b.to_string(),
                    head,
                    forced: payload.get("forced").and_then(Value::as_bool) == Some(true),
                }),
                _ => Ok(EventRange::NewBranch {
                    head,
                    default_branch: str_at(payload, &["repository", "default_branch"])
                        .map(String::from),
                    pushed_ref: str_at(payload, &["ref"]).map(String::from),
                }),
            }
        }
        "pull_request" | "pull_request_target" => {
            let base = str_at(payload, &["pull_request", "base", "sha"])
                .ok_or_else(|| missing("pull_request.base.sha"))?;
            let head = str_at(payload, &["pull_request", "head", "sha"])
                .ok_or_else(|| missing("pull_request.head.sha"))?;
            Ok(EventRange::Compare {
                base: base.to_string(),
                head: head.to_string(),
                forced: false,
            })
        }
        "merge_group" => {
            let base = str_at(payload, &["merge_group", "base_sha"])
                .ok_or_else(|| missing("merge_group.base_sha"))?;
            let head = str_at(payload, &["merge_group", "head_sha"])
                .ok_or_else(|| missing("merge_group.head_sha"))?;
            Ok(EventRange::Compare {
                base: base.to_string(),
                head: head.to_string(),
                forced: false,
            })
        }
        _ => Ok(EventRange::NoBase {
            head: github_sha.map(String::from),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const A: &str = "1111111111111111111111111111111111111111";
    const B: &str = "2222222222222222222222222222222222222222";
    const Z: &str = "0000000000000000000000000000000000000000";

    #[test]
    fn push_compares_before_with_after() {
        let p = json!({"before": A, "after": B, "ref": "refs/heads/main"});
        assert_eq!(
            event_range("push", &p, None).unwrap(),
            EventRange::Compare {
                base: A.into(),
                head: B.into(),
                forced: false
            }
        );
        let p = json!({"before": A, "after": B, "forced": true});
        assert!(matches!(
            event_range("push", &p, None).unwrap(),
            EventRange::Compare { forced: true, .. }
        ));
    }

    #[test]
    fn new_branch_and_deletion() {
        let p = json!({"before": Z, "after": B, "created": true, "ref": "refs/heads/feature",
                       "repository": {"default_branch": "main"}});
        assert_eq!(
            event_range("push", &p, None).unwrap(),
            EventRange::NewBranch {
                head: B.into(),
                default_branch: Some("main".into()),
                pushed_ref: Some("refs/heads/feature".into())
            }
        );
        let p = json!({"before": A, "after": Z, "deleted": true});
        assert_eq!(event_range("push", &p, None).unwrap(), EventRange::Deleted);
    }

    #[test]
    fn pull_request_uses_base_and_head_shas_not_the_test_merge() {
        let p = json!({"pull_request": {"base": {"sha": A, "ref": "main"}, "head": {"sha": B}}});
        assert_eq!(
            event_range("pull_request", &p, Some("3333")).unwrap(),
            EventRange::Compare {
                base: A.into(),
                head: B.into(),
                forced: false
            }
        );
        let err = event_range("pull_request", &json!({}), None).unwrap_err();
        assert!(err.to_string().contains("pull_request.base.sha"), "{err}");
    }

    #[test]
    fn other_events_have_no_base() {
        assert_eq!(
            event_range("workflow_dispatch", &json!({}), Some(B)).unwrap(),
            EventRange::NoBase {
                head: Some(B.into())
            }
        );
    }
}
