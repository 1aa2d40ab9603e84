//! `fleetgen [--hosts N] [--modules N] [--files N] [--commits N] [--seed N] <dir>`:
//! writes a deterministic synthetic NixOS fleet repository into `<dir>`.

use std::process::ExitCode;
use std::time::Instant;

const USAGE: &str = "usage: fleetgen [--hosts N] [--modules N] [--files N] [--commits N] [--seed N] [--closure] <dir>

Writes a synthetic NixOS flake fleet with a git history into <dir> (created;
must be empty). Same arguments, same files and commit ids.
  --hosts N    hosts machines/host-NNNN (default 8)
  --modules N  shared modules under modules/ (default 12)
  --files N    total files of the initial commit, padded with filler (default 60)
  --commits N  commits of random edits after the initial one (default 5)
  --seed N     PRNG seed (default 1)
  --closure    also print each host's import closure (host<TAB>file lines)";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fleetgen: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let mut spec = fleetgen::Spec::default();
    let mut dir = None;
    let mut print_closure = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let field = match arg.as_str() {
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            "--closure" => {
                print_closure = true;
                continue;
            }
            "--hosts" => &mut spec.hosts,
            "--modules" => &mut spec.modules,
            "--files" => &mut spec.files,
            "--commits" => &mut spec.commits,
            "--seed" => {
                let v = args.next().ok_or("--seed needs a value")?;
                spec.seed = v.parse().map_err(|_| format!("bad --seed {v}"))?;
                continue;
            }
            s if s.starts_with('-') => return Err(format!("unknown option {s}\n{USAGE}")),
            _ => {
                if dir.replace(arg).is_some() {
                    return Err(format!("more than one directory\n{USAGE}"));
                }
                continue;
            }
        };
        let v = args.next().ok_or(format!("{arg} needs a value"))?;
        *field = v.parse().map_err(|_| format!("bad {arg} {v}"))?;
    }
    let dir = dir.ok_or(format!("missing <dir>\n{USAGE}"))?;
    let start = Instant::now();
    let fleet = fleetgen::generate(dir.as_ref(), &spec).map_err(|e| e.to_string())?;
    let files: usize = fleet
        .history
        .iter()
        .map(|c| c.touched.len())
        .next()
        .unwrap_or(0);
    println!(
        "{}: {} hosts, {} modules, {} files, {} commits, HEAD {} ({:.2?})",
        fleet.root.display(),
        fleet.hosts.len(),
        fleet.modules().len(),
        files,
        fleet.commits.len(),
        fleet.head(),
        start.elapsed()
    );
    if print_closure {
        for (host, files) in &fleet.closure {
            for f in files {
                println!("{host}\t{f}");
            }
        }
    }
    Ok(())
}
