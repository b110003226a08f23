//! `text` arguments without pgrx's detoast guard on the hot path.
//!
//! pgrx turns a `text` argument into `&str` through `pg_detoast_datum_packed`, a guarded
//! FFI call (a sigsetjmp per argument), even though a lock name is nearly always a short
//! value stored inline, which needs no detoasting at all. [`Text`] reads such values in
//! place, exactly as `pg_detoast_datum_packed` would return them, and hands everything
//! else (compressed or out-of-line values, and databases whose encoding is not UTF-8) to
//! pgrx's own conversion, so its behaviour is pgrx's in every case.

use pgrx::callconv::{Arg, ArgAbi};
use pgrx::nullable::Nullable;
use pgrx::pg_sys;
use pgrx::pgrx_sql_entity_graph::metadata::{
    ArgumentError, ReturnsError, ReturnsRef, SqlMappingRef, SqlTranslatable, TypeOrigin,
};
use pgrx::FromDatum;

use crate::backend::BackendLocal;

/// A SQL `text` argument, borrowed for the duration of the call.
#[derive(Clone, Copy)]
pub struct Text<'a>(pub &'a str);

impl<'a> Text<'a> {
    pub fn as_str(self) -> &'a str {
        self.0
    }
}

/// 0 = not known yet, 1 = the database encoding is UTF-8, 2 = it is not.
static UTF8_DB: BackendLocal<u8> = BackendLocal::new(0);

#[inline]
fn utf8_database() -> bool {
    match UTF8_DB.get() {
        1 => true,
        2 => false,
        _ => learn_encoding(),
    }
}

/// First call in a backend: a guarded FFI call, whose set-up would otherwise be inlined
/// into (and spill registers on) every argument conversion.
#[cold]
#[inline(never)]
fn learn_encoding() -> bool {
    // SAFETY: reads the backend's database encoding, fixed once connected.
    let utf8 = unsafe { pg_sys::GetDatabaseEncoding() } == pg_sys::pg_enc::PG_UTF8 as i32;
    UTF8_DB.set(if utf8 { 1 } else { 2 });
    utf8
}

/// The bytes of a varlena that needs no detoasting (inline, uncompressed), as
/// `pg_detoast_datum_packed` would return them; None for anything else.
///
/// # Safety
/// `p` must point to a valid varlena.
#[cfg(target_endian = "little")]
#[inline]
unsafe fn inline_bytes<'a>(p: *const u8) -> Option<&'a [u8]> {
    // SAFETY (whole body): the header layouts of postgres.h/varatt.h for little-endian
    // machines; a valid varlena is at least as long as its header says.
    unsafe {
        let b0 = *p;
        if b0 & 0x01 == 0x01 {
            // 1-byte header; 0x01 exactly is an external TOAST pointer
            if b0 == 0x01 {
                return None;
            }
            let size = ((b0 >> 1) & 0x7f) as usize;
            return Some(std::slice::from_raw_parts(p.add(1), size - 1));
        }
        if b0 & 0x03 == 0x00 {
            // 4-byte header, not compressed
            let size = ((std::ptr::read_unaligned(p.cast::<u32>()) >> 2) & 0x3fff_ffff) as usize;
            return Some(std::slice::from_raw_parts(p.add(4), size - 4));
        }
        None
    }
}

#[cfg(not(target_endian = "little"))]
unsafe fn inline_bytes<'a>(_p: *const u8) -> Option<&'a [u8]> {
    None
}

impl<'a> FromDatum for Text<'a> {
    #[inline(always)]
    unsafe fn from_polymorphic_datum(datum: pg_sys::Datum, is_null: bool, typoid: pg_sys::Oid) -> Option<Self> {
        if is_null || datum.is_null() {
            return None;
        }
        if utf8_database() {
            // SAFETY: a non-null text datum points to a valid varlena; in a UTF-8
            // database its bytes are valid UTF-8 (the server verifies text input), which
            // is what pgrx itself relies on for its unchecked conversion.
            if let Some(bytes) = unsafe { inline_bytes(datum.cast_mut_ptr::<u8>()) } {
                return Some(Text(unsafe { std::str::from_utf8_unchecked(bytes) }));
            }
        }
        // SAFETY: same datum, same contract.
        unsafe { converted(datum, typoid) }
    }
}

/// pgrx's own conversion, for the rare value that needs it. Kept out of line: inlined, it
/// would spread every lock call's hot code over several more cache lines.
///
/// # Safety
/// `datum` must be a non-null text datum.
#[cold]
#[inline(never)]
unsafe fn converted<'a>(datum: pg_sys::Datum, typoid: pg_sys::Oid) -> Option<Text<'a>> {
    // SAFETY: per the contract.
    unsafe { <&'a str as FromDatum>::from_polymorphic_datum(datum, false, typoid) }.map(Text)
}

// SAFETY: unboxes through FromDatum as pgrx does for &str (argue_from_datum!).
unsafe impl<'fcx> ArgAbi<'fcx> for Text<'fcx> {
    unsafe fn unbox_arg_unchecked(arg: Arg<'_, 'fcx>) -> Self {
        let index = arg.index();
        unsafe { arg.unbox_arg_using_from_datum() }.unwrap_or_else(|| panic!("argument {index} must not be null"))
    }

    unsafe fn unbox_nullable_arg(arg: Arg<'_, 'fcx>) -> Nullable<Self> {
        unsafe { arg.unbox_arg_using_from_datum() }.into()
    }
}

// SAFETY: a Text is SQL `text`, as &str is.
unsafe impl SqlTranslatable for Text<'_> {
    const TYPE_IDENT: &'static str = "pg_named_locks::textarg::Text";
    const TYPE_ORIGIN: TypeOrigin = TypeOrigin::External;
    const ARGUMENT_SQL: Result<SqlMappingRef, ArgumentError> = Ok(SqlMappingRef::literal("TEXT"));
    const RETURN_SQL: Result<ReturnsRef, ReturnsError> = Ok(ReturnsRef::One(SqlMappingRef::literal("TEXT")));
}
