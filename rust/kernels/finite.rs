//! The finiteness check every input goes through, as a parallel pass.
//!
//! NumPy's `np.isfinite(x).all()` is one thread writing a boolean temporary as large
//! as the input's element count; on a 2 GB memmapped pool that pass costs a sizeable
//! fraction of the assignment that follows. This reads each value once, on every
//! worker, with a branch-free test the compiler vectorizes, and finds the position of
//! the first offending value only inside the chunk that holds one.

use rayon::prelude::*;

/// Values per task: a fixed split, so the answer never depends on the thread count.
const CHUNK: usize = 1 << 16;

/// Whether `v` is NaN or ±inf: all eight exponent bits set.
#[inline(always)]
fn non_finite(v: f32) -> bool {
    v.to_bits() & 0x7f80_0000 == 0x7f80_0000
}

/// Flat index of the first NaN or ±inf in `x` (lowest index), or `None`.
pub fn first_non_finite(x: &[f32]) -> Option<usize> {
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
                    *l |= u32::from(non_finite(v));
                }
            }
            let any = lanes.iter().any(|&l| l != 0) || tail.iter().any(|&v| non_finite(v));
            if any {
                chunk
                    .iter()
                    .position(|&v| non_finite(v))
                    .map(|p| i * CHUNK + p)
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
    }
}
