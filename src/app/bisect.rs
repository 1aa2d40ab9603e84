//! `guard bisect`: the first commit at which a host fails, testing only the
//! commits that can have changed it, from git objects (never the user's
//! work tree or bisect state), never building one drvPath twice.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command as Process, Stdio};

use anyhow::{Context as _, Result, bail};

use super::{Context, exit};
use crate::bisect::{Conclusion, How, Search, Tested, Verdict, range_commits};
use crate::build::log::LogState;
use crate::build::memory::FailedDrvs;
use crate::cli::{Format, Level};
use crate::git::{FileMode, ObjectId, SnapshotSpec};
use crate::nix::cli::{HostAttr, Nix, NixError, RunLimits, flake_url, is_interrupted};

/// `guard bisect` arguments.
pub struct BisectArgs<'a> {
    pub host: &'a str,
    pub good: &'a str,
    pub bad: Option<&'a str>,
    pub level: Option<Level>,
    pub format: Format,
    pub run: Option<&'a str>,
    pub skip_exit_codes: &'a [i32],
    pub log: Option<&'a Path>,
    pub replay: Option<&'a Path>,
}

/// Decides good/bad/skip for one commit, remembering results by drvPath.
struct Tester<'a> {
    ctx: &'a Context,
    host: &'a str,
    level: Level,
    run: Option<&'a str>,
    skip_codes: &'a [i32],
    nix: Option<Nix>,
    /// drvPath -> (verdict, log tail) of every drvPath decided by nix.
    known: HashMap<String, (Verdict, Vec<String>)>,
    /// Log tails of failed commits.
    tails: HashMap<ObjectId, Vec<String>>,
    /// Derivations seen failing before (by any guard command).
    failed: FailedDrvs,
    /// nix evaluations (level eval) or builds that were not deduplicated.
    builds: usize,
    deduped: usize,
}

impl Tester<'_> {
    fn test(&mut self, commit: ObjectId) -> Result<Tested> {
        let mut tested = Tested {
            commit,
            result: Verdict::Good,
            how: How::Ran,
            drv_path: None,
            note: None,
        };
        if self.level != Level::None {
            tested = self.test_nix(commit)?;
            if tested.result != Verdict::Good {
                return Ok(tested);
            }
        }
        if let Some(cmd) = self.run {
            let (verdict, note) = self.run_command(commit, cmd)?;
            tested.result = verdict;
            tested.how = How::Ran;
            tested.note = note;
        }
        Ok(tested)
    }

    fn test_nix(&mut self, commit: ObjectId) -> Result<Tested> {
        let nix = self.nix.as_ref().expect("nix is detected for nix levels");
        let url = flake_url(
            &self.ctx.root,
            &self.ctx.flake_dir,
            Some(&commit.to_string()),
        );
        let attr = if self.level == Level::Vm {
            HostAttr::Vm
        } else {
            HostAttr::Toplevel
        };
        let mut tested = Tested {
            commit,
            result: Verdict::Good,
            how: How::Evaluated,
            drv_path: None,
            note: None,
        };
        let snapshot = self.ctx.repo.snapshot(SnapshotSpec::Commit(commit)).ok();
        let (evaluated, _cached) = crate::build::cache::eval_one(
            self.ctx.repo.git_dir(),
            snapshot.as_ref(),
            &self.ctx.flake_dir,
            &self.ctx.config,
            &self.ctx.parse_cache(),
            self.host,
            attr,
            nix,
            &self.ctx.build.eval,
            || nix.eval_host(&url, self.host, attr, RunLimits::default()),
        );
        let drv = match evaluated {
            Ok(d) => d,
            Err(e) => {
                self.builds += 1;
                let (verdict, note) = classify(&e);
                tested.result = verdict;
                tested.note = Some(note.clone());
                self.tails.insert(commit, vec![note]);
                return Ok(tested);
            }
        };
        tested.drv_path = Some(drv.drv.clone());
        if let Some((verdict, tail)) = self.known.get(&drv.drv) {
            self.deduped += 1;
            tested.result = *verdict;
            tested.how = How::EvalDeduped;
            if *verdict == Verdict::Bad {
                self.tails.insert(commit, tail.clone());
            }
            return Ok(tested);
        }
        if self.level == Level::Eval {
            self.builds += 1;
            self.known.insert(drv.drv, (Verdict::Good, Vec::new()));
            return Ok(tested);
        }
        // A derivation guard saw fail before fails again (its build is a
        // function of the derivation): usually --bad, which `guard check`
        // or CI just reported.
        if self.failed.contains(&drv.drv) {
            tested.result = Verdict::Bad;
            tested.how = How::KnownFailure;
            tested.note = Some("this drvPath failed to build before".into());
            self.known.insert(drv.drv, (Verdict::Bad, Vec::new()));
            return Ok(tested);
        }
        // A deployed generation (usually --good) is in the store already:
        // an output that exists was built successfully.
        if nix
            .valid_paths(std::slice::from_ref(&drv.out))?
            .contains(&drv.out)
        {
            tested.how = How::InStore;
            self.known.insert(drv.drv, (Verdict::Good, Vec::new()));
            return Ok(tested);
        }
        self.builds += 1;
        tested.how = How::Built;
        let mut log = LogState::new();
        match nix.build_drv(&drv.drv, RunLimits::default(), &mut |line| {
            log.feed(line);
        }) {
            Ok(_) => {
                self.known.insert(drv.drv, (Verdict::Good, Vec::new()));
            }
            Err(e) => {
                let (verdict, note) = classify(&e);
                tested.result = verdict;
                tested.note = Some(note);
                let tail = log.tail();
                if verdict == Verdict::Bad {
                    self.failed.record(&drv.drv);
                    self.known.insert(drv.drv, (verdict, tail.clone()));
                }
                self.tails.insert(commit, tail);
            }
        }
        Ok(tested)
    }

    /// Runs the user's command in a checkout of `commit` made from git
    /// objects under the git dir (removed afterwards), with git bisect run's
    /// exit-code meaning: 0 good, 125 skip, 1-127 bad, above that: abort.
    fn run_command(&mut self, commit: ObjectId, cmd: &str) -> Result<(Verdict, Option<String>)> {
        let dir = self.ctx.repo.git_dir().join("guard").join(format!(
            "bisect-{}-{}",
            std::process::id(),
            short(commit)
        ));
        let checkout = TempCheckout::create(self.ctx, commit, &dir)?;
        // The user's own command (like `git bisect run`), not repository
        // text; run through the registry, so Ctrl-C stops it with its tree.
        let mut c = Process::new("sh");
        c.arg("-c")
            .arg(cmd)
            .current_dir(checkout.path())
            .env("GUARD_BISECT_COMMIT", commit.to_string())
            .stdin(Stdio::null());
        let finished = crate::process::run(
            c,
            crate::process::Stdout::Discard,
            Default::default(),
            &mut |_| {},
        );
        let (status, err) = match finished {
            Ok(f) => (f.status, f.stderr),
            Err(crate::process::RunError::Interrupted) => bail!("interrupted"),
            Err(e) => bail!("cannot run {cmd:?}: {e}"),
        };
        drop(checkout);
        let tail: Vec<String> = err.lines().rev().take(20).map(String::from).collect();
        let tail: Vec<String> = tail.into_iter().rev().collect();
        match status.code() {
            Some(0) => Ok((Verdict::Good, None)),
            Some(c) if c == 125 || self.skip_codes.contains(&c) => {
                Ok((Verdict::Skip, Some(format!("--run exited {c}"))))
            }
            Some(c) if (1..=127).contains(&c) => {
                self.tails.insert(commit, tail);
                Ok((Verdict::Bad, Some(format!("--run exited {c}"))))
            }
            Some(c) => bail!(
                "--run exited {c} at {commit}: aborting the bisect (git bisect run treats codes above 127 as fatal)"
            ),
            None => bail!("--run was killed by a signal at {commit}: aborting the bisect"),
        }
    }
}

/// A nix failure is the host's (bad) unless it is about nix itself.
fn classify(e: &NixError) -> (Verdict, String) {
    let text = e.to_string();
    let first = text
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("nix failed")
        .to_string();
    let transient = [
        "No space left",
        "cannot connect",
        "Connection refused",
        "interrupted",
        "timed out",
        "killed",
        "unable to download",
        "could not find",
    ];
    match e {
        NixError::Missing(_) | NixError::Spawn(_) => (Verdict::Skip, first),
        _ if transient.iter().any(|t| text.contains(t)) => (Verdict::Skip, first),
        _ => (Verdict::Bad, first),
    }
}

/// A plain directory with a commit's files, written from git objects;
/// removed when dropped.
struct TempCheckout(PathBuf);

impl TempCheckout {
    fn create(ctx: &Context, commit: ObjectId, dir: &Path) -> Result<TempCheckout> {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let guard = TempCheckout(dir.to_path_buf());
        let snap = ctx.repo.snapshot(SnapshotSpec::Commit(commit))?;
        for (path, entry) in snap.entries() {
            let rel = crate::git::ByteSlice::to_str_lossy(path.as_slice()).into_owned();
            let target = dir.join(&rel);
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent)?;
            }
            match entry.mode {
                FileMode::Gitlink => std::fs::create_dir_all(&target)?,
                FileMode::Symlink => {
                    let link = snap.read(path.as_ref())?.unwrap_or_default();
                    std::os::unix::fs::symlink(String::from_utf8_lossy(&link).as_ref(), &target)?;
                }
                FileMode::Regular | FileMode::Executable => {
                    let bytes = snap.read(path.as_ref())?.unwrap_or_default();
                    std::fs::write(&target, bytes)?;
                    if entry.mode == FileMode::Executable {
                        use std::os::unix::fs::PermissionsExt;
                        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o755))?;
                    }
                }
            }
        }
        Ok(guard)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempCheckout {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
        // Leave no empty `guard/` directory behind either.
        if let Some(parent) = self.0.parent() {
            let _ = std::fs::remove_dir(parent);
        }
    }
}

fn short(id: ObjectId) -> String {
    id.to_string()[..12].to_string()
}

/// `guard bisect`.
pub fn bisect(ctx: &Context, args: BisectArgs) -> Result<i32> {
    crate::build::signals::install().context("cannot install the signal handler")?;
    let level = level_of(ctx, &args)?;
    let (good, bad, commits) = commits_of(ctx, &args)?;
    let candidates: Vec<&crate::bisect::RangeCommit> =
        commits.iter().filter(|c| !c.reasons.is_empty()).collect();

    let nix = if level == Level::None {
        None
    } else {
        Some(Nix::detect()?)
    };
    let mut tester = Tester {
        ctx,
        host: args.host,
        level,
        run: args.run,
        skip_codes: args.skip_exit_codes,
        nix,
        known: HashMap::new(),
        tails: HashMap::new(),
        failed: FailedDrvs::load(ctx.repo.git_dir()),
        builds: 0,
        deduped: 0,
    };
    let replayed = load_replay(args.replay, &mut tester.known)?;
    let mut log_file = open_log(args.log)?;
    let mut tested: Vec<Tested> = Vec::new();
    let human = args.format == Format::Human;
    let mut err = std::io::stderr().lock();
    let mut step = |tester: &mut Tester, commit: ObjectId, what: &str| -> Result<Tested> {
        let t = match replayed.get(&commit) {
            Some(t) => Tested {
                how: How::Replayed,
                ..t.clone()
            },
            None => tester.test(commit)?,
        };
        if is_interrupted() {
            bail!(
                "interrupted{}",
                match args.log {
                    Some(p) => format!("; resume with --replay {}", p.display()),
                    None => String::new(),
                }
            );
        }
        if let Some(f) = log_file.as_mut()
            && t.how != How::Replayed
        {
            writeln!(f, "{}", serde_json::to_string(&t)?)?;
        }
        let info = ctx.repo.commit_info(commit)?;
        writeln!(
            err,
            "{what} {} {}: {} ({}{})",
            short(commit),
            info.subject,
            verdict_name(t.result),
            how_name(t.how),
            t.note
                .as_deref()
                .map(|n| format!(": {n}"))
                .unwrap_or_default()
        )?;
        tested.push(t.clone());
        Ok(t)
    };

    // --good and --bad are confirmed when the answer depends on them, not
    // up front: a search that saw a good and a bad candidate needs neither
    // (git bisect trusts both; guard checks whichever the answer rests on).
    let fine_at_bad = |out: &mut dyn Write| -> Result<i32> {
        writeln!(
            out,
            "{} is fine at {}: nothing to bisect",
            args.host,
            args.bad.unwrap_or("HEAD")
        )?;
        Ok(exit::FINDINGS)
    };
    let confirm_bad = |step: &mut dyn FnMut(&mut Tester, ObjectId, &str) -> Result<Tested>,
                       tester: &mut Tester|
     -> Result<bool> {
        let b = step(tester, bad, "bad? ")?;
        match b.result {
            Verdict::Good => Ok(false),
            Verdict::Skip => bail!(
                "--bad {} cannot be tested ({}); pick another commit",
                args.bad.unwrap_or("HEAD"),
                b.note.unwrap_or_default()
            ),
            Verdict::Bad => Ok(true),
        }
    };
    let confirm_good = |step: &mut dyn FnMut(&mut Tester, ObjectId, &str) -> Result<Tested>,
                        tester: &mut Tester|
     -> Result<()> {
        let g = step(tester, good, "good?")?;
        if g.result != Verdict::Good {
            bail!(
                "--good {} is not good for {}: it is {} ({}); pick an older commit",
                args.good,
                args.host,
                verdict_name(g.result),
                g.note.unwrap_or_default()
            );
        }
        Ok(())
    };
    if candidates.is_empty() {
        if !confirm_bad(&mut step, &mut tester)? {
            return fine_at_bad(&mut std::io::stdout());
        }
        confirm_good(&mut step, &mut tester)?;
        bail!(
            "no commit in {}..{} can change {}, yet it is good at one end and bad at the other: the failure does not come from the repository (nix, the store, builders?)",
            args.good,
            args.bad.unwrap_or("HEAD"),
            args.host
        );
    }
    // The last candidate carries --bad's result: the commits after it
    // cannot change the host.
    let mut search = Search::new(candidates.len());
    let (mut saw_good, mut saw_bad) = (false, false);
    let conclusion = loop {
        match search.next() {
            Ok(i) => {
                let t = step(
                    &mut tester,
                    candidates[i].id,
                    &format!("[{}/{}]", i + 1, candidates.len()),
                )?;
                search.record(i, t.result);
                saw_good |= t.result == Verdict::Good;
                saw_bad |= t.result == Verdict::Bad;
            }
            Err(c) => break c,
        }
    };
    if !saw_bad && !confirm_bad(&mut step, &mut tester)? {
        return fine_at_bad(&mut std::io::stdout());
    }
    if !saw_good {
        confirm_good(&mut step, &mut tester)?;
    }

    let answer = answer(
        ctx,
        &args,
        &mut tester,
        &conclusion,
        &candidates,
        &commits,
        tested,
    )?;
    let mut out = std::io::stdout().lock();
    if human {
        crate::report::bisect::write_human(&answer, &mut out)?;
    } else {
        crate::report::bisect::write_json(&answer, &mut out)?;
    }
    Ok(exit::OK)
}

/// What the search found, with what its writers show.
fn answer(
    ctx: &Context,
    args: &BisectArgs<'_>,
    tester: &mut Tester<'_>,
    conclusion: &Conclusion,
    candidates: &[&crate::bisect::RangeCommit],
    commits: &[crate::bisect::RangeCommit],
    tested: Vec<Tested>,
) -> Result<crate::bisect::Bisection> {
    let (first_bad, range) = match conclusion {
        Conclusion::FirstBad(i) => (candidates[*i].id, vec![candidates[*i].id]),
        Conclusion::Ambiguous(is) => (
            candidates[*is.last().expect("non-empty")].id,
            is.iter().map(|i| candidates[*i].id).collect(),
        ),
    };
    let info = ctx.repo.commit_info(first_bad)?;
    let mut range_subjects = Vec::new();
    if matches!(conclusion, Conclusion::Ambiguous(_)) {
        for id in &range {
            range_subjects.push((id.to_string(), ctx.repo.commit_info(*id)?.subject));
        }
    }
    Ok(crate::bisect::Bisection {
        ambiguous: matches!(conclusion, Conclusion::Ambiguous(_)),
        builds: tester.builds,
        candidates: candidates.len(),
        deduped: tester.deduped,
        first_bad: first_bad.to_string(),
        first_bad_range: range.iter().map(|i| i.to_string()).collect(),
        host: args.host.to_string(),
        range_commits: commits.len(),
        tested,
        range_subjects,
        first_bad_subject: info.subject,
        first_bad_author: info.author,
        chains: commits
            .iter()
            .find(|c| c.id == first_bad)
            .map(|c| c.reasons.iter().map(|r| r.chain.clone()).collect()),
        tail: tester.tails.remove(&first_bad).unwrap_or_default(),
        evaluated: tester.level == Level::Eval,
    })
}

/// The level to test at: `--level`, else none with `--run`, else the
/// configured level (at least eval).
fn level_of(ctx: &Context, args: &BisectArgs<'_>) -> Result<Level> {
    let level = match (args.level, args.run) {
        (Some(l), _) => l,
        (None, Some(_)) => Level::None,
        (None, None) => ctx.config.build.level.max(Level::Eval),
    };
    if level == Level::None && args.run.is_none() {
        bail!("--level none tests nothing: give --level eval|build|vm or --run <cmd>");
    }
    Ok(level)
}

/// `--good`, `--bad` and the first-parent commits between them, each with
/// the reasons it can change the host; an error when the host exists at
/// neither end.
fn commits_of(
    ctx: &Context,
    args: &BisectArgs<'_>,
) -> Result<(ObjectId, ObjectId, Vec<crate::bisect::RangeCommit>)> {
    if !crate::config::is_valid_host_name(args.host) {
        bail!("{:?} is not a valid host name", args.host);
    }
    let good = ctx.repo.resolve(args.good)?;
    let bad = ctx.repo.resolve(args.bad.unwrap_or("HEAD"))?;
    let commits = range_commits(&ctx.repo, good, bad, args.host, &ctx.flake_dir, &ctx.config)?;
    let host_known = commits.iter().any(|c| c.host_exists)
        || super::pipeline::hosts_of(
            ctx,
            &ctx.repo.snapshot(SnapshotSpec::Commit(good))?,
            &crate::nix::graph::ParseCache::new(),
        )
        .hosts
        .contains_key(args.host);
    if !host_known {
        bail!(
            "no host named {:?} in {}..{}",
            args.host,
            args.good,
            args.bad.unwrap_or("HEAD")
        );
    }
    Ok((good, bad, commits))
}

/// The commits a `--replay` log already decided; their drvPaths' verdicts
/// go into `known`.
fn load_replay(
    path: Option<&Path>,
    known: &mut HashMap<String, (Verdict, Vec<String>)>,
) -> Result<HashMap<ObjectId, Tested>> {
    let mut replayed = HashMap::new();
    let Some(path) = path else {
        return Ok(replayed);
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the bisect log {}", path.display()))?;
    for (n, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let t: Tested = serde_json::from_str(line)
            .with_context(|| format!("{}:{}: not a bisect log line", path.display(), n + 1))?;
        if let (Some(drv), Verdict::Good | Verdict::Bad) = (&t.drv_path, t.result) {
            known.insert(drv.clone(), (t.result, Vec::new()));
        }
        replayed.insert(t.commit, t);
    }
    Ok(replayed)
}

/// The `--log` file, appended to.
fn open_log(path: Option<&Path>) -> Result<Option<std::fs::File>> {
    path.map(|p| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
            .with_context(|| format!("cannot open the bisect log {}", p.display()))
    })
    .transpose()
}

fn verdict_name(v: Verdict) -> &'static str {
    match v {
        Verdict::Good => "good",
        Verdict::Bad => "bad",
        Verdict::Skip => "skip",
    }
}

fn how_name(h: How) -> &'static str {
    match h {
        How::Evaluated => "evaluated",
        How::Built => "built",
        How::EvalDeduped => "same drvPath as a tested commit",
        How::InStore => "already in the store",
        How::KnownFailure => "failed to build before",
        How::Ran => "--run",
        How::Replayed => "from the log",
    }
}
