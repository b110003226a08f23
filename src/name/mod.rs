//! Lock names: what counts as one, and the key it locks.

pub mod hash;
pub mod memo;
pub mod validate;

/// The longest prefix of `s` of at most `max` bytes that ends at a character boundary.
pub fn prefix(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The bigint key of a one-name argument, as `lock_named` locks it (22004 for NULL,
/// 22023 for an empty name): for the functions that ask about a lock without taking it.
pub fn named_key(name: Option<&str>) -> crate::pg::lockmgr::Key {
    crate::pg::lockmgr::Key::Int64(hash::key64(validate::require_lockable(name, "name").as_bytes()))
}
