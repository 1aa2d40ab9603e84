//! Ctrl-C (SIGINT), SIGTERM and SIGHUP while guard runs nix: every nix
//! child is stopped through its process group (nix then stops its
//! builders), the temporary `refs/guard/` refs are deleted, and guard exits
//! 130. The main thread normally notices the interruption itself (nix
//! returns, the run ends, the report says "interrupted"); a watchdog exits
//! anyway if it does not, and a second signal exits at once.
//!
//! Why signal-hook rather than ctrlc: SIGTERM (what CI runners and
//! `timeout` send) must be handled like SIGINT, and the handling runs on an
//! ordinary thread (signal-hook's iterator), where locking the child
//! registry and deleting refs through gix is allowed; a raw handler could
//! do neither safely.

use std::sync::Once;
use std::time::{Duration, Instant};

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::git::remove_all_temp_refs;
use crate::process::{KILL_GRACE, children_running, interrupt_children, kill_children};

/// Exit code after an interruption (as shells report SIGINT).
pub const INTERRUPTED: i32 = 130;

/// How long the main thread gets, after the children are gone, to print
/// its report and exit by itself.
const MAIN_GRACE: Duration = Duration::from_secs(3);

static INSTALL: Once = Once::new();

/// Installs the handler (once per process; later calls do nothing).
pub fn install() -> std::io::Result<()> {
    let mut result = Ok(());
    INSTALL.call_once(|| {
        crate::process::become_subreaper();
        result = Signals::new([SIGINT, SIGTERM, SIGHUP]).and_then(|mut signals| {
            std::thread::Builder::new()
                .name("guard-signals".into())
                .spawn(move || {
                    let mut seen = 0;
                    for _ in signals.forever() {
                        seen += 1;
                        if seen == 1 {
                            interrupt_children();
                            remove_all_temp_refs();
                            std::thread::spawn(watchdog);
                        } else {
                            force_exit();
                        }
                    }
                })
                .map(|_| ())
        });
    });
    result
}

fn watchdog() {
    let deadline = Instant::now() + KILL_GRACE;
    while children_running() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    if children_running() {
        kill_children();
    }
    crate::process::reap_orphans();
    std::thread::sleep(MAIN_GRACE);
    force_exit();
}

fn force_exit() -> ! {
    kill_children();
    crate::process::reap_orphans();
    remove_all_temp_refs();
    std::process::exit(INTERRUPTED)
}
