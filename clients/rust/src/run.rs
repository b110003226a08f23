//! `pg-named-lock run`: take the lock on a connection of its own, run the command, watch
//! the lock connection while it runs, release, exit with the command's code.

use std::ffi::OsString;
use std::io::ErrorKind;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::sync::Arc;
use std::time::Duration;

use pg_named_locks::NamedLock;
use tokio::sync::watch;
use tokio::time::{sleep, timeout, Instant};
use tokio_postgres::types::Type;
use tokio_postgres::{Client, NoTls};

use crate::conn::{self, Failure};
use crate::duration::show;
use crate::exit;
use crate::signals::{self, Signal};

/// How long to wait for the lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    Forever,
    No,
    Timeout(Duration),
}

pub struct Options {
    pub name: String,
    pub wait: Wait,
    pub shared: bool,
    pub lease: Option<Duration>,
    pub conflict_exit_code: u8,
    pub grace: Duration,
    pub quiet: bool,
    pub verbose: bool,
    pub command: Vec<OsString>,
}

/// While the command runs, the lock connection is checked this often (`SELECT 1`, or
/// `named_lock_renew` when a lease renewal is due).
const CHECK_EVERY: Duration = Duration::from_secs(1);
/// A lock connection that has not answered for this long counts as lost.
const STALE_AFTER: Duration = Duration::from_secs(10);
/// The unlock after the command, and a cancel request, get this long.
const UNLOCK_TIMEOUT: Duration = Duration::from_secs(5);

pub async fn run(cfg: &tokio_postgres::Config, o: Options) -> u8 {
    // Before connecting: a signal during the lock wait ends the wait.
    let mut sigs = match signals::install() {
        Ok(s) => s,
        Err(e) => {
            return fail(&Failure::new(
                exit::UNAVAILABLE,
                format!("cannot install signal handlers: {e}"),
            ))
        }
    };
    let session = match conn::open(cfg).await {
        Ok(s) => s,
        Err(f) => return fail(&f),
    };
    if o.lease.is_some() && !conn::at_least(&session.version, (0, 3)) {
        return fail(&Failure::new(
            exit::UNAVAILABLE,
            format!(
                "--lease needs pg_named_locks 0.3.0 or later; this database has {} (run ALTER EXTENSION pg_named_locks UPDATE)",
                session.version
            ),
        ));
    }
    let client = session.client;
    let closed = session.closed;
    // The waits are --wait / --timeout's business, not the role's or database's settings.
    if let Err(e) = client
        .batch_execute("SET statement_timeout = 0; SET lock_timeout = 0")
        .await
    {
        return fail(&Failure::new(
            exit::UNAVAILABLE,
            format!("cannot set up the session: {}", crate::describe(&e)),
        ));
    }

    // ---- the lock
    let lock = {
        let acquire = acquire(&client, &o);
        tokio::pin!(acquire);
        tokio::select! {
            r = &mut acquire => r,
            Some(sig) = sigs.recv() => {
                // Stop the server's wait too, so that a grant cannot come after we left.
                let _ = timeout(UNLOCK_TIMEOUT, client.cancel_token().cancel_query(NoTls)).await;
                if o.verbose {
                    eprintln!(
                        "pg-named-lock: {} while waiting for {:?}; not running the command",
                        signals::name(sig.signo),
                        o.name
                    );
                }
                return (128 + sig.signo) as u8;
            }
        }
    };
    let lock = match lock {
        Ok(Some(lock)) => lock,
        Ok(None) => {
            if !o.quiet {
                let why = match o.wait {
                    Wait::Timeout(t) => format!("still locked elsewhere after {}", show(t)),
                    _ => "locked elsewhere".to_owned(),
                };
                eprintln!(
                    "pg-named-lock: {:?} is {why}; not running the command",
                    o.name
                );
            }
            return o.conflict_exit_code;
        }
        Err(e) => {
            let why = closed
                .borrow()
                .clone()
                .unwrap_or_else(|| crate::describe(&e));
            return fail(&Failure::new(
                exit::UNAVAILABLE,
                format!("cannot lock {:?}: {why}", o.name),
            ));
        }
    };
    if o.verbose {
        match lock.token() {
            Some(t) => eprintln!("pg-named-lock: holding {:?} (fencing token {t})", o.name),
            None => eprintln!("pg-named-lock: holding {:?}", o.name),
        }
    }

    // ---- the command
    // From an interactive shell the command shares our process group, so that it can use
    // the terminal (and gets ^C from it directly); otherwise it leads a group of its own,
    // and signals and the kill on a lost lock reach everything it started.
    let own_group = !signals::in_terminal_foreground();
    let mut cmd = tokio::process::Command::new(&o.command[0]);
    cmd.args(&o.command[1..]).env("PG_NAMED_LOCK_NAME", &o.name);
    match lock.token() {
        Some(t) => cmd.env("PG_NAMED_LOCK_TOKEN", t.to_string()),
        None => cmd.env_remove("PG_NAMED_LOCK_TOKEN"),
    };
    if own_group {
        cmd.process_group(0);
    }
    die_with_parent(&mut cmd);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.kind() == ErrorKind::NotFound {
                exit::NOT_FOUND
            } else {
                exit::CANNOT_EXECUTE
            };
            eprintln!("pg-named-lock: cannot run {:?}: {e}", o.command[0]);
            release(lock).await;
            return code;
        }
    };
    let pid = child.id().map_or(0, |p| p as i32);
    let target = if own_group { -pid } else { pid };
    let forward = |sig: Signal| {
        // A terminal's signal went to its whole foreground group: a command in our group
        // has it already.
        if pid > 0 && (own_group || !sig.from_terminal) {
            signals::send(target, sig.signo);
        }
    };

    let mut keeper = tokio::spawn(keep(
        Arc::clone(&client),
        o.name.clone(),
        o.lease,
        closed.clone(),
    ));
    let lost = loop {
        tokio::select! {
            status = child.wait() => break Err(status),
            Some(sig) = sigs.recv() => forward(sig),
            why = &mut keeper => break Ok(why.unwrap_or_else(|e| format!("the connection check failed: {e}"))),
        }
    };
    let status = match lost {
        Err(status) => status,
        Ok(why) => {
            eprintln!(
                "pg-named-lock: lost the lock connection for {:?} ({why}); stopping the command: SIGTERM, SIGKILL after {}",
                o.name,
                show(o.grace)
            );
            signals::send(target, libc::SIGTERM);
            let grace = sleep(o.grace);
            tokio::pin!(grace);
            let mut killed = false;
            let status = loop {
                tokio::select! {
                    status = child.wait() => break status,
                    Some(sig) = sigs.recv() => forward(sig),
                    _ = &mut grace, if !killed => {
                        killed = true;
                        signals::send(target, libc::SIGKILL);
                    }
                }
            };
            if own_group {
                // whatever the command started and left behind runs without the lock too
                signals::send(target, libc::SIGKILL);
            }
            if let Err(e) = status {
                eprintln!("pg-named-lock: waiting for the command: {e}");
            }
            return exit::LOCK_LOST;
        }
    };
    keeper.abort();
    let code = match status {
        Ok(s) => exit_code(s),
        Err(e) => {
            eprintln!("pg-named-lock: waiting for the command: {e}");
            exit::UNAVAILABLE
        }
    };
    if o.verbose {
        eprintln!(
            "pg-named-lock: the command exited ({code}); releasing {:?}",
            o.name
        );
    }
    release(lock).await;
    code
}

/// Linux: the command gets SIGKILL if this process dies without stopping it (SIGKILL, a
/// crash): its session, and with it the lock, ends then too.
#[cfg(target_os = "linux")]
fn die_with_parent(cmd: &mut tokio::process::Command) {
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // the parent may have died before the prctl
            if libc::getppid() != parent {
                libc::raise(libc::SIGKILL);
            }
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn die_with_parent(_cmd: &mut tokio::process::Command) {}

async fn acquire(
    client: &Arc<Client>,
    o: &Options,
) -> Result<Option<NamedLock>, tokio_postgres::Error> {
    let n = o.name.as_str();
    match (o.shared, o.lease, o.wait) {
        (true, _, Wait::Forever) => NamedLock::acquire_shared(client, n).await.map(Some),
        (true, _, Wait::No) => NamedLock::try_acquire_shared(client, n).await,
        (true, _, Wait::Timeout(t)) => NamedLock::acquire_shared_timeout(client, n, t).await,
        (false, Some(l), Wait::Forever) => NamedLock::acquire_lease(client, n, l).await.map(Some),
        (false, Some(l), Wait::No) => {
            NamedLock::acquire_lease_timeout(client, n, l, Duration::ZERO).await
        }
        (false, Some(l), Wait::Timeout(t)) => {
            NamedLock::acquire_lease_timeout(client, n, l, t).await
        }
        (false, None, Wait::Forever) => NamedLock::acquire(client, n).await.map(Some),
        (false, None, Wait::No) => NamedLock::try_acquire(client, n).await,
        (false, None, Wait::Timeout(t)) => NamedLock::acquire_timeout(client, n, t).await,
    }
}

/// Watches the lock connection while the command runs; returns why it counts as lost.
/// Every [`CHECK_EVERY`] (a third of the lease if shorter) one round trip: the lease's
/// renewal when due (every third of the lease), else `SELECT 1`. Lost: the connection
/// ended, a check failed, none answered for [`STALE_AFTER`], the lease could not be renewed
/// before it ran out, or the server says the lease is gone.
async fn keep(
    client: Arc<Client>,
    name: String,
    lease: Option<Duration>,
    mut closed: watch::Receiver<Option<String>>,
) -> String {
    let ended = |c: &watch::Receiver<Option<String>>| c.borrow().clone();
    let renew_every = lease.map(|l| l / 3);
    let mut ticks = tokio::time::interval(renew_every.map_or(CHECK_EVERY, |r| r.min(CHECK_EVERY)));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The grant was the last answer; a lease was taken (or renewed) just before it.
    let mut last_ok = Instant::now();
    let mut last_renewal = last_ok;
    loop {
        tokio::select! {
            _ = closed.changed() => return ended(&closed).unwrap_or_else(|| "the connection ended".into()),
            _ = ticks.tick() => {}
        }
        if let Some(why) = ended(&closed) {
            return why;
        }
        let sent = Instant::now();
        let renewing = renew_every.is_some_and(|r| sent >= last_renewal + r);
        let mut deadline = last_ok + STALE_AFTER;
        if let Some(l) = lease {
            deadline = deadline.min(last_renewal + l);
        }
        let check = async {
            if renewing {
                client
                    .query_typed_one("SELECT named_lock_renew($1)", &[(&name, Type::TEXT)])
                    .await
                    .map(|r| r.get::<_, bool>(0))
            } else {
                client.simple_query("SELECT 1").await.map(|_| true)
            }
        };
        tokio::select! {
            _ = closed.changed() => return ended(&closed).unwrap_or_else(|| "the connection ended".into()),
            r = tokio::time::timeout_at(deadline, check) => match r {
                Err(_) if lease.is_some_and(|l| deadline == last_renewal + l) => {
                    return "the lease could not be renewed before it ran out".into()
                }
                Err(_) => return format!("no answer from the server for {}", show(STALE_AFTER)),
                Ok(Err(e)) => return ended(&closed).unwrap_or_else(|| crate::describe(&e)),
                Ok(Ok(false)) => return "the server says this session no longer holds the lease".into(),
                Ok(Ok(true)) => {
                    last_ok = sent;
                    if renewing {
                        last_renewal = sent;
                    }
                }
            }
        }
    }
}

async fn release(lock: NamedLock) {
    let name = lock.name().to_owned();
    match timeout(UNLOCK_TIMEOUT, lock.release()).await {
        Ok(Ok(true)) => {}
        Ok(Ok(false)) => eprintln!("pg-named-lock: {name:?} was no longer held by this session at the end"),
        Ok(Err(e)) => eprintln!(
            "pg-named-lock: cannot unlock {name:?}: {}; it is released when the session ends (now)",
            crate::describe(&e)
        ),
        Err(_) => eprintln!(
            "pg-named-lock: unlocking {name:?} took longer than {}; it is released when the session ends (now)",
            show(UNLOCK_TIMEOUT)
        ),
    }
}

/// The command's exit code, or 128 + the signal that ended it (as shells report it).
fn exit_code(s: ExitStatus) -> u8 {
    match (s.code(), s.signal()) {
        (Some(c), _) => c as u8,
        (None, Some(sig)) => (128 + sig) as u8,
        (None, None) => exit::UNAVAILABLE,
    }
}

fn fail(f: &Failure) -> u8 {
    eprintln!("pg-named-lock: {}", f.message);
    f.code
}
