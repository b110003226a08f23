//! Names cross database encodings only through PostgreSQL's conversion functions.
//!
//! The registry is cluster-wide and a name's key is the md5 of its UTF-8 form in every
//! database (DESIGN.md §2), so names travel as UTF-8 inside the extension:
//! - in: a `text` argument of a database whose encoding is not UTF-8 is converted with
//!   `pg_server_to_any(…, PG_UTF8)`; ASCII needs no conversion in any server encoding.
//!   In a SQL_ASCII database the bytes must already be valid UTF-8 (PostgreSQL's own
//!   check there raises 22021 for anything else);
//! - out: a name returned to SQL is converted to the database encoding. A character the
//!   database encoding cannot represent is shown as `\uXXXX` (`\UXXXXXXXX` above
//!   U+FFFF), never as an encoding error or as bytes invalid in that encoding. A SQL_ASCII
//!   database gets the UTF-8 bytes as they are;
//! - messages (WARNINGs that quote a name) are built as Rust strings, so in a database
//!   that is neither UTF-8 nor SQL_ASCII every non-ASCII character of a quoted name is
//!   escaped the same way (ASCII is valid in every server encoding).

use std::borrow::Cow;

use pgrx::callconv::{BoxRet, FcInfo};
use pgrx::datum::Datum;
use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::pg::backend::BackendLocal;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Db {
    Unknown,
    Utf8,
    SqlAscii,
    /// another server encoding, with the default conversion function from UTF-8 (an
    /// invalid Oid when there is none: every non-ASCII character is then escaped)
    Other(i32, pg_sys::Oid),
}

static DB: BackendLocal<Db> = BackendLocal::new(Db::Unknown);

#[inline]
fn db() -> Db {
    match DB.get() {
        Db::Unknown => learn(),
        known => known,
    }
}

/// First use in a backend (the database, and so its encoding, is fixed once connected).
#[cold]
#[inline(never)]
fn learn() -> Db {
    // SAFETY: reads the backend's database encoding; FindDefaultConversionProc is a
    // catalog lookup, valid inside the transaction every SQL function runs in.
    let db = unsafe {
        match pg_sys::GetDatabaseEncoding() as u32 {
            pg_sys::pg_enc::PG_UTF8 => Db::Utf8,
            pg_sys::pg_enc::PG_SQL_ASCII => Db::SqlAscii,
            enc => Db::Other(enc as i32, pg_sys::FindDefaultConversionProc(pg_sys::pg_enc::PG_UTF8 as i32, enc as i32)),
        }
    };
    DB.set(db);
    db
}

/// Whether text arguments arrive as UTF-8 (or are taken as UTF-8: SQL_ASCII is checked
/// by [`server_to_utf8`] instead).
#[inline]
pub fn utf8_database() -> bool {
    db() == Db::Utf8
}

/// The UTF-8 form of text in the database encoding. The result lives in the current
/// memory context (a `text` argument's call), or is `bytes` itself.
///
/// # Safety
/// `bytes` must stay valid for `'a`, and `'a` must not outlive the current memory context.
#[allow(clippy::needless_lifetimes)] // the lifetime is named for the contract above
pub unsafe fn server_to_utf8<'a>(bytes: &'a [u8]) -> &'a str {
    if bytes.is_ascii() {
        // SAFETY: ASCII is UTF-8, and means the same in every server encoding.
        return unsafe { std::str::from_utf8_unchecked(bytes) };
    }
    // SAFETY: pg_server_to_any reads `len` bytes and returns either its input or a
    // NUL-terminated palloc'd conversion; it raises (guarded) for text the conversion
    // cannot take, e.g. bytes of a SQL_ASCII database that are not UTF-8.
    let converted = unsafe {
        let p = pg_sys::pg_server_to_any(bytes.as_ptr().cast(), bytes.len() as i32, pg_sys::pg_enc::PG_UTF8 as i32);
        if std::ptr::eq(p.cast_const().cast(), bytes.as_ptr()) {
            bytes
        } else {
            std::ffi::CStr::from_ptr(p).to_bytes()
        }
    };
    match std::str::from_utf8(converted) {
        Ok(s) => s,
        Err(_) => crate::error::not_utf8(),
    }
}

/// `name` (UTF-8) in the database encoding, for a value returned to SQL.
pub fn to_database(name: &str) -> Cow<'_, [u8]> {
    match db() {
        Db::Utf8 | Db::SqlAscii | Db::Unknown => Cow::Borrowed(name.as_bytes()),
        Db::Other(..) if name.is_ascii() => Cow::Borrowed(name.as_bytes()),
        Db::Other(enc, proc) => Cow::Owned(convert(name, enc, proc)),
    }
}

/// `name` for a message: escaped where the database encoding is neither UTF-8 nor
/// SQL_ASCII (see the module comment).
pub fn for_message(name: &str) -> Cow<'_, str> {
    match db() {
        Db::Other(..) if !name.is_ascii() => {
            let mut out = String::with_capacity(name.len() * 2);
            for c in name.chars() {
                if c.is_ascii() {
                    out.push(c);
                } else {
                    out.push_str(&escape(c));
                }
            }
            Cow::Owned(out)
        }
        _ => Cow::Borrowed(name),
    }
}

fn escape(c: char) -> String {
    match c as u32 {
        u @ 0..=0xffff => format!("\\u{u:04X}"),
        u => format!("\\U{u:08X}"),
    }
}

/// `pg_wchar.h`: the most one character can grow by in an encoding conversion.
const MAX_CONVERSION_GROWTH: usize = 4;

/// UTF-8 → `enc` through its default conversion function, character by character where
/// it stops: with noError it converts up to the first character it cannot represent and
/// says how far it got; that character is escaped, and the conversion goes on after it.
fn convert(name: &str, enc: i32, proc: pg_sys::Oid) -> Vec<u8> {
    let mut out = Vec::with_capacity(name.len() + 8);
    let mut rest = name;
    let mut buf = vec![0u8; name.len() * MAX_CONVERSION_GROWTH + 1];
    while !rest.is_empty() {
        let done = if proc == pg_sys::InvalidOid {
            0
        } else {
            // SAFETY: `rest` is valid UTF-8 of `rest.len()` bytes (the function only reads
            // it), `buf` holds MAX_CONVERSION_GROWTH bytes per input byte plus the NUL, as
            // pg_do_encoding_conversion_buf requires; with noError it does not raise for
            // unconvertible input.
            let n = unsafe {
                pg_sys::pg_do_encoding_conversion_buf(
                    proc,
                    pg_sys::pg_enc::PG_UTF8 as i32,
                    enc,
                    rest.as_ptr().cast_mut(),
                    rest.len() as i32,
                    buf.as_mut_ptr(),
                    buf.len() as i32,
                    true,
                )
            };
            let written = buf.iter().position(|&b| b == 0).unwrap_or(0);
            out.extend_from_slice(&buf[..written]);
            (n.max(0) as usize).min(rest.len())
        };
        rest = &rest[done..];
        // `done` stops on a character boundary (conversions consume whole characters):
        // the next character is the one the encoding cannot represent.
        let mut chars = rest.chars();
        if let Some(c) = chars.next() {
            out.extend_from_slice(escape(c).as_bytes());
            rest = chars.as_str();
        }
    }
    out
}

/// A `text` value already in the database encoding (see [`to_database`]): what the
/// monitoring functions return for a name.
pub struct DbText(Vec<u8>);

impl DbText {
    pub fn new(name: &str) -> Self {
        DbText(to_database(name).into_owned())
    }
}

impl IntoDatum for DbText {
    fn into_datum(self) -> Option<pg_sys::Datum> {
        // SAFETY: copies `len` bytes into a new palloc'd text (guarded: it can only raise
        // out of memory).
        let t = unsafe { pg_sys::cstring_to_text_with_len(self.0.as_ptr().cast(), self.0.len() as i32) };
        Some(pg_sys::Datum::from(t))
    }

    fn type_oid() -> pg_sys::Oid {
        pg_sys::TEXTOID
    }
}

// SAFETY: returned as the text datum `into_datum` builds, as pgrx does for String.
unsafe impl BoxRet for DbText {
    unsafe fn box_into<'fcx>(self, fcinfo: &mut FcInfo<'fcx>) -> Datum<'fcx> {
        match self.into_datum() {
            // SAFETY: a valid text datum for this call.
            Some(datum) => unsafe { fcinfo.return_raw_datum(datum) },
            None => fcinfo.return_null(),
        }
    }
}

pgrx::impl_sql_translatable!(DbText, "text");
