//! The fencing counter's high-water mark on disk: `pg_named_locks.fence` in the data
//! directory (every backend's working directory), written once per reserved block as
//! PostgreSQL's `durable_rename` does — a temporary file, fsync, rename, fsync of the
//! directory — so that after a crash the file holds either the old or the new mark,
//! never a torn one, and never less than any token handed out.
//!
//! Plain Rust file I/O, not PostgreSQL's (`durable_rename` raises at ERROR): a failure
//! comes back as a value while the caller may hold a lock it must give back first. The
//! paths are short literals, which std converts to C strings on the stack: no heap.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;

pub const FILE: &str = "pg_named_locks.fence";
const TEMP: &str = "pg_named_locks.fence.tmp";
const HEADER: &str = "pg_named_locks fencing high-water mark v1\n";

/// What startup found on disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Found {
    /// no file: no token was ever handed out by this data directory
    Missing,
    /// every token handed out so far has a counter at most this
    Mark(u64),
    /// a file that is not ours or not complete: no token may be handed out
    Damaged,
}

pub fn read() -> Found {
    let mut f = match File::open(FILE) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Found::Missing,
        Err(_) => return Found::Damaged,
    };
    let mut buf = [0u8; 128];
    let mut n = 0;
    loop {
        match f.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => {
                n += k;
                if n == buf.len() {
                    return Found::Damaged;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return Found::Damaged,
        }
    }
    parse(&buf[..n])
}

fn parse(bytes: &[u8]) -> Found {
    let Ok(text) = std::str::from_utf8(bytes) else { return Found::Damaged };
    let Some(rest) = text.strip_prefix(HEADER) else { return Found::Damaged };
    let Some(digits) = rest.strip_suffix('\n') else { return Found::Damaged };
    match digits.parse::<u64>() {
        Ok(v) if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) => Found::Mark(v),
        _ => Found::Damaged,
    }
}

/// Make `mark` the durable high-water mark.
pub fn write(mark: u64) -> std::io::Result<()> {
    let mut buf = [0u8; 128];
    let len = {
        let mut w = &mut buf[..];
        writeln!(w, "{HEADER}{mark}")?;
        128 - w.len()
    };
    let mut f = OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(TEMP)?;
    f.write_all(&buf[..len])?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(TEMP, FILE)?;
    File::open(".")?.sync_all()
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn parses_only_a_complete_file() {
        assert_eq!(parse(format!("{HEADER}42\n").as_bytes()), Found::Mark(42));
        assert_eq!(parse(format!("{HEADER}42").as_bytes()), Found::Damaged);
        assert_eq!(parse(format!("{HEADER}\n").as_bytes()), Found::Damaged);
        assert_eq!(parse(format!("{HEADER}+4\n").as_bytes()), Found::Damaged);
        assert_eq!(parse(b"42\n"), Found::Damaged);
        assert_eq!(parse(b""), Found::Damaged);
    }
}
