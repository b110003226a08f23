//! N workers, each with its own connection, try to start the same job at once; exactly
//! one runs it, the others see it already running.
//!   singleton_job [DSN] [WORKERS]      (DSN default: $DATABASE_URL; WORKERS default: 5)
use pg_named_locks_example::{singleton, Outcome};

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let dsn = args
        .next()
        .or_else(|| std::env::var("DATABASE_URL").ok())
        .unwrap_or_else(|| {
            eprintln!("usage: singleton_job DSN [WORKERS]   (or set DATABASE_URL)");
            std::process::exit(2)
        });
    let workers: usize = match args.next().map(|w| w.parse()) {
        None => 5,
        Some(Ok(w)) if w > 0 => w,
        Some(_) => {
            eprintln!("WORKERS must be a positive integer");
            std::process::exit(2)
        }
    };
    let outcomes = singleton(
        &dsn,
        "daily-report-job",
        workers,
        |i, outcome| match outcome {
            Outcome::Ran { token } => {
                println!("worker {i}: running the job");
                if let Some(t) = token {
                    println!("worker {i}: (its fencing token: {t})");
                }
            }
            Outcome::AlreadyRunning => println!("worker {i}: already running"),
        },
    )
    .await
    .unwrap_or_else(|e| {
        eprintln!("singleton_job: {e}");
        std::process::exit(1)
    });
    let ran = outcomes
        .iter()
        .filter(|o| matches!(o, Outcome::Ran { .. }))
        .count();
    println!("{ran} of {workers} workers ran the job");
    std::process::exit(if ran == 1 { 0 } else { 1 });
}
