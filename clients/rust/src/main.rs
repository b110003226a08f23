//! `pg-named-lock`: run a command under a pg_named_locks lock, and look at locks.
//!
//! ```text
//! pg-named-lock run NAME [--wait | --no-wait | --timeout 30s] [--shared] [--lease 60s]
//!                        [--conflict-exit-code N] [--grace 10s] -- COMMAND [ARGS...]
//! pg-named-lock status [NAME] [--json]
//! pg-named-lock stats [--json]
//! pg-named-lock key NAME [--json]
//! ```
//!
//! Exit codes are in [`exit`]; the connection comes from `--dsn` and libpq's environment
//! variables (`conn`).

use std::ffi::OsString;
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use clap::{ArgGroup, Args, Parser, Subcommand};
use serde::Serialize;

mod conn;
mod duration;
mod output;
mod run;
mod signals;

/// Exit codes (sysexits.h names where one fits).
pub mod exit {
    /// The lock is held elsewhere (`--no-wait`) or the timeout passed: the command did not
    /// run. EX_TEMPFAIL; `--conflict-exit-code` changes it.
    pub const CONFLICT: u8 = 75;
    /// Cannot connect, the extension is missing, or the server refused the lock call: the
    /// command did not run. EX_UNAVAILABLE.
    pub const UNAVAILABLE: u8 = 69;
    /// The lock connection was lost while the command ran; the command was stopped
    /// (SIGTERM, then SIGKILL after the grace period). EX_SOFTWARE.
    pub const LOCK_LOST: u8 = 70;
    /// Invalid arguments or connection settings (clap's own code for usage errors).
    pub const USAGE: u8 = 2;
    /// The command was found but could not be executed (as in shells).
    pub const CANNOT_EXECUTE: u8 = 126;
    /// The command was not found (as in shells).
    pub const NOT_FOUND: u8 = 127;
}

const AFTER_HELP: &str = "\
Connection: --dsn, else the libpq environment variables PGHOST (a host name, an IP address \
or a Unix socket directory), PGHOSTADDR, PGPORT, PGUSER, PGDATABASE, PGPASSWORD, PGAPPNAME, \
PGOPTIONS, PGCONNECT_TIMEOUT; no TLS. Settings the DSN leaves out come from the environment.";

const RUN_AFTER_HELP: &str = "\
The command gets PG_NAMED_LOCK_NAME (the lock name) and PG_NAMED_LOCK_TOKEN (the lock's fencing \
token; unset for --shared, which has none).

While it runs, the lock connection is checked every second (SELECT 1, or the lease's renewal). \
If that connection is lost, the command is sent SIGTERM, then SIGKILL after --grace, and \
pg-named-lock exits 70. SIGTERM, SIGINT, SIGHUP and SIGQUIT are forwarded to the command.

Exit codes: the command's own (128+N if signal N ended it); 75 (or --conflict-exit-code) when \
the lock is busy or the timeout passed, without running the command; 69 cannot connect, \
extension missing or lock error (not run); 70 lock connection lost while running; \
126/127 command not executable / not found; 2 usage error.";

#[derive(Parser)]
#[command(
    name = "pg-named-lock",
    version,
    about = "Run a command under a PostgreSQL named lock (pg_named_locks), and inspect locks",
    after_help = AFTER_HELP
)]
struct Cli {
    /// Connection string: "host=... port=... user=... dbname=..." or postgresql://...
    #[arg(long, global = true, value_name = "DSN")]
    dsn: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Take the lock NAME on a connection of its own, run COMMAND, release it
    #[command(after_help = RUN_AFTER_HELP)]
    Run(RunArgs),
    /// Show advisory locks held and awaited (advisory_locks_v), optionally of one name
    Status {
        /// Only this lock (by name, or by its key for locks taken by key)
        name: Option<String>,
        /// Print a JSON array of the view's rows
        #[arg(long)]
        json: bool,
    },
    /// Show per-name lock statistics (named_lock_stats)
    Stats {
        /// Print a JSON array of the view's rows
        #[arg(long)]
        json: bool,
    },
    /// Print named_lock_key(NAME), the bigint key of the lock (computed locally, no server)
    Key {
        name: String,
        /// Print {"name": ..., "key": ..., "key32": ...}
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
#[command(group(ArgGroup::new("waiting").args(["wait", "no_wait", "timeout"])))]
struct RunArgs {
    /// The lock's name
    name: String,
    /// Wait until the lock is free (the default)
    #[arg(long)]
    wait: bool,
    /// Do not wait: if the lock is held elsewhere, exit 75 without running the command
    #[arg(long, short = 'n')]
    no_wait: bool,
    /// Wait at most this long (30s, 500ms, 2m, ...), then exit 75 without running the command
    #[arg(long, value_name = "DURATION", value_parser = duration::parse)]
    timeout: Option<Duration>,
    /// Take the lock in shared mode (any number of shared holders; no fencing token)
    #[arg(long)]
    shared: bool,
    /// Hold the lock under a server-side lease, renewed every third of it while the command
    /// runs: if this process stops renewing, the server ends its session (extension 0.3.0)
    #[arg(long, value_name = "DURATION", value_parser = duration::parse_lease, conflicts_with = "shared")]
    lease: Option<Duration>,
    /// Exit code when the lock is busy or the timeout passed
    #[arg(long, value_name = "N", default_value_t = exit::CONFLICT)]
    conflict_exit_code: u8,
    /// After a lost lock connection: time between SIGTERM and SIGKILL to the command
    #[arg(long, value_name = "DURATION", value_parser = duration::parse, default_value = "10s")]
    grace: Duration,
    /// Say nothing when the lock is busy (for cron: no mail for a skipped run)
    #[arg(long, short = 'q')]
    quiet: bool,
    /// Say on stderr when the lock is taken (with its token) and released
    #[arg(long, short = 'v')]
    verbose: bool,
    /// The command and its arguments (after --)
    #[arg(required = true, trailing_var_arg = true, value_name = "COMMAND")]
    command: Vec<OsString>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("pg-named-lock: cannot start: {e}");
            return ExitCode::from(exit::UNAVAILABLE);
        }
    };
    let code = runtime.block_on(dispatch(cli));
    // Connection tasks end with the runtime: the server ends those sessions.
    drop(runtime);
    ExitCode::from(code)
}

async fn dispatch(cli: Cli) -> u8 {
    if let Command::Key { name, json } = &cli.command {
        return key(name, *json);
    }
    let env = |name: &str| std::env::var(name).ok();
    let cfg = match conn::config(cli.dsn.as_deref(), &env) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("pg-named-lock: invalid connection settings: {e}");
            return exit::USAGE;
        }
    };
    match cli.command {
        Command::Run(a) => {
            let wait = match (a.no_wait, a.timeout) {
                (true, _) => run::Wait::No,
                (false, Some(t)) => run::Wait::Timeout(t),
                (false, None) => run::Wait::Forever,
            };
            let options = run::Options {
                name: a.name,
                wait,
                shared: a.shared,
                lease: a.lease,
                conflict_exit_code: a.conflict_exit_code,
                grace: a.grace,
                quiet: a.quiet,
                verbose: a.verbose,
                command: a.command,
            };
            run::run(&cfg, options).await
        }
        Command::Status { name, json } => report(&cfg, Report::Status(name), json).await,
        Command::Stats { json } => report(&cfg, Report::Stats, json).await,
        Command::Key { .. } => unreachable!("handled above"),
    }
}

#[derive(Serialize)]
struct KeyOutput<'a> {
    name: &'a str,
    key: i64,
    key32: i32,
}

fn key(name: &str, json: bool) -> u8 {
    let line = if json {
        let k = KeyOutput {
            name,
            key: pg_named_locks::key(name),
            key32: pg_named_locks::key32(name),
        };
        serde_json::to_string(&k).expect("serializable")
    } else {
        pg_named_locks::key(name).to_string()
    };
    print_out(&format!("{line}\n"))
}

enum Report {
    Status(Option<String>),
    Stats,
}

const STATUS_SQL: &str = "
SELECT pg_catalog.row_to_json(v)::text FROM advisory_locks_v v
 WHERE $1::text IS NULL OR v.lock_name = $1 OR (v.key_kind = 'bigint' AND v.lock_key = $2)
 ORDER BY v.lock_name, v.lock_key, v.key1, v.key2, v.granted DESC, v.queue_position, v.pid";

const STATS_SQL: &str = "
SELECT pg_catalog.row_to_json(s)::text FROM named_lock_stats s ORDER BY s.lock_name, s.key_kind";

async fn report(cfg: &tokio_postgres::Config, what: Report, json: bool) -> u8 {
    let session = match conn::open(cfg).await {
        Ok(s) => s,
        Err(f) => {
            eprintln!("pg-named-lock: {}", f.message);
            return f.code;
        }
    };
    let c = &session.client;
    if json {
        // intervals (idle_for) as ISO 8601 durations, for programs
        if let Err(e) = c.batch_execute("SET IntervalStyle = iso_8601").await {
            eprintln!("pg-named-lock: {}", describe(&e));
            return exit::UNAVAILABLE;
        }
    }
    let rows = match &what {
        Report::Status(name) => {
            let key = name.as_deref().map_or(0, pg_named_locks::key);
            c.query(STATUS_SQL, &[name, &key]).await
        }
        Report::Stats => c.query(STATS_SQL, &[]).await,
    };
    let rows: Vec<output::Row> = match rows {
        Ok(rows) => rows
            .iter()
            .filter_map(|r| serde_json::from_str(r.get::<_, &str>(0)).ok())
            .collect(),
        Err(e) => {
            eprintln!("pg-named-lock: {}", describe(&e));
            return exit::UNAVAILABLE;
        }
    };
    if json {
        let text = serde_json::to_string_pretty(&rows).expect("serializable");
        return print_out(&format!("{text}\n"));
    }
    let text = match what {
        Report::Status(_) => output::table(&STATUS_COLUMNS, &rows),
        Report::Stats => {
            // every column of the view, in its order
            let columns: Vec<output::Column> = STATS_COLUMNS
                .iter()
                .filter(|c| rows.is_empty() || rows[0].contains_key(c.header))
                .map(|c| output::Column {
                    header: c.header,
                    cell: c.cell,
                })
                .collect();
            output::table(&columns, &rows)
        }
    };
    print_out(&text)
}

macro_rules! col {
    ($header:literal, $field:literal) => {
        output::Column {
            header: $header,
            cell: |r| output::field(r, $field),
        }
    };
}

const STATUS_COLUMNS: [output::Column; 12] = [
    col!("pid", "pid"),
    output::Column {
        header: "lock_name",
        cell: |r| match r.get("lock_name") {
            Some(serde_json::Value::String(s)) => s.clone(),
            _ => match output::field(r, "key_kind").as_str() {
                "pair" => format!(
                    "({}, {})",
                    output::field(r, "key1"),
                    output::field(r, "key2")
                ),
                _ => format!("key {}", output::field(r, "lock_key")),
            },
        },
    },
    col!("mode", "mode"),
    col!("granted", "granted"),
    output::Column {
        header: "since",
        cell: |r| match r.get("granted") {
            Some(serde_json::Value::Bool(true)) => output::field(r, "held_since"),
            _ => output::field(r, "waiting_since"),
        },
    },
    col!("idle_for", "idle_for"),
    col!("queue", "queue_position"),
    col!("blocked_by", "blocked_by"),
    col!("lease_expires_at", "lease_expires_at"),
    col!("application_name", "application_name"),
    col!("state", "backend_state"),
    col!("database", "database"),
];

const STATS_COLUMNS: [output::Column; 10] = [
    col!("lock_name", "lock_name"),
    col!("key_kind", "key_kind"),
    col!("acquisitions", "acquisitions"),
    col!("immediate_acquisitions", "immediate_acquisitions"),
    col!("waits", "waits"),
    col!("total_wait_ms", "total_wait_ms"),
    col!("max_wait_ms", "max_wait_ms"),
    col!("try_failures", "try_failures"),
    col!("timeouts", "timeouts"),
    col!("last_acquired", "last_acquired"),
];

/// Writes to stdout; a closed pipe (`pg-named-lock status | head`) is not an error.
fn print_out(text: &str) -> u8 {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        Ok(()) => 0,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => 0,
        Err(e) => {
            eprintln!("pg-named-lock: writing the output: {e}");
            1
        }
    }
}

/// An error with its causes on one line (tokio-postgres's `Display` shows only the
/// outermost, e.g. "db error"); for a server error: its severity, message and hint.
pub fn describe(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        let mut s = format!("{}: {}", db.severity(), db.message());
        if let Some(hint) = db.hint() {
            s.push_str(&format!(" (hint: {hint})"));
        }
        return s;
    }
    let mut s = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s.replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("pg-named-lock").chain(args.iter().copied()))
    }

    fn run_args(args: &[&str]) -> RunArgs {
        match parse(args).unwrap().command {
            Command::Run(a) => a,
            _ => panic!("not run"),
        }
    }

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn run_arguments() {
        let a = run_args(&["run", "job", "--", "sh", "-c", "exit 3"]);
        assert_eq!(a.name, "job");
        assert_eq!(a.command, ["sh", "-c", "exit 3"]);
        assert!(!a.no_wait && !a.wait && a.timeout.is_none());
        assert_eq!(a.conflict_exit_code, 75);
        assert_eq!(a.grace, Duration::from_secs(10));

        let a = run_args(&["run", "--no-wait", "job", "--", "ls", "-l", "--color"]);
        assert!(a.no_wait);
        assert_eq!(a.command, ["ls", "-l", "--color"]);
        // options after the name, and a command without "--"
        let a = run_args(&[
            "run",
            "job",
            "--timeout",
            "1m30s",
            "--conflict-exit-code",
            "0",
            "true",
        ]);
        assert_eq!(a.timeout, Some(Duration::from_secs(90)));
        assert_eq!(a.conflict_exit_code, 0);
        assert_eq!(a.command, ["true"]);
        // the command's own options stay the command's
        let a = run_args(&["run", "job", "--", "cmd", "--no-wait", "--shared"]);
        assert!(!a.no_wait && !a.shared);
        assert_eq!(a.command, ["cmd", "--no-wait", "--shared"]);
        let a = run_args(&[
            "--dsn", "host=x", "run", "job", "--lease", "60s", "--", "cmd",
        ]);
        assert_eq!(a.lease, Some(Duration::from_secs(60)));
    }

    #[test]
    fn run_argument_errors() {
        for bad in [
            &["run", "job"][..],                                  // no command
            &["run", "job", "--wait", "--no-wait", "--", "x"],    // one way of waiting
            &["run", "job", "--no-wait", "--timeout", "1s", "x"], // idem
            &["run", "job", "--shared", "--lease", "10s", "x"],   // shared locks have no lease
            &["run", "job", "--lease", "500ms", "x"],             // lease >= 1s
            &["run", "job", "--timeout", "soon", "x"],
            &["run", "job", "--conflict-exit-code", "256", "x"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn key_is_local_md5() {
        assert_eq!(pg_named_locks::key("daily-report-job"), 2900925584919938136);
    }
}
