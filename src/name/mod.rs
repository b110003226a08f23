//! Lock names: what counts as one, and the key it locks.

pub mod hash;
pub mod memo;
pub mod validate;
