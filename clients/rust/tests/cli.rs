//! The `pg-named-lock` binary against a live server, in a database where
//! `CREATE EXTENSION pg_named_locks` was run (preloaded, extension 0.3.0):
//!   PGNL_TEST_DSN="host=127.0.0.1 port=5432 user=postgres dbname=postgres" cargo test
//! Optional: PGNL_TEST_SOCKET_DIR, the server's Unix socket directory (PGHOST as a
//! directory is tested then). The DSN's user must be able to CREATE DATABASE and
//! pg_terminate_backend the CLI's sessions (a superuser).
//!
//! Every test uses its own lock names and a scratch directory of its own; the commands
//! are small `sh` scripts that record what they saw and wait for a file the test creates.
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};
use tokio_postgres::types::{FromSqlOwned, ToSql};
use tokio_postgres::{Client, Config, NoTls};

/// "promptly": a generous upper bound, never a timing assertion
const PROMPTLY: Duration = Duration::from_secs(15);

fn dsn() -> String {
    std::env::var("PGNL_TEST_DSN")
        .expect("set PGNL_TEST_DSN to a server with pg_named_locks installed (see tests/cli.rs)")
}

fn unique(what: &str) -> String {
    format!("cli-{what}-{}", std::process::id())
}

/// A fresh scratch directory for one test, removed when the test ends.
struct Scratch(PathBuf);

impl std::ops::Deref for Scratch {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for Scratch {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn scratch(what: &str) -> Scratch {
    let d = std::env::temp_dir().join(unique(what));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    Scratch(d)
}

/// The binary with `--dsn`, a clean environment for what it reads, no stdin.
fn cli() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_pg-named-lock"));
    c.arg("--dsn")
        .arg(dsn())
        .env_remove("PGAPPNAME")
        .env_remove("PG_NAMED_LOCK_TOKEN")
        .env_remove("PG_NAMED_LOCK_NAME")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    c
}

/// `pg-named-lock run ARGS... -- sh -c SCRIPT`, started in `dir`, output captured.
fn run_sh(dir: &Path, args: &[&str], script: &str) -> Child {
    let mut c = cli();
    c.arg("run")
        .args(args)
        .args(["--", "sh", "-c", script])
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c.spawn().expect("start pg-named-lock")
}

async fn finish(child: Child) -> Output {
    tokio::time::timeout(PROMPTLY, child.wait_with_output())
        .await
        .expect("pg-named-lock ended promptly")
        .unwrap()
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or_else(|| panic!("killed: {o:?}"))
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

async fn client() -> Client {
    let (c, conn) = tokio_postgres::connect(&dsn(), NoTls)
        .await
        .expect("connect");
    tokio::spawn(conn);
    c
}

/// The value of a query that returns one row of one column.
async fn value<T: FromSqlOwned>(c: &Client, sql: &str, params: &[&(dyn ToSql + Sync)]) -> T {
    c.query_one(sql, params).await.unwrap().get(0)
}

async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + PROMPTLY;
    while !f().await {
        assert!(Instant::now() < deadline, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The backend of a `pg-named-lock` that holds `name`.
async fn cli_holder(c: &Client, name: &str) -> Option<i32> {
    c.query_opt(
        "SELECT pid FROM advisory_locks_v
          WHERE lock_name = $1 AND granted AND application_name = 'pg-named-lock'",
        &[&name],
    )
    .await
    .unwrap()
    .map(|r| r.get(0))
}

/// Waits until a `pg-named-lock` holds `name`; its backend.
async fn cli_holds(c: &Client, name: &str) -> i32 {
    eventually("the CLI holds the lock", || async {
        cli_holder(c, name).await.is_some()
    })
    .await;
    cli_holder(c, name).await.unwrap()
}

/// How many `pg-named-lock`s wait for `name`.
async fn cli_waiters(c: &Client, name: &str) -> i64 {
    value(
        c,
        "SELECT count(*) FROM advisory_locks_v
          WHERE lock_name = $1 AND NOT granted AND application_name = 'pg-named-lock'",
        &[&name],
    )
    .await
}

/// Terminates the lock session of `child`, a `pg-named-lock` that holds `name`: its output
/// and how long it took to end after that.
async fn lose_the_lock_connection(c: &Client, name: &str, child: Child) -> (Output, Duration) {
    let backend = cli_holds(c, name).await;
    let killed_at = Instant::now();
    c.execute("SELECT pg_terminate_backend($1)", &[&backend])
        .await
        .unwrap();
    let o = finish(child).await;
    (o, killed_at.elapsed())
}

async fn holders(c: &Client, name: &str) -> Vec<i32> {
    value(c, "SELECT named_lock_holders($1)", &[&name]).await
}

async fn check(c: &Client, name: &str, token: i64) -> bool {
    value(c, "SELECT named_lock_check($1, $2)", &[&name, &token]).await
}

fn alive(pid: i32) -> bool {
    // SAFETY: kill(pid, 0) only checks for existence
    unsafe { libc::kill(pid, 0) == 0 }
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

async fn file_appears(p: &Path) {
    eventually(&format!("{} exists", p.display()), || async { p.exists() }).await;
}

/// Waits for a file that a command writes whole (content then newline).
async fn pid_in(p: &Path) -> i32 {
    let mut pid = 0;
    eventually("the command wrote its pid", || {
        pid = read(p).trim().parse().unwrap_or(0);
        async move { pid > 0 }
    })
    .await;
    pid
}

const WAIT_FOR_GO: &str = "while [ ! -e go ]; do sleep 0.05; done";

#[tokio::test]
async fn exits_with_the_commands_code() {
    let (c, dir, name) = (client().await, scratch("code"), unique("code"));
    for (script, want) in [
        ("exit 0", 0),
        ("exit 7", 7),
        ("kill -TERM $$", 143),
        ("kill -KILL $$", 137),
    ] {
        let o = finish(run_sh(&dir, &[&name], script)).await;
        assert_eq!(code(&o), want, "{script}: {}", stderr(&o));
        assert!(
            holders(&c, &name).await.is_empty(),
            "released after {script}"
        );
    }
}

#[tokio::test]
async fn the_command_gets_the_name_and_the_fencing_token() {
    let (c, dir, name) = (client().await, scratch("env"), unique("env"));
    let script = format!(
        "printf '%s %s\\n' \"$PG_NAMED_LOCK_NAME\" \"${{PG_NAMED_LOCK_TOKEN-unset}}\" > seen.tmp && mv seen.tmp seen; {WAIT_FOR_GO}"
    );
    let child = run_sh(&dir, &[&name], &script);
    file_appears(&dir.join("seen")).await;
    let seen = read(&dir.join("seen"));
    let (got_name, token) = seen.trim().split_once(' ').unwrap();
    assert_eq!(got_name, name);
    let token: i64 = token.parse().expect("a numeric token");
    assert!(
        check(&c, &name, token).await,
        "the token is the grant's: named_lock_check is true while it runs"
    );
    std::fs::write(dir.join("go"), "").unwrap();
    assert_eq!(code(&finish(child).await), 0);
    assert!(!check(&c, &name, token).await, "released");

    // --shared: no token, and none inherited from the environment either
    let mut cmd = cli();
    cmd.env("PG_NAMED_LOCK_TOKEN", "stale")
        .args(["run", "--shared", &name, "--", "sh", "-c"])
        .arg("echo \"$PG_NAMED_LOCK_NAME ${PG_NAMED_LOCK_TOKEN-unset}\"");
    let o = tokio::time::timeout(PROMPTLY, cmd.output())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        format!("{name} unset")
    );
}

#[tokio::test]
async fn a_busy_lock_exits_75_without_running_the_command() {
    let (c, dir, name) = (client().await, scratch("busy"), unique("busy"));
    c.execute("SELECT lock_named($1)", &[&name]).await.unwrap();

    let o = finish(run_sh(&dir, &["--no-wait", &name], "touch ran")).await;
    assert_eq!(code(&o), 75, "{}", stderr(&o));
    assert!(stderr(&o).contains("locked elsewhere"), "{}", stderr(&o));
    assert_eq!(stderr(&o).lines().count(), 1, "one line: {}", stderr(&o));

    let o = finish(run_sh(
        &dir,
        &["--no-wait", "--conflict-exit-code", "3", "-q", &name],
        "touch ran",
    ))
    .await;
    assert_eq!(code(&o), 3);
    assert_eq!(stderr(&o), "", "--quiet");

    let started = Instant::now();
    let o = finish(run_sh(&dir, &["--timeout", "300ms", &name], "touch ran")).await;
    assert_eq!(code(&o), 75, "{}", stderr(&o));
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert!(stderr(&o).contains("after 300ms"), "{}", stderr(&o));
    assert!(!dir.join("ran").exists(), "the command never ran");

    c.execute("SELECT unlock_named($1)", &[&name])
        .await
        .unwrap();
    let o = finish(run_sh(&dir, &["--no-wait", &name], "touch ran")).await;
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(dir.join("ran").exists());
    let o = finish(run_sh(&dir, &["--timeout", "5s", &name], "exit 4")).await;
    assert_eq!(
        code(&o),
        4,
        "a free lock within the timeout: {}",
        stderr(&o)
    );
}

#[tokio::test]
async fn of_two_concurrent_no_wait_runs_one_runs() {
    let (dir, name) = (scratch("pair"), unique("pair"));
    let script = format!("touch ran.$$; {WAIT_FOR_GO}");
    let mut a = run_sh(&dir, &["--no-wait", &name], &script);
    let mut b = run_sh(&dir, &["--no-wait", &name], &script);
    // the loser ends first: the winner waits for "go"
    let deadline = Instant::now() + PROMPTLY;
    let first = loop {
        if let Some(s) = a.try_wait().unwrap() {
            break (s, b);
        }
        if let Some(s) = b.try_wait().unwrap() {
            break (s, a);
        }
        assert!(Instant::now() < deadline, "neither ended");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let (loser, winner) = first;
    assert_eq!(loser.code(), Some(75));
    std::fs::write(dir.join("go"), "").unwrap();
    assert_eq!(code(&finish(winner).await), 0);
    let ran = std::fs::read_dir(&dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("ran.")
        })
        .count();
    assert_eq!(ran, 1, "exactly one command ran");
}

#[tokio::test]
async fn wait_runs_after_the_holder() {
    let (c, dir, name) = (client().await, scratch("order"), unique("order"));
    let a = run_sh(
        &dir,
        &[&name],
        &format!("echo A-start >> log; {WAIT_FOR_GO}; echo A-end >> log"),
    );
    eventually("A runs", || async { read(&dir.join("log")) == "A-start\n" }).await;
    let b = run_sh(&dir, &["--wait", &name], "echo B >> log");
    eventually("B waits on the server", || async {
        cli_waiters(&c, &name).await == 1
    })
    .await;
    assert_eq!(read(&dir.join("log")), "A-start\n", "B has not run");
    std::fs::write(dir.join("go"), "").unwrap();
    assert_eq!(code(&finish(a).await), 0);
    assert_eq!(code(&finish(b).await), 0);
    assert_eq!(read(&dir.join("log")), "A-start\nA-end\nB\n");
}

#[tokio::test]
async fn a_lost_lock_connection_stops_the_command() {
    let (c, dir, name) = (client().await, scratch("lost"), unique("lost"));
    let child = run_sh(
        &dir,
        &[&name],
        "echo $$ > pid.tmp && mv pid.tmp pid; exec sleep 30",
    );
    let pid = pid_in(&dir.join("pid")).await;
    assert!(alive(pid));
    let (o, took) = lose_the_lock_connection(&c, &name, child).await;
    assert_eq!(code(&o), 70, "{}", stderr(&o));
    assert!(
        took < Duration::from_secs(5),
        "noticed within seconds: {took:?}"
    );
    assert!(!alive(pid), "the command is gone");
    assert!(
        stderr(&o).contains("lost the lock connection"),
        "{}",
        stderr(&o)
    );
    assert!(holders(&c, &name).await.is_empty());
}

#[tokio::test]
async fn a_command_that_ignores_sigterm_gets_sigkill_after_the_grace() {
    let (c, dir, name) = (client().await, scratch("grace"), unique("grace"));
    let script = "trap '' TERM; echo $$ > pid.tmp && mv pid.tmp pid; while :; do sleep 0.1; done";
    let child = run_sh(&dir, &["--grace", "1s", &name], script);
    let pid = pid_in(&dir.join("pid")).await;
    let (o, took) = lose_the_lock_connection(&c, &name, child).await;
    assert_eq!(code(&o), 70, "{}", stderr(&o));
    assert!(
        took >= Duration::from_secs(1),
        "SIGTERM was ignored for the grace period: {took:?}"
    );
    assert!(took < Duration::from_secs(6), "then SIGKILL: {took:?}");
    assert!(!alive(pid));
}

#[tokio::test]
async fn signals_are_forwarded_to_the_command() {
    let (c, dir) = (client().await, scratch("signals"));
    for (signo, what) in [
        (libc::SIGTERM, "term"),
        (libc::SIGINT, "int"),
        (libc::SIGHUP, "hup"),
        (libc::SIGQUIT, "quit"),
    ] {
        let name = unique(&format!("signal-{what}"));
        let pidfile = format!("pid-{what}");
        let child = run_sh(
            &dir,
            &[&name],
            &format!("echo $$ > {pidfile}.tmp && mv {pidfile}.tmp {pidfile}; exec sleep 30"),
        );
        let cli_pid = child.id().unwrap() as i32;
        let pid = pid_in(&dir.join(&pidfile)).await;
        cli_holds(&c, &name).await;
        // SAFETY: a signal to the process we started
        unsafe { libc::kill(cli_pid, signo) };
        let o = finish(child).await;
        assert_eq!(code(&o), 128 + signo, "{what}: {}", stderr(&o));
        assert!(!alive(pid));
        assert!(holders(&c, &name).await.is_empty(), "{what}: released");
    }

    // a command that handles the signal decides the exit code
    let name = unique("signal-trap");
    let child = run_sh(
        &dir,
        &[&name],
        "trap 'echo got-TERM > trapped; exit 42' TERM; touch ready; while :; do sleep 0.1; done",
    );
    let cli_pid = child.id().unwrap() as i32;
    file_appears(&dir.join("ready")).await;
    // SAFETY: a signal to the process we started
    unsafe { libc::kill(cli_pid, libc::SIGTERM) };
    let o = finish(child).await;
    assert_eq!(code(&o), 42, "{}", stderr(&o));
    assert_eq!(read(&dir.join("trapped")), "got-TERM\n");
}

#[tokio::test]
async fn from_a_terminal_the_command_gets_ctrl_c_once() {
    // In a terminal's foreground the command shares pg-named-lock's process group (it may
    // read the terminal), so ^C reaches it from the terminal and must not be forwarded a
    // second time; a SIGINT sent to pg-named-lock alone still is. util-linux `script`
    // provides the terminal.
    let script_bin = Path::new("/usr/bin/script");
    if !script_bin.exists() {
        eprintln!("skipped: no {}", script_bin.display());
        return;
    }
    let (dir, name) = (scratch("tty"), unique("tty"));
    // the command: counts the SIGINTs it gets, ends at the second; a loop of builtins, so
    // that each signal is handled at once (signals that arrive while one is pending merge)
    std::fs::write(
        dir.join("job.sh"),
        "n=0\n\
         trap 'n=$((n+1)); echo INT >> ints; [ $n -lt 2 ] || exit 5' INT\n\
         echo $PPID > ready.tmp && mv ready.tmp ready\n\
         while :; do :; done\n",
    )
    .unwrap();
    // `exec`: script runs the line with `$SHELL -c`, and a shell that stays in between (dash
    // does not exec a lone command) is in the foreground group too and dies of the ^C,
    // which script reports as 130 whatever the command did. SHELL is set so that the test
    // is the same under any caller's shell.
    let command = format!(
        "exec {bin} --dsn '{dsn}' run {name} -- sh job.sh",
        bin = env!("CARGO_BIN_EXE_pg-named-lock"),
        dsn = dsn(),
    );
    let mut tty = Command::new(script_bin)
        .args(["-qefc", &command, "/dev/null"])
        .current_dir(&dir)
        .env_remove("PGAPPNAME")
        .env("SHELL", "/bin/sh")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let cli_pid = pid_in(&dir.join("ready")).await;
    let mut keys = tty.stdin.take().unwrap();
    use tokio::io::AsyncWriteExt;
    keys.write_all(b"\x03").await.unwrap(); // ^C, typed at the terminal
    keys.flush().await.unwrap();
    let ints = || read(&dir.join("ints")).lines().count();
    eventually("the command got ^C", || async { ints() >= 1 }).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(ints(), 1, "^C arrived once");
    // SAFETY: a signal to pg-named-lock (started under script by this test)
    unsafe { libc::kill(cli_pid, libc::SIGINT) };
    eventually("the forwarded SIGINT arrived", || async { ints() == 2 }).await;
    let status = tokio::time::timeout(Duration::from_secs(30), tty.wait())
        .await
        .expect("the command ends")
        .unwrap();
    assert_eq!(status.code(), Some(5), "the command's own exit code");
    drop(keys);
}

#[tokio::test]
async fn a_signal_while_waiting_gives_up_the_wait() {
    let (c, dir, name) = (client().await, scratch("sigwait"), unique("sigwait"));
    c.execute("SELECT lock_named($1)", &[&name]).await.unwrap();
    let child = run_sh(&dir, &[&name], "touch ran");
    let cli_pid = child.id().unwrap() as i32;
    eventually("the CLI waits on the server", || async {
        cli_waiters(&c, &name).await == 1
    })
    .await;
    // SAFETY: a signal to the process we started
    unsafe { libc::kill(cli_pid, libc::SIGTERM) };
    let o = finish(child).await;
    assert_eq!(code(&o), 128 + libc::SIGTERM);
    assert!(!dir.join("ran").exists());
    // cancelled on the server, not merely abandoned (an abandoned wait would go on until
    // the lock is free: a waiting backend does not read its socket)
    eventually(
        "the wait is cancelled while the lock is still held",
        || async { cli_waiters(&c, &name).await == 0 },
    )
    .await;
    c.execute("SELECT unlock_named($1)", &[&name])
        .await
        .unwrap();
}

#[tokio::test]
async fn a_lease_is_renewed_while_the_command_runs() {
    let (c, dir, name) = (client().await, scratch("lease"), unique("lease"));
    let child = run_sh(
        &dir,
        &["--lease", "1s", &name],
        "echo \"$PG_NAMED_LOCK_TOKEN\" > token.tmp && mv token.tmp token; sleep 3",
    );
    file_appears(&dir.join("token")).await;
    let token: i64 = read(&dir.join("token"))
        .trim()
        .parse()
        .expect("a leased lock has a token");
    let started = Instant::now();
    let backend = cli_holds(&c, &name).await;
    // past two lease lengths: only renewals keep an idle session alive that long
    tokio::time::sleep(Duration::from_millis(2200).saturating_sub(started.elapsed())).await;
    let row = c
        .query_one(
            "SELECT lease_expires_at > now(), named_lock_check($1, $2) FROM advisory_locks_v
              WHERE lock_name = $1 AND granted",
            &[&name, &token],
        )
        .await
        .unwrap();
    assert!(row.get::<_, bool>(0), "the lease runs");
    assert!(row.get::<_, bool>(1), "the token is valid");
    assert_eq!(
        cli_holder(&c, &name).await,
        Some(backend),
        "the same session"
    );
    let o = finish(child).await;
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(holders(&c, &name).await.is_empty());
}

#[tokio::test]
async fn a_paused_holder_loses_its_lease_and_its_command() {
    // pg-named-lock stopped (SIGSTOP) cannot renew: the server ends its idle session at
    // the lease's end, and once it runs again it stops the command
    let (c, dir, name) = (client().await, scratch("paused"), unique("paused"));
    let child = run_sh(
        &dir,
        &["--lease", "1s", "--grace", "1s", &name],
        "echo $$ > pid.tmp && mv pid.tmp pid; exec sleep 30",
    );
    let cli_pid = child.id().unwrap() as i32;
    let pid = pid_in(&dir.join("pid")).await;
    cli_holds(&c, &name).await;
    // SAFETY: signals to the process we started
    unsafe { libc::kill(cli_pid, libc::SIGSTOP) };
    eventually(
        "the server ended the session of the lapsed lease",
        || async { holders(&c, &name).await.is_empty() },
    )
    .await;
    assert!(
        alive(pid),
        "the command runs on while pg-named-lock is stopped"
    );
    // SAFETY: as above
    unsafe { libc::kill(cli_pid, libc::SIGCONT) };
    let o = finish(child).await;
    assert_eq!(code(&o), 70, "{}", stderr(&o));
    assert!(!alive(pid), "stopped");
    assert!(
        stderr(&o).contains("lost the lock connection"),
        "{}",
        stderr(&o)
    );
}

#[tokio::test]
async fn key_equals_the_servers() {
    let c = client().await;
    for name in [
        "daily-report-job",
        "a",
        "日本語",
        "naïve café",
        "with space",
        "-dash",
    ] {
        let o = Command::new(env!("CARGO_BIN_EXE_pg-named-lock"))
            .args(["key", "--", name])
            .output()
            .await
            .unwrap();
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        let server: i64 = value(&c, "SELECT named_lock_key($1)", &[&name]).await;
        assert_eq!(
            String::from_utf8_lossy(&o.stdout).trim(),
            server.to_string(),
            "{name:?}"
        );
    }
    let o = Command::new(env!("CARGO_BIN_EXE_pg-named-lock"))
        .args(["key", "--json", "daily-report-job"])
        .output()
        .await
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let row = c
        .query_one(
            "SELECT named_lock_key('daily-report-job'), named_lock_key32('daily-report-job')",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(v["key"], row.get::<_, i64>(0));
    assert_eq!(v["key32"], row.get::<_, i32>(1));
    assert_eq!(v["name"], "daily-report-job");
}

#[tokio::test]
async fn status_and_stats_show_the_lock() {
    let (c, dir, name) = (client().await, scratch("status"), unique("status"));
    let child = run_sh(&dir, &[&name], WAIT_FOR_GO);
    let backend = cli_holds(&c, &name).await;

    let o = cli()
        .args(["status", &name, "--json"])
        .output()
        .await
        .unwrap();
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["lock_name"], name.as_str());
    assert_eq!(rows[0]["pid"], backend);
    assert_eq!(rows[0]["granted"], true);
    assert_eq!(rows[0]["mode"], "exclusive");
    assert_eq!(rows[0]["application_name"], "pg-named-lock");
    assert!(
        rows[0]["idle_for"].as_str().unwrap_or("").starts_with("PT"),
        "{rows:?}"
    );

    let o = cli().args(["status", &name]).output().await.unwrap();
    let table = String::from_utf8_lossy(&o.stdout);
    assert!(
        table.lines().next().unwrap().contains("lock_name"),
        "{table}"
    );
    assert!(
        table.contains(&name) && table.contains("(1 row)"),
        "{table}"
    );

    let o = cli().args(["status", "--json"]).output().await.unwrap();
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&o.stdout).unwrap();
    assert!(rows.iter().any(|r| r["lock_name"] == name.as_str()));
    let o = cli()
        .args(["status", &unique("nobody-holds-this")])
        .output()
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&o.stdout).contains("(0 rows)"));

    let o = cli().args(["stats", "--json"]).output().await.unwrap();
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&o.stdout).unwrap();
    let mine = rows
        .iter()
        .find(|r| r["lock_name"] == name.as_str())
        .expect("a stats row");
    assert!(mine["acquisitions"].as_i64().unwrap() >= 1, "{mine}");
    let o = cli().arg("stats").output().await.unwrap();
    let table = String::from_utf8_lossy(&o.stdout);
    assert!(
        table.lines().next().unwrap().contains("acquisitions"),
        "{table}"
    );
    assert!(table.contains(&name));

    std::fs::write(dir.join("go"), "").unwrap();
    assert_eq!(code(&finish(child).await), 0);
}

/// The test DSN's settings, for building others.
fn settings() -> Config {
    dsn().parse().expect("PGNL_TEST_DSN parses")
}

#[tokio::test]
async fn connection_errors_are_one_clear_line() {
    let dir = scratch("errors");
    // nothing listens on port 1
    for args in [&["status"][..], &["run", "x", "--", "touch", "ran"]] {
        let o = Command::new(env!("CARGO_BIN_EXE_pg-named-lock"))
            .args(["--dsn", "host=127.0.0.1 port=1 user=nobody dbname=none"])
            .args(args)
            .current_dir(&dir)
            .output()
            .await
            .unwrap();
        let err = stderr(&o);
        assert_eq!(code(&o), 69, "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.contains("cannot connect") && err.contains("127.0.0.1:1"),
            "{err}"
        );
    }
    assert!(!dir.join("ran").exists());

    // a database without the extension
    let c = client().await;
    let db = format!("pgnl_noext_{}", std::process::id());
    c.batch_execute(&format!("DROP DATABASE IF EXISTS {db}"))
        .await
        .unwrap();
    c.batch_execute(&format!("CREATE DATABASE {db}"))
        .await
        .unwrap();
    let s = settings();
    let mut env = libpq_env(&s);
    env.retain(|(k, _)| *k != "PGDATABASE");
    let o = Command::new(env!("CARGO_BIN_EXE_pg-named-lock"))
        .env("PGDATABASE", &db)
        .envs(env)
        .args(["run", "--no-wait", "x", "--", "touch", "ran"])
        .current_dir(&dir)
        .output()
        .await
        .unwrap();
    let err = stderr(&o);
    assert_eq!(code(&o), 69, "{err}");
    assert!(
        err.contains("CREATE EXTENSION pg_named_locks") && err.contains(&db),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(!dir.join("ran").exists());
    c.batch_execute(&format!("DROP DATABASE {db} WITH (FORCE)"))
        .await
        .unwrap();

    // a command that does not exist: 127, the lock released
    let name = unique("missing-command");
    let o = cli()
        .args(["run", &name, "--", "/nonexistent/command"])
        .output()
        .await
        .unwrap();
    assert_eq!(code(&o), 127, "{}", stderr(&o));
    assert!(holders(&c, &name).await.is_empty());
}

/// PGHOST, PGPORT, PGUSER, PGDATABASE, PGPASSWORD for the test server.
fn libpq_env(s: &Config) -> Vec<(&'static str, String)> {
    use tokio_postgres::config::Host;
    let mut env = vec![];
    match s.get_hosts().first() {
        Some(Host::Tcp(h)) => env.push(("PGHOST", h.clone())),
        Some(Host::Unix(p)) => env.push(("PGHOST", p.display().to_string())),
        None => {}
    }
    if let Some(p) = s.get_ports().first() {
        env.push(("PGPORT", p.to_string()));
    }
    if let Some(u) = s.get_user() {
        env.push(("PGUSER", u.to_owned()));
    }
    if let Some(d) = s.get_dbname() {
        env.push(("PGDATABASE", d.to_owned()));
    }
    if let Some(p) = s.get_password() {
        env.push(("PGPASSWORD", String::from_utf8_lossy(p).into_owned()));
    }
    env
}

#[tokio::test]
async fn connects_with_the_libpq_environment() {
    let (c, name) = (client().await, unique("env-conn"));
    let mut variants = vec![libpq_env(&settings())];
    if let Ok(sock) = std::env::var("PGNL_TEST_SOCKET_DIR") {
        let mut env = variants[0].clone();
        env.retain(|(k, _)| *k != "PGHOST");
        env.push(("PGHOST", sock));
        variants.push(env);
    }
    for env in variants {
        let o = Command::new(env!("CARGO_BIN_EXE_pg-named-lock"))
            .env_remove("PGAPPNAME")
            .envs(env.clone())
            .args([
                "run",
                "--no-wait",
                &name,
                "--",
                "sh",
                "-c",
                "echo $PG_NAMED_LOCK_NAME",
            ])
            .output()
            .await
            .unwrap();
        assert_eq!(code(&o), 0, "{env:?}: {}", stderr(&o));
        assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), name);
    }
    assert!(holders(&c, &name).await.is_empty());
}
