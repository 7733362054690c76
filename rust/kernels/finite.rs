//! The finiteness check every input goes through, as a parallel pass.
//!
//! NumPy's `np.isfinite(x).all()` is one thread writing a boolean temporary as large
//! as the input's element count; on a 2 GB memmapped pool that pass costs a sizeable
//! fraction of the assignment that follows. This reads each value once, on every
//! worker, with a branch-free test the compiler vectorizes, and finds the position of
//! the first offending value only inside the chunk that holds one.
//!
//! The same pass can also refuse finite values of too large a magnitude
//! ([`first_beyond`]): features near 1e19 are finite, but their squared distances
//! overflow float32, so the kernels would return `inf` distances and wrong labels.

use rayon::prelude::*;

/// Values per task: a fixed split, so the answer never depends on the thread count.
const CHUNK: usize = 1 << 16;

/// Whether `v` is NaN or ±inf: all eight exponent bits set.
#[inline(always)]
fn non_finite(v: f32) -> bool {
    v.to_bits() & 0x7f80_0000 == 0x7f80_0000
}

/// Whether `v` is NaN, ±inf or of magnitude above `limit` (`!(|v| <= limit)`, so
/// NaN is caught too; branch-free like [`non_finite`]).
#[inline(always)]
#[allow(clippy::neg_cmp_op_on_partial_ord)] // the negation is what catches NaN
fn beyond(v: f32, limit: f32) -> bool {
    !(v.abs() <= limit)
}

/// Flat index of the first NaN or ±inf in `x` (lowest index), or `None`.
pub fn first_non_finite(x: &[f32]) -> Option<usize> {
    first_where(x, non_finite)
}

/// Flat index of the first NaN, ±inf or value with `|v| > limit` in `x` (lowest
/// index), or `None`. `limit = f32::MAX` is [`first_non_finite`].
pub fn first_beyond(x: &[f32], limit: f32) -> Option<usize> {
    first_where(x, |v| beyond(v, limit))
}

/// Flat index of the first value of `x` for which `bad` holds, in fixed chunks.
fn first_where(x: &[f32], bad: impl Fn(f32) -> bool + Sync) -> Option<usize> {
    x.par_chunks(CHUNK)
        .enumerate()
        .find_map_first(|(i, chunk)| {
            // OR of the flags over 16 independent lanes (vectorized), then a search
            // only when the chunk holds an offender.
            let mut lanes = [0u32; 16];
            let body = chunk.chunks_exact(16);
            let tail = body.remainder();
            for block in body {
                for (l, &v) in lanes.iter_mut().zip(block) {
                    *l |= u32::from(bad(v));
                }
            }
            let any = lanes.iter().any(|&l| l != 0) || tail.iter().any(|&v| bad(v));
            if any {
                chunk.iter().position(|&v| bad(v)).map(|p| i * CHUNK + p)
            } else {
                None
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_first_offender_anywhere() {
        let n = 3 * CHUNK + 17;
        assert_eq!(first_non_finite(&vec![1.5f32; n]), None);
        assert_eq!(first_non_finite(&[]), None);
        for pos in [0, 15, 16, CHUNK - 1, CHUNK, 2 * CHUNK + 3, n - 1] {
            for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
                let mut x = vec![-2.0f32; n];
                x[pos] = bad;
                assert_eq!(first_non_finite(&x), Some(pos), "pos={pos} bad={bad}");
                // A later offender does not hide the first one.
                x[n - 1] = f32::NAN;
                assert_eq!(first_non_finite(&x), Some(pos));
            }
        }
        // Extremes that are finite.
        let x = [
            f32::MAX,
            f32::MIN,
            f32::MIN_POSITIVE,
            -0.0,
            f32::from_bits(1),
        ];
        assert_eq!(first_non_finite(&x), None);
        assert_eq!(first_beyond(&x, f32::MAX), None);
    }

    #[test]
    fn beyond_a_limit_also_catches_non_finite() {
        let n = 2 * CHUNK + 5;
        let mut x = vec![1.0f32; n];
        assert_eq!(first_beyond(&x, 1.0), None);
        x[CHUNK + 1] = -1e19;
        x[n - 1] = f32::NAN;
        assert_eq!(first_beyond(&x, 1e18), Some(CHUNK + 1));
        assert_eq!(first_beyond(&x, 2e19), Some(n - 1));
        assert_eq!(first_non_finite(&x), Some(n - 1));
        x[3] = f32::INFINITY;
        assert_eq!(first_beyond(&x, f32::MAX), Some(3));
    }
}
