//! postern-softlimit, postern-setuidgid, postern-envdir: the chain-loading helpers.

use postern_testkit::{run, tempdir};
use std::fs;
use std::process::Command;
use std::time::Duration;

const T: Duration = Duration::from_secs(20);

fn cmd(name: &str) -> Command {
    Command::new(match name {
        "softlimit" => env!("CARGO_BIN_EXE_postern-softlimit"),
        "setuidgid" => env!("CARGO_BIN_EXE_postern-setuidgid"),
        "envdir" => env!("CARGO_BIN_EXE_postern-envdir"),
        _ => unreachable!(),
    })
}

fn assert_one_line_usage(name: &str, args: &[&str]) {
    let (code, out, err) = run(cmd(name).args(args), T);
    assert_eq!(code, Some(100), "{name} {args:?}: {err}");
    assert!(out.is_empty());
    assert_eq!(err.lines().count(), 1, "one line: {err:?}");
    assert!(
        err.starts_with(&format!("postern-{name}: usage: ")),
        "{err:?}"
    );
}

#[test]
fn softlimit_sets_the_seed_papers_memory_limit() {
    let (code, out, err) = run(
        cmd("softlimit").args([
            "-m",
            "8000000",
            "sh",
            "-c",
            "ulimit -v; ulimit -d; ulimit -s",
        ]),
        T,
    );
    assert_eq!(code, Some(0), "{err}");
    // ulimit reports KiB: 8000000 / 1024 = 7812.
    assert_eq!(out, "7812\n7812\n7812\n");
}

#[test]
fn softlimit_open_files_attached_argument_and_hard_value() {
    let (code, out, _) = run(cmd("softlimit").args(["-o20", "sh", "-c", "ulimit -n"]), T);
    assert_eq!(code, Some(0));
    assert_eq!(out, "20\n");
    let (hard_code, hard, _) = run(Command::new("sh").args(["-c", "ulimit -H -n"]), T);
    assert_eq!(hard_code, Some(0));
    let (code, out, _) = run(
        cmd("softlimit").args(["-o", "=", "sh", "-c", "ulimit -n"]),
        T,
    );
    assert_eq!(code, Some(0));
    assert_eq!(out, hard);
}

#[test]
fn softlimit_passes_the_childs_options_through() {
    let (code, out, _) = run(
        cmd("softlimit").args(["-o", "30", "sh", "-c", "echo $0 $1", "-o", "x"]),
        T,
    );
    assert_eq!(code, Some(0));
    assert_eq!(out, "-o x\n");
}

#[test]
fn softlimit_bad_usage() {
    assert_one_line_usage("softlimit", &["-m", "8M", "true"]);
    assert_one_line_usage("softlimit", &["-z", "1", "true"]);
    assert_one_line_usage("softlimit", &["-m", "100"]);
    assert_one_line_usage("softlimit", &[]);
}

#[test]
fn a_missing_child_is_temporary() {
    let (code, _, err) = run(
        cmd("softlimit").args(["-m", "8000000", "/nonexistent/prog"]),
        T,
    );
    assert_eq!(code, Some(111));
    assert_eq!(
        err,
        "postern-softlimit: fatal: unable to run /nonexistent/prog: no such file or directory\n"
    );
}

#[test]
#[ignore = "needs root: change uid"]
fn setuidgid_drops_to_the_account_and_its_group_only() {
    postern_testkit::require_root("change uid");
    let nobody = postern_common::privilege::lookup_account("nobody").expect("nobody account");
    let (code, out, err) = run(
        cmd("setuidgid").args(["nobody", "sh", "-c", "id -u; id -g; id -G"]),
        T,
    );
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        out,
        format!("{}\n{}\n{}\n", nobody.uid, nobody.gid, nobody.gid)
    );
}

#[test]
fn setuidgid_unknown_account_and_usage() {
    let (code, _, err) = run(cmd("setuidgid").args(["no-such-account-x", "true"]), T);
    assert_eq!(code, Some(111));
    assert_eq!(
        err,
        "postern-setuidgid: fatal: unknown account: no-such-account-x\n"
    );
    assert_one_line_usage("setuidgid", &["nobody"]);
}

#[test]
fn envdir_sets_and_removes_variables() {
    let dir = tempdir();
    let env = dir.path().join("env");
    fs::create_dir(&env).unwrap();
    fs::write(env.join("DATABYTES"), "20000000  \nsecond line ignored\n").unwrap();
    fs::write(env.join("RELAYCLIENT"), "").unwrap();
    fs::write(env.join("MULTI"), b"a\0b\n").unwrap();
    fs::write(env.join(".ignored"), "x\n").unwrap();
    let mut c = cmd("envdir");
    c.env("RELAYCLIENT", "was set").env("KEEP", "kept");
    c.arg(&env).args(["sh", "-c", r#"printf '%s|%s|%s|%s|%s' "$DATABYTES" "${RELAYCLIENT-unset}" "$MULTI" "$KEEP" "${ignored-none}""#]);
    let (code, out, err) = run(&mut c, T);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out, "20000000|unset|a\nb|kept|none");
}

#[test]
fn envdir_failures() {
    let dir = tempdir();
    let (code, _, err) = run(cmd("envdir").arg(dir.path().join("missing")).arg("true"), T);
    assert_eq!(code, Some(111));
    assert!(
        err.starts_with("postern-envdir: fatal: unable to read "),
        "{err}"
    );
    assert_one_line_usage("envdir", &["only-a-dir"]);
}
