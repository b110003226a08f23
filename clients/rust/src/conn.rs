//! Connection settings (libpq's environment variables, or `--dsn`), connecting, and the
//! check that the extension is installed.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_postgres::config::{Host, SslMode};
use tokio_postgres::{Client, Config, NoTls};

/// The `application_name` of every connection, unless PGAPPNAME or the DSN sets one:
/// monitoring (`advisory_locks_v.application_name`) shows the lock holder as this.
pub const APPLICATION_NAME: &str = "pg-named-lock";
const DEFAULT_PORT: u16 = 5432;
/// libpq's defaults for the socket directory (Debian's, then upstream's).
const SOCKET_DIRS: [&str; 3] = ["/var/run/postgresql", "/run/postgresql", "/tmp"];

/// A failure that stops the program, with its exit code.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub message: String,
}

impl Failure {
    pub fn new(code: u8, message: impl Into<String>) -> Failure {
        Failure {
            code,
            message: message.into(),
        }
    }
}

/// The settings of a connection: `dsn` (a key=value string or a postgresql:// URL) first,
/// then, for what it leaves out, the libpq environment variables PGHOST, PGHOSTADDR,
/// PGPORT, PGUSER, PGDATABASE, PGPASSWORD, PGAPPNAME, PGOPTIONS, PGCONNECT_TIMEOUT and
/// PGSSLMODE, then libpq's defaults. `env` reads a variable (std::env::var in the
/// program, a map in the tests).
pub fn config(dsn: Option<&str>, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, String> {
    let mut c = match dsn {
        Some(d) => d
            .parse::<Config>()
            .map_err(|e| format!("invalid --dsn: {}", crate::describe(&e)))?,
        None => Config::new(),
    };
    let var = |name: &str| env(name).filter(|v| !v.is_empty());

    if c.get_ports().is_empty() {
        if let Some(ports) = var("PGPORT") {
            for p in ports.split(',') {
                let p = p.trim();
                let port = if p.is_empty() {
                    DEFAULT_PORT
                } else {
                    p.parse::<u16>()
                        .map_err(|_| format!("PGPORT: {p:?} is not a port number"))?
                };
                c.port(port);
            }
        }
    }
    if c.get_hosts().is_empty() && c.get_hostaddrs().is_empty() {
        let port = c.get_ports().first().copied().unwrap_or(DEFAULT_PORT);
        match (var("PGHOST"), var("PGHOSTADDR")) {
            (Some(hosts), _) => {
                for h in hosts.split(',') {
                    let h = h.trim();
                    c.host(if h.is_empty() {
                        default_host(port)
                    } else {
                        h.to_owned()
                    });
                }
            }
            (None, Some(addr)) => {
                let ip = addr
                    .trim()
                    .parse()
                    .map_err(|_| format!("PGHOSTADDR: {addr:?} is not an IP address"))?;
                c.hostaddr(ip);
            }
            (None, None) => {
                c.host(default_host(port));
            }
        }
    }
    // A setting the DSN leaves out, from its variable: `from_env!(getter, setter, "PGVAR")`.
    macro_rules! from_env {
        ($get:ident, $set:ident, $var:literal) => {
            if c.$get().is_none() {
                if let Some(v) = var($var) {
                    c.$set(v);
                }
            }
        };
    }
    from_env!(get_user, user, "PGUSER");
    from_env!(get_dbname, dbname, "PGDATABASE");
    from_env!(get_password, password, "PGPASSWORD");
    from_env!(get_options, options, "PGOPTIONS");
    if c.get_application_name().is_none() {
        c.application_name(var("PGAPPNAME").unwrap_or_else(|| APPLICATION_NAME.to_owned()));
    }
    if c.get_connect_timeout().is_none() {
        let secs = match var("PGCONNECT_TIMEOUT") {
            Some(t) => t
                .trim()
                .parse::<u64>()
                .map_err(|_| format!("PGCONNECT_TIMEOUT: {t:?} is not a number of seconds"))?,
            None => 10,
        };
        if secs > 0 {
            c.connect_timeout(Duration::from_secs(secs.max(2)));
        }
    }
    let tls_required = match (dsn.is_some_and(|d| d.contains("sslmode")), var("PGSSLMODE")) {
        (true, _) => c.get_ssl_mode() == SslMode::Require,
        (false, Some(mode)) => match mode.as_str() {
            "disable" | "allow" | "prefer" => false,
            "require" | "verify-ca" | "verify-full" => true,
            other => return Err(format!("PGSSLMODE: unknown mode {other:?}")),
        },
        (false, None) => false,
    };
    if tls_required {
        return Err(
            "sslmode requires TLS, which pg-named-lock does not support: connect over a Unix socket or a trusted network"
                .into(),
        );
    }
    // The lock connection must notice a dead server or network while it waits for a lock
    // (a query in flight for hours); while a command runs, it also pings every second.
    c.keepalives(true)
        .keepalives_idle(Duration::from_secs(10))
        .keepalives_interval(Duration::from_secs(5))
        .keepalives_retries(3)
        .tcp_user_timeout(Duration::from_secs(30));
    Ok(c)
}

/// libpq's default host: the socket directory that has the server's socket, else
/// localhost over TCP.
fn default_host(port: u16) -> String {
    SOCKET_DIRS
        .iter()
        .find(|d| Path::new(d).join(format!(".s.PGSQL.{port}")).exists())
        .map_or_else(|| "localhost".to_owned(), |d| (*d).to_owned())
}

/// Where a connection goes, for messages: `host:port` or the socket file, comma-separated
/// when there are several.
pub fn targets(c: &Config) -> String {
    let ports = c.get_ports();
    let port = |i: usize| {
        ports
            .get(i)
            .or_else(|| ports.first())
            .copied()
            .unwrap_or(DEFAULT_PORT)
    };
    let n = c.get_hosts().len().max(c.get_hostaddrs().len());
    (0..n)
        .map(|i| match (c.get_hostaddrs().get(i), c.get_hosts().get(i)) {
            (Some(ip), _) => format!("{ip}:{}", port(i)),
            (None, Some(Host::Tcp(h))) => format!("{h}:{}", port(i)),
            (None, Some(Host::Unix(dir))) => {
                format!("{}", dir.join(format!(".s.PGSQL.{}", port(i))).display())
            }
            (None, None) => unreachable!("n is the longer list's length"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// A connection to a database that has the extension.
pub struct Session {
    pub client: Arc<Client>,
    /// `Some(why)` once the connection has ended.
    pub closed: watch::Receiver<Option<String>>,
    /// The installed extension's version, e.g. "0.3.0".
    pub version: String,
}

/// Connects, and checks that the extension is installed; its schema becomes the
/// session's `search_path`, so it is found wherever it was installed. Failures carry
/// exit code 69 and say what to do.
pub async fn open(c: &Config) -> Result<Session, Failure> {
    let unavailable = |m: String| Failure::new(crate::exit::UNAVAILABLE, m);
    let (client, connection) = c.connect(NoTls).await.map_err(|e| {
        unavailable(format!(
            "cannot connect to the server at {}: {}",
            targets(c),
            crate::describe(&e)
        ))
    })?;
    let (tx, closed) = watch::channel(None);
    tokio::spawn(async move {
        let why = match connection.await {
            Ok(()) => "the server closed the connection".to_owned(),
            Err(e) => crate::describe(&e),
        };
        let _ = tx.send(Some(why));
    });
    let row = client
        .query_one(
            "SELECT pg_catalog.current_database()::text, e.extversion::text, n.nspname::text
               FROM (SELECT 1) AS one
               LEFT JOIN pg_catalog.pg_extension e ON e.extname = 'pg_named_locks'
               LEFT JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace",
            &[],
        )
        .await
        .map_err(|e| unavailable(format!("cannot query the server: {}", crate::describe(&e))))?;
    let (db, version, schema): (String, Option<String>, Option<String>) =
        (row.get(0), row.get(1), row.get(2));
    let (Some(version), Some(schema)) = (version, schema) else {
        return Err(unavailable(format!(
            "the extension pg_named_locks is not installed in database {db:?}: run CREATE EXTENSION pg_named_locks in it"
        )));
    };
    client
        .query_one(
            "SELECT pg_catalog.set_config('search_path', pg_catalog.quote_ident($1), false)",
            &[&schema],
        )
        .await
        .map_err(|e| {
            unavailable(format!(
                "cannot set up the session: {}",
                crate::describe(&e)
            ))
        })?;
    Ok(Session {
        client: Arc::new(client),
        closed,
        version,
    })
}

/// Whether extension version `have` ("0.3.0") is at least `want` ((0, 3)).
pub fn at_least(have: &str, want: (u32, u32)) -> bool {
    let mut parts = have.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let major = parts.next().unwrap_or(0);
    let minor = parts.next().unwrap_or(0);
    (major, minor) >= want
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn with(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn environment_fills_what_the_dsn_leaves_out() {
        let env = with(&[
            ("PGHOST", "db1,/tmp/sock"),
            ("PGPORT", "6432"),
            ("PGUSER", "app"),
            ("PGDATABASE", "appdb"),
            ("PGPASSWORD", "secret"),
        ]);
        let c = config(None, &env).unwrap();
        assert_eq!(
            c.get_hosts(),
            &[Host::Tcp("db1".into()), Host::Unix("/tmp/sock".into())]
        );
        assert_eq!(c.get_ports(), &[6432]);
        assert_eq!(c.get_user(), Some("app"));
        assert_eq!(c.get_dbname(), Some("appdb"));
        assert_eq!(c.get_password(), Some(&b"secret"[..]));
        assert_eq!(c.get_application_name(), Some(APPLICATION_NAME));
        assert!(c.get_keepalives());
        assert_eq!(targets(&c), "db1:6432, /tmp/sock/.s.PGSQL.6432");

        // the DSN wins over the environment
        let c = config(Some("host=10.0.0.5 port=5433 user=other"), &env).unwrap();
        assert_eq!(c.get_hosts(), &[Host::Tcp("10.0.0.5".into())]);
        assert_eq!(c.get_user(), Some("other"));
        assert_eq!(c.get_dbname(), Some("appdb"));
        assert_eq!(targets(&c), "10.0.0.5:5433");
        let c = config(Some("postgresql://u@h:7000/d?application_name=job"), &env).unwrap();
        assert_eq!(c.get_application_name(), Some("job"));
        assert_eq!(targets(&c), "h:7000");
    }

    #[test]
    fn bad_settings_are_named() {
        let e = config(None, &with(&[("PGPORT", "x")])).unwrap_err();
        assert!(e.contains("PGPORT"), "{e}");
        let e = config(None, &with(&[("PGSSLMODE", "require")])).unwrap_err();
        assert!(e.contains("TLS"), "{e}");
        let e = config(Some("host=h sslmode=require"), &with(&[])).unwrap_err();
        assert!(e.contains("TLS"), "{e}");
        let e = config(Some("nonsense"), &with(&[])).unwrap_err();
        assert!(e.contains("--dsn"), "{e}");
        assert!(config(
            Some("host=h sslmode=disable"),
            &with(&[("PGSSLMODE", "require")])
        )
        .is_ok());
    }

    #[test]
    fn versions() {
        assert!(at_least("0.3.0", (0, 3)));
        assert!(at_least("1.0.0", (0, 3)));
        assert!(!at_least("0.2.0", (0, 3)));
    }
}
