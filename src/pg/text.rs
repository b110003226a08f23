//! `text` arguments without pgrx's detoast guard on the hot path.
//!
//! pgrx turns a `text` argument into `&str` through `pg_detoast_datum_packed`, a guarded
//! FFI call (a sigsetjmp per argument), even though a lock name is nearly always a short
//! value stored inline, which needs no detoasting at all. [`Text`] reads such values in
//! place, exactly as `pg_detoast_datum_packed` would return them, and hands compressed
//! or out-of-line values to pgrx's own conversion. In a database whose encoding is not
//! UTF-8 the text is converted to UTF-8 (`pg::encoding::server_to_utf8`): a name is its
//! characters, whatever the database encoding.
//!
//! [`TextArray`] is the `text[]` of the `_many` functions, read the same way element by
//! element, with its length checked before anything is allocated for it.

use pgrx::callconv::{Arg, ArgAbi};
use pgrx::nullable::Nullable;
use pgrx::pg_sys;
use pgrx::FromDatum;

use crate::pg::encoding;

/// A SQL `text` argument, borrowed for the duration of the call.
#[derive(Clone, Copy)]
pub struct Text<'a>(pub &'a str);

impl<'a> Text<'a> {
    pub fn as_str(self) -> &'a str {
        self.0
    }
}

/// The bytes of a varlena that needs no detoasting (inline, uncompressed), as
/// `pg_detoast_datum_packed` would return them; None for anything else (an external
/// TOAST pointer, a compressed value). The header is read with pgrx's ports of
/// varatt.h's macros; the data follows the header.
///
/// # Safety
/// `p` must point to a valid varlena.
#[inline]
unsafe fn inline_bytes<'a>(p: *const pg_sys::varlena) -> Option<&'a [u8]> {
    use pgrx::varlena::{varatt_is_1b, varatt_is_1b_e, varatt_is_4b_u, varsize_any_exhdr};
    // SAFETY (whole body): a valid varlena is at least as long as its header says, and
    // an inline one holds its data right after the header.
    unsafe {
        let header = if varatt_is_1b(p) {
            if varatt_is_1b_e(p) {
                return None;
            }
            pg_sys::VARHDRSZ_SHORT
        } else if varatt_is_4b_u(p) {
            pg_sys::VARHDRSZ
        } else {
            return None;
        };
        Some(std::slice::from_raw_parts(p.cast::<u8>().add(header), varsize_any_exhdr(p)))
    }
}

impl<'a> FromDatum for Text<'a> {
    #[inline(always)]
    unsafe fn from_polymorphic_datum(datum: pg_sys::Datum, is_null: bool, typoid: pg_sys::Oid) -> Option<Self> {
        if is_null || datum.is_null() {
            return None;
        }
        if encoding::utf8_database() {
            // SAFETY: a non-null text datum points to a valid varlena; in a UTF-8
            // database its bytes are valid UTF-8 (the server verifies text input), which
            // is what pgrx itself relies on for its unchecked conversion.
            if let Some(bytes) = unsafe { inline_bytes(datum.cast_mut_ptr::<pg_sys::varlena>()) } {
                return Some(Text(unsafe { std::str::from_utf8_unchecked(bytes) }));
            }
            // SAFETY: same datum, same contract.
            return unsafe { converted(datum, typoid) };
        }
        // SAFETY: same datum, same contract.
        unsafe { from_server_encoding(datum) }
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

/// A text datum of a database whose encoding is not UTF-8, as UTF-8.
///
/// # Safety
/// `datum` must be a non-null text datum valid for the call.
#[cold]
#[inline(never)]
unsafe fn from_server_encoding<'a>(datum: pg_sys::Datum) -> Option<Text<'a>> {
    // SAFETY: detoasting (guarded) returns the value itself or a copy palloc'd in the
    // current memory context, valid for the call, as is the conversion of its bytes.
    unsafe {
        let v = pg_sys::pg_detoast_datum_packed(datum.cast_mut_ptr());
        let bytes = pgrx::varlena::varlena_to_byte_slice(v);
        Some(Text(encoding::server_to_utf8(bytes)))
    }
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

pgrx::impl_sql_translatable!(Text<'_>, "text");

/// A SQL `text[]` argument, borrowed for the duration of the call: detoasted once,
/// its elements read as [`Text`] (so converted to UTF-8 like any other name).
pub struct TextArray<'a> {
    arr: *mut pg_sys::ArrayType,
    _call: std::marker::PhantomData<&'a ()>,
}

impl<'a> TextArray<'a> {
    /// The number of elements, from the array's header alone (nothing is allocated).
    pub fn len(&self) -> usize {
        // SAFETY: a detoasted array: `ndim` dimensions follow the header (ARR_DIMS);
        // ArrayGetNItems (guarded) multiplies them, raising for an impossible size.
        unsafe {
            let ndim = (*self.arr).ndim;
            let dims = self.arr.cast::<u8>().add(size_of::<pg_sys::ArrayType>()).cast::<i32>();
            pg_sys::ArrayGetNItems(ndim, dims) as usize
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every element in order, None for a NULL one. `deconstruct_array` pallocs one
    /// Datum and one flag per element (PostgreSQL's allocation: a clean ERROR when
    /// memory runs out); the elements themselves are read in place.
    pub fn iter(&self) -> impl Iterator<Item = Option<&'a str>> + 'a {
        let mut elems: *mut pg_sys::Datum = std::ptr::null_mut();
        let mut nulls: *mut bool = std::ptr::null_mut();
        let mut n: std::ffi::c_int = 0;
        // SAFETY: a detoasted text[] (the SQL signature says so): text is a varlena
        // (typlen -1, not by value, int alignment). The outputs are palloc'd in the
        // current memory context, which lives for the call.
        let (elems, nulls) = unsafe {
            pg_sys::deconstruct_array(
                self.arr,
                pg_sys::TEXTOID,
                -1,
                false,
                pg_sys::TYPALIGN_INT as std::ffi::c_char,
                &mut elems,
                &mut nulls,
                &mut n,
            );
            let n = n.max(0) as usize;
            if n == 0 {
                (&[][..], &[][..])
            } else {
                (std::slice::from_raw_parts(elems, n), std::slice::from_raw_parts(nulls, n))
            }
        };
        elems.iter().zip(nulls).map(|(&d, &null)| {
            // SAFETY: an element of a text array: a text datum, or a NULL.
            unsafe { <Text<'a> as FromDatum>::from_polymorphic_datum(d, null, pg_sys::TEXTOID) }.map(Text::as_str)
        })
    }
}

impl FromDatum for TextArray<'_> {
    unsafe fn from_polymorphic_datum(datum: pg_sys::Datum, is_null: bool, _typoid: pg_sys::Oid) -> Option<Self> {
        if is_null || datum.is_null() {
            return None;
        }
        // SAFETY: a non-null array datum; detoasted (guarded) into the current memory
        // context, or the value itself when it needs none.
        let arr = unsafe { pg_sys::pg_detoast_datum(datum.cast_mut_ptr()) }.cast::<pg_sys::ArrayType>();
        Some(TextArray { arr, _call: std::marker::PhantomData })
    }
}

// SAFETY: unboxes through FromDatum, as for Text.
unsafe impl<'fcx> ArgAbi<'fcx> for TextArray<'fcx> {
    unsafe fn unbox_arg_unchecked(arg: Arg<'_, 'fcx>) -> Self {
        let index = arg.index();
        unsafe { arg.unbox_arg_using_from_datum() }.unwrap_or_else(|| panic!("argument {index} must not be null"))
    }

    unsafe fn unbox_nullable_arg(arg: Arg<'_, 'fcx>) -> Nullable<Self> {
        unsafe { arg.unbox_arg_using_from_datum() }.into()
    }
}

pgrx::impl_sql_translatable!(TextArray<'_>, arg_only = "text[]");
