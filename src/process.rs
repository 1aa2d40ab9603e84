//! Every child process guard starts (nix, `guard bisect --run` commands)
//! goes through here: spawned in a process group of its own and registered
//! while it runs, so that Ctrl-C / SIGTERM ([`interrupt_children`]) or a
//! timeout stops it together with everything it started (nix's builders
//! run in sessions of their own: they are found through /proc), so that
//! guard, as the subreaper of its descendants ([`become_subreaper`]), can
//! reap what a killed child left behind, and so that no new child starts
//! once guard is being interrupted. Callers say what to run and read what
//! comes back; nothing else in guard spawns a long-running process.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

/// Why a child could not run to its end.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The program does not exist.
    #[error("program not found")]
    NotFound,
    #[error("cannot start the process: {0}")]
    Spawn(std::io::Error),
    #[error("stopped after {secs}s (timeout)")]
    TimedOut { secs: u64 },
    #[error("interrupted")]
    Interrupted,
}

/// Limits for one child.
#[derive(Debug, Clone, Copy, Default)]
pub struct Limits {
    /// Stop the process (and what it started) after this long.
    pub timeout: Option<Duration>,
}

/// What a finished child left.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    /// Its stdout (empty when it was discarded).
    pub stdout: Vec<u8>,
    /// Every stderr line, in order.
    pub stderr: String,
}

/// What happens to a child's stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stdout {
    /// Collected into [`Finished::stdout`].
    Keep,
    /// Sent to /dev/null (a user's command may print without end).
    Discard,
}

/// Children currently running, by process group, and whether guard is
/// being interrupted (then no new child starts).
struct Registry {
    interrupted: bool,
    groups: BTreeSet<i32>,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    interrupted: false,
    groups: BTreeSet::new(),
});

fn registry() -> std::sync::MutexGuard<'static, Registry> {
    // A panic while holding the lock leaves the set consistent (inserts and
    // removes are single operations), so a poisoned lock is still usable.
    REGISTRY.lock().unwrap_or_else(|e| e.into_inner())
}

/// Stops every running child: SIGTERM to each process group (nix then
/// kills its builders and exits), and refuses to start new ones from now on.
pub fn interrupt_children() {
    let mut r = registry();
    r.interrupted = true;
    for &g in &r.groups {
        signal_group(g, libc::SIGTERM);
    }
}

/// SIGKILL to every running nix child and everything it started: the last
/// resort when nix does not react to SIGTERM.
pub fn kill_children() {
    let r = registry();
    for &g in &r.groups {
        kill_tree(g);
    }
}

/// Whether [`interrupt_children`] was called.
pub fn is_interrupted() -> bool {
    registry().interrupted
}

/// Whether any child is running.
pub fn children_running() -> bool {
    !registry().groups.is_empty()
}

fn signal_group(pgid: i32, sig: i32) {
    // SAFETY: kill(2) has no memory-safety preconditions. `pgid` is the pid
    // of a child we have not reaped yet (it leaves the registry before
    // `wait`), so the group id cannot have been reused by another process.
    unsafe {
        libc::kill(-pgid, sig);
    }
}

/// Signals `pgid` only while it is still registered (still ours).
fn signal_if_running(pgid: i32, sig: i32) {
    let r = registry();
    if r.groups.contains(&pgid) {
        signal_group(pgid, sig);
    }
}

/// SIGKILL to `pid`'s group and to every descendant of `pid`. nix starts
/// each builder in a session of its own, so killing nix's group alone
/// would orphan a builder that nix did not stop itself (nix can miss one
/// that was being started at the moment it was told to stop). The
/// descendants are found through /proc before nix dies; where /proc does
/// not exist only the group is killed.
fn kill_tree(pid: i32) {
    let first = descendants(pid);
    signal_group(pid, libc::SIGKILL);
    // A second look catches processes forked while the first was taken.
    let mut all = first;
    for d in descendants(pid) {
        if !all.contains(&d) {
            all.push(d);
        }
    }
    for d in all {
        // SAFETY: kill(2) has no memory-safety preconditions; `d` was a
        // descendant of our unreaped child an instant ago.
        unsafe {
            libc::kill(d, libc::SIGKILL);
        }
    }
}

/// Makes guard the "subreaper" of everything it starts (Linux): a builder
/// that nix leaves behind when it is stopped is re-parented to guard
/// instead of init, so [`reap_orphans`] can still find and stop it.
pub fn become_subreaper() {
    SUBREAPER.store(true, Ordering::SeqCst);
    #[cfg(target_os = "linux")]
    // SAFETY: prctl(PR_SET_CHILD_SUBREAPER) takes plain integers and only
    // changes this process's own attribute.
    unsafe {
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    }
}

/// After an interruption: SIGKILL every remaining child of guard (builders
/// orphaned by a nix that was stopped, re-parented here by
/// [`become_subreaper`]) and everything below it, then reap them, so
/// nothing guard started outlives it.
pub fn reap_orphans() {
    let me = std::process::id() as i32;
    for _ in 0..3 {
        let mut tree = descendants(me);
        if tree.is_empty() {
            return;
        }
        tree.sort_unstable();
        for &pid in &tree {
            // SAFETY: kill(2) has no memory-safety preconditions; these are
            // our own descendants.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
        for &pid in &tree {
            // Reap our direct children (grandchildren are reaped by their
            // own parents, which were just killed, or re-parented to us).
            // SAFETY: waitpid on a pid with a null status pointer is allowed.
            unsafe {
                libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG);
            }
        }
        std::thread::sleep(Duration::from_millis(50));
        for &pid in &tree {
            // SAFETY: as above.
            unsafe {
                libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG);
            }
        }
    }
}

/// Whether [`become_subreaper`] was called: only then are unregistered
/// children strays of ours (otherwise they belong to whoever embeds this
/// library, e.g. a test harness).
static SUBREAPER: AtomicBool = AtomicBool::new(false);

/// Stops guard's children that are not nix processes it is running: the
/// builders of a nix that died, re-parented to guard.
fn reap_strays() {
    if !SUBREAPER.load(Ordering::SeqCst) {
        return;
    }
    let me = std::process::id() as i32;
    let registered: Vec<i32> = registry().groups.iter().copied().collect();
    for child in children_of(me) {
        if registered.contains(&child) {
            continue;
        }
        kill_tree(child);
        // SAFETY: waitpid on our own child with a null status pointer.
        unsafe {
            libc::waitpid(child, std::ptr::null_mut(), 0);
        }
    }
}

fn children_of(pid: i32) -> Vec<i32> {
    let all = descendants(pid);
    all.into_iter()
        .filter(|&d| parent_of(d) == Some(pid))
        .collect()
}

fn parent_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// Every process below `root` (children, grandchildren, ...) per /proc.
fn descendants(root: i32) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut parents: Vec<(i32, i32)> = Vec::new();
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state ppid ...`; comm may contain spaces and ')'.
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        if let Some(ppid) = rest.split_whitespace().nth(1).and_then(|p| p.parse().ok()) {
            parents.push((pid, ppid));
        }
    }
    let mut out = Vec::new();
    let mut frontier = vec![root];
    while let Some(p) = frontier.pop() {
        for &(child, parent) in &parents {
            if parent == p && !out.contains(&child) {
                out.push(child);
                frontier.push(child);
            }
        }
    }
    out
}

/// Waits until `pid` has exited without reaping it, so that the registry
/// entry can be removed while the pid is still reserved.
fn wait_exited_no_reap(pid: i32) {
    loop {
        // SAFETY: `info` is a plain C struct written by waitid; zeroed is a
        // valid initial value.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let rc = unsafe {
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOWAIT,
            )
        };
        if rc == 0 || std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            return;
        }
    }
}

/// Spawns `cmd` in its own process group and registers it; refused once
/// guard is being interrupted. The caller must [`unregister`] it after it
/// exited (see [`Running::wait`]).
fn spawn_registered(cmd: &mut Command) -> Result<Child, RunError> {
    // Its own group: a terminal's Ctrl-C reaches guard only, and guard
    // stops each child with what it started through the group.
    cmd.process_group(0);
    let mut r = registry();
    if r.interrupted {
        return Err(RunError::Interrupted);
    }
    let child = cmd.spawn().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            RunError::NotFound
        } else {
            RunError::Spawn(e)
        }
    })?;
    r.groups.insert(child.id() as i32);
    Ok(child)
}

/// A registered child that the caller talks to (stdin/stdout), e.g. a
/// long-lived `nix repl` evaluation worker. Dropping it kills its process
/// tree and reaps it.
pub struct Running {
    child: Child,
    pid: i32,
    done: bool,
}

impl Running {
    /// Starts `cmd` (its stdio as the caller configured it) in its own
    /// process group, registered.
    pub fn spawn(mut cmd: Command) -> Result<Running, RunError> {
        let child = spawn_registered(&mut cmd)?;
        let pid = child.id() as i32;
        Ok(Running {
            child,
            pid,
            done: false,
        })
    }

    /// The child's process id (also its process group id).
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// The child's pipes.
    pub fn child_mut(&mut self) -> &mut Child {
        &mut self.child
    }

    /// Resident memory of the child and its descendants, in bytes (Linux
    /// /proc; 0 where it cannot be read).
    pub fn rss_bytes(&self) -> u64 {
        let mut total = rss_of(self.pid);
        for d in descendants(self.pid) {
            total += rss_of(d);
        }
        total
    }

    /// Kills the child and everything it started, then reaps it.
    pub fn kill(mut self) -> Option<ExitStatus> {
        self.finish(true)
    }

    /// Waits for the child to exit by itself (its stdin should be closed
    /// first), then unregisters and reaps it.
    pub fn wait(mut self) -> Option<ExitStatus> {
        self.finish(false)
    }

    fn finish(&mut self, kill: bool) -> Option<ExitStatus> {
        if self.done {
            return None;
        }
        self.done = true;
        if kill {
            let r = registry();
            if r.groups.contains(&self.pid) {
                kill_tree(self.pid);
            }
        }
        wait_exited_no_reap(self.pid);
        registry().groups.remove(&self.pid);
        let status = self.child.wait().ok();
        if status.is_some_and(|s| std::os::unix::process::ExitStatusExt::signal(&s).is_some()) {
            reap_strays();
        }
        status
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.finish(true);
    }
}

/// A pipe (read end, write end), both close-on-exec: a child given the
/// write end as stdout and stderr writes both into one ordered stream.
pub fn pipe() -> std::io::Result<(std::fs::File, std::fs::File)> {
    use std::os::fd::FromRawFd as _;
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: pipe2 writes two new descriptors into `fds`, which has room
    // for exactly two.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just created and are owned by no one.
    Ok(unsafe {
        (
            std::fs::File::from_raw_fd(fds[0]),
            std::fs::File::from_raw_fd(fds[1]),
        )
    })
}

/// VmRSS of one process, in bytes.
fn rss_of(pid: i32) -> u64 {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return 0;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Runs `cmd` to its end in its own process group: streams its stderr lines
/// to `on_line`, enforces `limits` (SIGTERM to the group at the timeout,
/// SIGKILL to the whole tree [`KILL_GRACE`] later), and waits for it.
pub fn run(
    mut cmd: Command,
    stdout_mode: Stdout,
    limits: Limits,
    on_line: &mut dyn FnMut(&str),
) -> Result<Finished, RunError> {
    cmd.stdout(match stdout_mode {
        Stdout::Keep => Stdio::piped(),
        Stdout::Discard => Stdio::null(),
    })
    .stderr(Stdio::piped());
    let mut child = spawn_registered(&mut cmd)?;
    let pid = child.id() as i32;
    let stdout = child.stdout.take();
    let stderr = child.stderr.take().expect("stderr is piped");
    let stdout_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut s) = stdout {
            let _ = s.read_to_end(&mut buf);
        }
        buf
    });
    let timed_out = Arc::new(AtomicBool::new(false));
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let watchdog = limits.timeout.map(|t| {
        let timed_out = timed_out.clone();
        std::thread::spawn(move || {
            if done_rx.recv_timeout(t) != Err(mpsc::RecvTimeoutError::Timeout) {
                return;
            }
            timed_out.store(true, Ordering::SeqCst);
            signal_if_running(pid, libc::SIGTERM);
            if done_rx.recv_timeout(KILL_GRACE) == Err(mpsc::RecvTimeoutError::Timeout) {
                let r = registry();
                if r.groups.contains(&pid) {
                    kill_tree(pid);
                }
            }
        })
    });
    let mut collected = String::new();
    let mut reader = BufReader::new(stderr);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                let line = String::from_utf8_lossy(&buf);
                let line = line.trim_end_matches(['\n', '\r']);
                on_line(line);
                collected.push_str(line);
                collected.push('\n');
            }
        }
    }
    wait_exited_no_reap(pid);
    registry().groups.remove(&pid);
    let status = child.wait().map_err(RunError::Spawn)?;
    if std::os::unix::process::ExitStatusExt::signal(&status).is_some() {
        // The child was killed (OOM killer, a user's kill -9): what it
        // started was orphaned to guard (become_subreaper); stop it.
        reap_strays();
    }
    drop(done_tx);
    if let Some(w) = watchdog {
        let _ = w.join();
    }
    let stdout = stdout_reader.join().unwrap_or_default();
    if timed_out.load(Ordering::SeqCst) {
        return Err(RunError::TimedOut {
            secs: limits.timeout.map(|t| t.as_secs()).unwrap_or_default(),
        });
    }
    if is_interrupted() && !status.success() {
        return Err(RunError::Interrupted);
    }
    Ok(Finished {
        status,
        stdout,
        stderr: collected,
    })
}

/// How long a child (nix) gets to stop what it started after SIGTERM
/// before SIGKILL.
pub const KILL_GRACE: Duration = Duration::from_secs(3);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descendants_are_found_through_proc() {
        let mut child = Command::new("/bin/sh")
            .args(["-c", "/bin/sleep 5 & wait"])
            .process_group(0)
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let start = std::time::Instant::now();
        let mut found = Vec::new();
        while found.is_empty() && start.elapsed() < Duration::from_secs(5) {
            found = descendants(pid);
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(found.len(), 1, "{found:?}");
        kill_tree(pid);
        let status = child.wait().unwrap();
        assert!(!status.success());
    }

    #[test]
    fn runs_report_exit_output_and_timeouts() {
        let mut c = Command::new("/bin/sh");
        c.args(["-c", "echo out; echo err >&2; exit 3"]);
        let mut lines = Vec::new();
        let f = run(c, Stdout::Keep, Limits::default(), &mut |l| {
            lines.push(l.to_string())
        })
        .unwrap();
        assert_eq!(f.status.code(), Some(3));
        assert_eq!(f.stdout, b"out\n");
        assert_eq!(lines, vec!["err"]);
        let mut c = Command::new("/bin/sh");
        c.args(["-c", "sleep 30"]);
        let limits = Limits {
            timeout: Some(Duration::from_millis(200)),
        };
        let start = std::time::Instant::now();
        let e = run(c, Stdout::Discard, limits, &mut |_| {}).unwrap_err();
        assert!(matches!(e, RunError::TimedOut { .. }), "{e}");
        assert!(start.elapsed() < Duration::from_secs(10));
        assert!(!children_running());
    }

    #[test]
    fn a_running_child_is_measured_and_killed_with_its_tree() {
        let mut c = Command::new("/bin/sh");
        c.args(["-c", "/bin/sleep 30 & wait"]);
        let r = Running::spawn(c).unwrap();
        let pid = r.pid();
        let start = std::time::Instant::now();
        while descendants(pid).is_empty() && start.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let sleeper = descendants(pid)[0];
        assert!(r.rss_bytes() > 0);
        let status = r.kill().unwrap();
        assert!(!status.success());
        std::thread::sleep(Duration::from_millis(100));
        let stat = std::fs::read_to_string(format!("/proc/{sleeper}/stat")).unwrap_or_default();
        assert!(stat.is_empty() || stat.contains(" Z "), "{stat}");
    }
}
