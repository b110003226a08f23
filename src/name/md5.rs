//! MD5 (RFC 1321) of a whole byte string, for name → key derivation.
//!
//! Why not the `md-5` crate: a name is hashed on every lock call of a name the backend
//! has not memoised, and there the md5 is the largest single cost. MD5 is a chain of 64
//! dependent steps, so its speed is the latency of one step. This version orders each
//! step so that only the work on the newest state word waits for the previous step (the
//! message word, the constant and the oldest state word are summed ahead, and in the
//! second round the half of the boolean function that does not involve the newest word
//! too), and it pads the last block in place instead of going through a block buffer.
//! Unit tests check it against the crate on every length up to three blocks; the pg_tests
//! in `api/keys.rs` check it against PostgreSQL's `md5()`.

#[rustfmt::skip] // eight constants a row
const K: [u32; 64] = [
    0xd76a_a478, 0xe8c7_b756, 0x2420_70db, 0xc1bd_ceee, 0xf57c_0faf, 0x4787_c62a, 0xa830_4613, 0xfd46_9501,
    0x6980_98d8, 0x8b44_f7af, 0xffff_5bb1, 0x895c_d7be, 0x6b90_1122, 0xfd98_7193, 0xa679_438e, 0x49b4_0821,
    0xf61e_2562, 0xc040_b340, 0x265e_5a51, 0xe9b6_c7aa, 0xd62f_105d, 0x0244_1453, 0xd8a1_e681, 0xe7d3_fbc8,
    0x21e1_cde6, 0xc337_07d6, 0xf4d5_0d87, 0x455a_14ed, 0xa9e3_e905, 0xfcef_a3f8, 0x676f_02d9, 0x8d2a_4c8a,
    0xfffa_3942, 0x8771_f681, 0x6d9d_6122, 0xfde5_380c, 0xa4be_ea44, 0x4bde_cfa9, 0xf6bb_4b60, 0xbebf_bc70,
    0x289b_7ec6, 0xeaa1_27fa, 0xd4ef_3085, 0x0488_1d05, 0xd9d4_d039, 0xe6db_99e5, 0x1fa2_7cf8, 0xc4ac_5665,
    0xf429_2244, 0x432a_ff97, 0xab94_23a7, 0xfc93_a039, 0x655b_59c3, 0x8f0c_cc92, 0xffef_f47d, 0x8584_5dd1,
    0x6fa8_7e4f, 0xfe2c_e6e0, 0xa301_4314, 0x4e08_11a1, 0xf753_7e82, 0xbd3a_f235, 0x2ad7_d2bb, 0xeb86_d391,
];

// One step: a' = b + rotl(a + fn(b, c, d) + m + k, s), with `b` the newest word.
#[inline(always)]
fn f(a: u32, b: u32, c: u32, d: u32, m: u32, k: u32, s: u32) -> u32 {
    let early = a.wrapping_add(m).wrapping_add(k);
    early.wrapping_add(d ^ (b & (c ^ d))).rotate_left(s).wrapping_add(b)
}

#[inline(always)]
fn g(a: u32, b: u32, c: u32, d: u32, m: u32, k: u32, s: u32) -> u32 {
    // (b & d) | (c & !d): the two halves have no bit in common, so they can be added,
    // and c & !d does not wait for b.
    let early = a.wrapping_add(m).wrapping_add(k).wrapping_add(c & !d);
    early.wrapping_add(b & d).rotate_left(s).wrapping_add(b)
}

#[inline(always)]
fn h(a: u32, b: u32, c: u32, d: u32, m: u32, k: u32, s: u32) -> u32 {
    let early = a.wrapping_add(m).wrapping_add(k);
    early.wrapping_add(b ^ (c ^ d)).rotate_left(s).wrapping_add(b)
}

#[inline(always)]
fn i(a: u32, b: u32, c: u32, d: u32, m: u32, k: u32, s: u32) -> u32 {
    let early = a.wrapping_add(m).wrapping_add(k);
    early.wrapping_add(c ^ (b | !d)).rotate_left(s).wrapping_add(b)
}

fn compress(st: &mut [u32; 4], block: &[u8; 64]) {
    let mut x = [0u32; 16];
    for (w, b) in x.iter_mut().zip(block.chunks_exact(4)) {
        *w = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    }
    let [mut a, mut b, mut c, mut d] = *st;
    macro_rules! four {
        ($fn:ident, $k:expr, [$m0:expr, $m1:expr, $m2:expr, $m3:expr], [$s0:expr, $s1:expr, $s2:expr, $s3:expr]) => {
            a = $fn(a, b, c, d, x[$m0], K[$k], $s0);
            d = $fn(d, a, b, c, x[$m1], K[$k + 1], $s1);
            c = $fn(c, d, a, b, x[$m2], K[$k + 2], $s2);
            b = $fn(b, c, d, a, x[$m3], K[$k + 3], $s3);
        };
    }
    four!(f, 0, [0, 1, 2, 3], [7, 12, 17, 22]);
    four!(f, 4, [4, 5, 6, 7], [7, 12, 17, 22]);
    four!(f, 8, [8, 9, 10, 11], [7, 12, 17, 22]);
    four!(f, 12, [12, 13, 14, 15], [7, 12, 17, 22]);
    four!(g, 16, [1, 6, 11, 0], [5, 9, 14, 20]);
    four!(g, 20, [5, 10, 15, 4], [5, 9, 14, 20]);
    four!(g, 24, [9, 14, 3, 8], [5, 9, 14, 20]);
    four!(g, 28, [13, 2, 7, 12], [5, 9, 14, 20]);
    four!(h, 32, [5, 8, 11, 14], [4, 11, 16, 23]);
    four!(h, 36, [1, 4, 7, 10], [4, 11, 16, 23]);
    four!(h, 40, [13, 0, 3, 6], [4, 11, 16, 23]);
    four!(h, 44, [9, 12, 15, 2], [4, 11, 16, 23]);
    four!(i, 48, [0, 7, 14, 5], [6, 10, 15, 21]);
    four!(i, 52, [12, 3, 10, 1], [6, 10, 15, 21]);
    four!(i, 56, [8, 15, 6, 13], [6, 10, 15, 21]);
    four!(i, 60, [4, 11, 2, 9], [6, 10, 15, 21]);
    st[0] = st[0].wrapping_add(a);
    st[1] = st[1].wrapping_add(b);
    st[2] = st[2].wrapping_add(c);
    st[3] = st[3].wrapping_add(d);
}

/// The 16-byte MD5 digest of `data`.
pub fn digest(data: &[u8]) -> [u8; 16] {
    let mut st = [0x6745_2301_u32, 0xefcd_ab89, 0x98ba_dcfe, 0x1032_5476];
    let mut blocks = data.chunks_exact(64);
    for b in &mut blocks {
        compress(&mut st, b.try_into().expect("64-byte block"));
    }
    // The tail, the 0x80 marker and the bit length: one block, or two when the tail
    // leaves no room for the length (56 bytes or more).
    let tail = blocks.remainder();
    let mut last = [0u8; 64];
    last[..tail.len()].copy_from_slice(tail);
    last[tail.len()] = 0x80;
    if tail.len() >= 56 {
        compress(&mut st, &last);
        last = [0u8; 64];
    }
    last[56..].copy_from_slice(&(data.len() as u64).wrapping_mul(8).to_le_bytes());
    compress(&mut st, &last);
    let mut out = [0u8; 16];
    for (o, w) in out.chunks_exact_mut(4).zip(st) {
        o.copy_from_slice(&w.to_le_bytes());
    }
    out
}

#[cfg(test)]
mod unit {
    use md5_crate::{Digest, Md5};

    #[test]
    fn rfc_1321_vectors() {
        let hex = |d: [u8; 16]| d.iter().map(|b| format!("{b:02x}")).collect::<String>();
        assert_eq!(hex(super::digest(b"")), "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(hex(super::digest(b"abc")), "900150983cd24fb0d6963f7d28e17f72");
        assert_eq!(
            hex(super::digest(b"12345678901234567890123456789012345678901234567890123456789012345678901234567890")),
            "57edf4a22be3c955ac49da2e2107b67a"
        );
    }

    #[test]
    fn equals_the_md5_crate_at_every_length() {
        // every tail length, and the one- and two-block padding cases around 56 and 64
        for len in 0..200usize {
            let data: Vec<u8> = (0..len).map(|i| (i * 31 + len) as u8).collect();
            let want: [u8; 16] = Md5::digest(&data).into();
            assert_eq!(super::digest(&data), want, "length {len}");
        }
    }
}
