//! A service and its logger under `postern-svscan`: output flows through the pipe svscan
//! holds, so restarting the logger loses no line.

use postern_testkit::{
    expect_within, path_with_workspace_bins, run, tempdir, workspace_bin, write_script, Daemon,
};
use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const LINES: usize = 4000;

/// Every line of a multilog directory, archives first (in name order = time order), then current.
fn logged_lines(dir: &Path) -> Vec<String> {
    let mut names: Vec<_> = fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.retain(|n| n.starts_with('@'));
    names.sort();
    names.push("current".into());
    let mut lines = Vec::new();
    for n in names {
        if let Ok(text) = fs::read_to_string(dir.join(n)) {
            lines.extend(text.lines().map(|l| {
                l.split_once(' ')
                    .map(|(_, rest)| rest)
                    .unwrap_or(l)
                    .to_string()
            }));
        }
    }
    lines
}

fn svstat_pid(dir: &Path) -> Option<u32> {
    let (_, out, _) = run(
        Command::new(workspace_bin("postern-svstat")).arg(dir),
        Duration::from_secs(10),
    );
    let at = out.find("(pid ")?;
    out[at + 5..].split(')').next()?.parse().ok()
}

#[test]
fn restarting_the_logger_loses_no_line() {
    let dir = tempdir();
    let services = dir.path().join("service");
    let svc = services.join("counter");
    fs::create_dir_all(svc.join("log")).unwrap();
    // Writes LINES numbered lines in bursts, once, then idles.
    write_script(
        &svc.join("run"),
        &format!(
            "#!/bin/sh\nexec 2>&1\n[ -f done ] && exec sleep 100000\ni=0\nwhile [ $i -lt {LINES} ]; do\n  echo \"line $i\"\n  i=$((i+1))\n  [ $((i % 200)) -eq 0 ] && sleep 0.1\ndone\ntouch done\nexec sleep 100000\n"
        ),
    );
    write_script(
        &svc.join("log/run"),
        "#!/bin/sh\nexec postern-multilog t s4096 n100 ./main\n",
    );

    let mut cmd = Command::new(workspace_bin("postern-svscan"));
    cmd.arg(&services).env("PATH", path_with_workspace_bins());
    let _svscan = Daemon::spawn_quiet("postern-svscan", cmd);

    let log = svc.join("log");
    expect_within(Duration::from_secs(15), "the logger to start", || {
        svstat_pid(&log).is_some()
    });
    // Restart the logger over and over while the service writes.
    let mut restarts = 0;
    while !svc.join("done").exists() && restarts < 20 {
        let before = svstat_pid(&log);
        let (code, _, _) = run(
            Command::new(workspace_bin("postern-svc"))
                .arg("-t")
                .arg(&log),
            Duration::from_secs(10),
        );
        assert_eq!(code, Some(0));
        expect_within(Duration::from_secs(10), "the logger to come back", || {
            let now = svstat_pid(&log);
            now.is_some() && now != before
        });
        restarts += 1;
    }
    assert!(
        restarts >= 2,
        "the logger was restarted {restarts} times while lines flowed"
    );
    expect_within(Duration::from_secs(60), "every line in the log", || {
        logged_lines(&log.join("main")).len() >= LINES
    });
    let lines = logged_lines(&log.join("main"));
    let expected: Vec<String> = (0..LINES).map(|i| format!("line {i}")).collect();
    assert_eq!(lines.len(), LINES, "no line lost or doubled");
    assert_eq!(lines, expected, "in order");
}
