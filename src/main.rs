//! The `guard` binary: parse, run, map the outcome to an exit code.

use std::process::ExitCode;

use clap::Parser;
use guard::app::{self, exit};

fn main() -> ExitCode {
    let cli = match guard::cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version are not errors; everything else is usage (2).
            let code = if e.use_stderr() {
                exit::ERROR
            } else {
                exit::OK
            };
            let _ = e.print();
            return ExitCode::from(code as u8);
        }
    };
    let result = app::run(cli);
    if guard::nix::cli::is_interrupted() {
        // Builders that a stopped nix left behind were re-parented to
        // guard: stop them before guard is gone.
        guard::nix::cli::reap_orphans();
    }
    match result {
        Ok(code) => ExitCode::from(code as u8),
        // An error caused by the interruption (a command whose child was
        // stopped) still exits as interrupted, like the signal thread does.
        Err(err) if guard::nix::cli::is_interrupted() => {
            eprintln!("error: interrupted: {err:#}");
            ExitCode::from(guard::build::signals::INTERRUPTED as u8)
        }
        Err(err) => {
            if is_broken_pipe(&err) {
                return ExitCode::from(exit::OK as u8);
            }
            eprintln!("error: {err:#}");
            ExitCode::from(exit::ERROR as u8)
        }
    }
}

/// `guard ... | head` closing the pipe early is not an error worth a message.
fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
