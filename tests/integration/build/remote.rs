//! Builds through a real nix remote builder: an sshd this test starts on
//! 127.0.0.1 (Debian's openssh-server, installed by scripts/install-nix)
//! in front of a store of its own (`?remote-store=<dir>`), `--max-jobs 0`
//! so nothing builds locally. The outputs must come from the builder, and
//! guard's report and logs must say where each host was built.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{GuardOutput, fleet_repo, guard_cmd, nix_cmd, nix_program};

use super::{add_definition, statuses, unique};

const SSHD: &str = "/usr/sbin/sshd";

/// A private sshd on 127.0.0.1, stopped when dropped.
struct Sshd {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn keygen(path: &Path) {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .output()
        .expect("ssh-keygen (openssh-client) is needed: run scripts/install-nix");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn start_sshd() -> Sshd {
    assert!(
        Path::new(SSHD).exists(),
        "this test needs {SSHD} (Debian's openssh-server): run scripts/install-nix"
    );
    // sshd refuses to start without its privilege separation directory.
    if !Path::new("/run/sshd").is_dir() {
        std::fs::create_dir_all("/run/sshd").expect(
            "cannot create /run/sshd, which sshd needs (run the tests as root, or create it)",
        );
    }
    let dir = tempfile::Builder::new()
        .prefix("guard-sshd-")
        .tempdir()
        .unwrap();
    let d = dir.path();
    keygen(&d.join("hostkey"));
    keygen(&d.join("id"));
    std::fs::copy(d.join("id.pub"), d.join("authorized_keys")).unwrap();
    // A free port: bound, read, released (sshd binds it right after).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::fs::write(
        d.join("sshd_config"),
        format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {0}/hostkey\nAuthorizedKeysFile {0}/authorized_keys\n\
             PidFile {0}/sshd.pid\nStrictModes no\nUsePAM no\nPasswordAuthentication no\n\
             KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n",
            d.display()
        ),
    )
    .unwrap();
    let child = Command::new(SSHD)
        .args(["-D", "-e", "-f"])
        .arg(d.join("sshd_config"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let sshd = Sshd { child, port, dir };
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "sshd did not start on port {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    sshd
}

/// The nix-store beside the nix the tests run (the builder side runs the
/// same version).
fn nix_store_program() -> PathBuf {
    let nix = nix_program();
    let nix = nix.to_string_lossy();
    let full = if nix.contains('/') {
        PathBuf::from(nix.as_ref())
    } else {
        let out = Command::new("sh")
            .args(["-c", &format!("command -v {nix}")])
            .output()
            .unwrap();
        PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
    };
    let store = full.with_file_name("nix-store");
    assert!(store.exists(), "no nix-store beside {}", full.display());
    store
}

#[test]
fn hosts_are_built_on_a_remote_builder_over_ssh() {
    let _ = nix_cmd();
    let sshd = start_sshd();
    let d = sshd.dir.path();
    let remote_store = d.join("remote-store");
    std::fs::create_dir_all(&remote_store).unwrap();
    // The builder's side: its own store in a directory (a chroot store, so
    // its builds run in nix's sandbox, which needs /bin/sh and its
    // libraries inside), offline like the tests.
    let program = d.join("remote-nix-store");
    std::fs::write(
        &program,
        format!(
            "#!/bin/sh\nexport NIX_CONFIG='substituters =\nsandbox = true\nsandbox-paths = /bin /lib /lib64 /usr\nbuild-users-group =\n'\nexec '{}' \"$@\"\n",
            nix_store_program().display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
    let user = std::env::var("USER").unwrap_or_else(|_| "root".into());
    let builder = format!(
        "ssh://{user}@127.0.0.1?remote-store={}&remote-program={}",
        remote_store.display(),
        program.display()
    );
    let builders = format!("{builder} x86_64-linux {}/id", d.display());

    let repo = fleet_repo();
    let u = unique();
    add_definition(
        &repo,
        "environments/zfs.nix",
        &format!("environment.etc.\"guard-remote-{u}\".text = \"{u}\";"),
    );
    repo.commit_all("zfs, built remotely");
    let run = |format: &str| {
        GuardOutput::from(
            guard_cmd(repo.path())
                .env(
                    "NIX_SSHOPTS",
                    format!(
                        "-p {} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes",
                        sshd.port
                    ),
                )
                .arg("-C")
                .arg(repo.path())
                .args(["build", "--commit", "HEAD", "--level", "build", "--format", format])
                .args(["--", "--max-jobs", "0", "--builders", &builders])
                .output()
                .unwrap(),
        )
    };
    // A person reads where each host was built.
    let human = run("human");
    human.assert_code(0);
    // (Nix 2.26 prints the URI's parameters sorted.)
    let named = format!("built on ssh://{user}@127.0.0.1?");
    assert_eq!(human.stdout.matches(&named).count(), 3, "{}", human.stdout);

    let u = unique();
    add_definition(
        &repo,
        "environments/zfs.nix",
        &format!("environment.etc.\"guard-remote-{u}\".text = \"{u}\";"),
    );
    repo.commit_all("zfs again");
    let out = run("json");
    out.assert_code(0);
    let st = statuses(&out);
    assert_eq!(st.len(), 3, "{st:?}");
    assert!(st.values().all(|(s, _)| s == "ok"), "{}", out.stdout);
    let v = out.json();
    for h in v["hosts"].as_array().unwrap() {
        let name = h["name"].as_str().unwrap();
        // The report says where: the builder, not this machine.
        let on = h["built_on"].as_array().unwrap();
        assert_eq!(on.len(), 1, "{h}");
        let on = on[0].as_str().unwrap();
        assert!(
            on.starts_with(&format!("ssh://{user}@127.0.0.1?"))
                && on.contains(&format!("remote-store={}", remote_store.display())),
            "{h}"
        );
        // The output exists in the builder's store and was copied back.
        let o = h["out_path"].as_str().unwrap();
        let base = Path::new(o).file_name().unwrap();
        assert!(
            remote_store.join("nix/store").join(base).exists(),
            "{name}: {o} is not in the builder's store"
        );
        assert!(Path::new(o).exists(), "{name}: {o} was not copied back");
        let log = std::fs::read_to_string(h["log"].as_str().unwrap()).unwrap();
        assert!(
            log.contains(&format!("copying path '{o}' from 'ssh://")),
            "{name}'s log does not show the copy from the builder:\n{log}"
        );
    }
}
