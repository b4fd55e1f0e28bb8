//! The systemd unit in `deploy/`: `systemd-analyze verify` (offline, no running systemd needed)
//! finds nothing wrong with it, pointed at the binary these tests built; and it is a
//! `Type=notify` service reloaded by SIGHUP, as `docs/deploy.md` says.

use std::path::Path;
use std::process::Command;

const UNIT: &str = include_str!("../deploy/loadbalancer.service");

#[test]
fn the_systemd_unit_verifies() {
    for line in [
        "Type=notify",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "KillSignal=SIGTERM",
    ] {
        assert!(UNIT.lines().any(|l| l == line), "{line} in the unit");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let unit = dir.path().join("loadbalancer.service");
    let bin = env!("CARGO_BIN_EXE_loadbalancer");
    std::fs::write(&unit, UNIT.replace("/usr/local/bin/loadbalancer", bin)).expect("write");
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(Path::new(&unit))
        .output()
        .expect("systemd-analyze (Debian's systemd package; .ci/run installs it)");
    let complaints = String::from_utf8_lossy(&out.stderr);
    // Outside a booted systemd, verify says so about the manager; the unit is what matters.
    let about_unit: Vec<&str> = complaints
        .lines()
        .filter(|l| l.contains("loadbalancer.service"))
        .collect();
    assert!(
        out.status.success() && about_unit.is_empty(),
        "{complaints}"
    );
}
