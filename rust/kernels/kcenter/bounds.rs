//! The skip tests' error bounds: when the triangle inequality, with a margin for
//! float32 rounding, proves a point cannot move to a new center (exact: never skips an
//! update brute force would make).

/// Relative (`γ`) and absolute error bounds of one float32 squared distance over `d`
/// coordinates, as computed by [`SqDist`]; `None` when `d` is so large that no bound
/// is useful (then nothing is ever skipped).
///
/// Each term `(x − y)²` is rounded twice and the sum over `d` terms (any order, no FMA)
/// adds at most `d` more roundings, so the computed value is within a relative
/// `γ_{d+3} = (d+3)u / (1 − (d+3)u)` (u = 2⁻²⁴) of the exact squared distance of the
/// float32 inputs, plus below `d·2⁻¹⁴⁹` from products that underflow. The bounds below
/// round both up generously.
pub(super) fn error_bounds(d: usize) -> Option<(f64, f64)> {
    let u = f64::from(f32::EPSILON) * 0.5;
    let t = (d as f64 + 4.0) * u;
    if t >= 0.25 {
        return None;
    }
    let gamma = 1.01 * t / (1.0 - t);
    let abs = (d as f64 + 4.0) * f64::from(f32::MIN_POSITIVE);
    Some((gamma, abs))
}

/// Whether the triangle inequality proves that a point x cannot get strictly closer to
/// a center c than its current squared distance `rc2`, given the computed squared
/// distances `dcc2` = ‖c − a‖² and `ra2` = ‖x − a‖² to some other center a.
///
/// Exact: ‖x − c‖ ≥ ‖c − a‖ − ‖x − a‖. With the error bounds of [`error_bounds`], the
/// exact ‖c − a‖² ≥ (dcc2 − abs)/(1 + γ) and ‖x − a‖² ≤ (ra2 + abs)/(1 − γ), and the
/// computed ‖x − c‖² ≥ (1 − γ)·‖x − c‖²_exact − abs. When that last lower bound is
/// `>= rc2`, brute force (which moves a point only when strictly closer) would not
/// move x either. Evaluated in f64, whose own rounding (~1e-16) the 1e-9 slack covers.
/// Infinite inputs (no center yet, overflow) give no information: nothing is skipped.
///
/// The two square roots depend on one side each, so the refresh loop computes them
/// once: [`center_gap`] when a center is queued, [`member_reach`] once per member.
#[inline]
pub(super) fn can_skip(dcc2: f32, ra2: f32, rc2: f32, err: Option<(f64, f64)>) -> bool {
    skip_by(center_gap(dcc2, err), member_reach(ra2, err), rc2, err)
}

/// A lower bound of the exact ‖c − a‖ from its computed square, rounded down to f32
/// (so storing it in a pending entry only makes the test more cautious); −∞ when the
/// computed value gives no information.
pub(super) fn center_gap(dcc2: f32, err: Option<(f64, f64)>) -> f32 {
    let Some((gamma, abs)) = err else {
        return f32::NEG_INFINITY;
    };
    if !dcc2.is_finite() {
        return f32::NEG_INFINITY;
    }
    let lo = ((f64::from(dcc2) - abs) / (1.0 + gamma)).max(0.0).sqrt();
    let f = lo as f32;
    if f64::from(f) > lo {
        f.next_down()
    } else {
        f
    }
}

/// An upper bound of the exact ‖x − a‖ from its computed square; +∞ when none.
#[inline]
pub(super) fn member_reach(ra2: f32, err: Option<(f64, f64)>) -> f64 {
    match err {
        Some((gamma, abs)) if ra2.is_finite() => ((f64::from(ra2) + abs) / (1.0 - gamma)).sqrt(),
        _ => f64::INFINITY,
    }
}

/// [`can_skip`] from the precomputed bounds: `gap` ≤ ‖c − a‖ and `reach` ≥ ‖x − a‖.
#[inline(always)]
pub(super) fn skip_by(gap: f32, reach: f64, rc2: f32, err: Option<(f64, f64)>) -> bool {
    let Some((gamma, abs)) = err else {
        return false;
    };
    let s = f64::from(gap) - reach;
    // Also false for NaN (−∞ − +∞).
    if s.is_nan() || s <= 0.0 {
        return false;
    }
    (1.0 - gamma) * s * s * (1.0 - 1e-9) - abs >= f64::from(rc2)
}

/// A squared center–center distance at or above which [`can_skip`]`(·, far, far)`
/// holds: the group-level test then needs no more than a partial sum reaching it.
/// Only a shortcut: callers still run the test on the value they got, so a limit
/// that is slightly low costs a recomputation, never a wrong skip. +∞ when the test
/// can never pass.
pub(super) fn group_skip_limit(far: f32, err: Option<(f64, f64)>) -> f32 {
    let Some((gamma, abs)) = err else {
        return f32::INFINITY;
    };
    let reach = member_reach(far, err);
    let s_min = ((f64::from(far) + abs) / ((1.0 - gamma) * (1.0 - 1e-9))).sqrt();
    let limit = ((reach + s_min).powi(2) * (1.0 + gamma) + abs) * (1.0 + 1e-5);
    if limit.is_finite() && limit < f64::from(f32::MAX) {
        limit as f32
    } else {
        f32::INFINITY
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skip_test_never_skips_a_point_that_could_move() {
        let err = error_bounds(1);
        // 1-D: center a = 0, new center c at 2r exactly; the point at r ties and stays,
        // but rounding could make it closer, so it must not be skipped.
        assert!(!can_skip(4.0, 1.0, 1.0, err));
        assert!(can_skip(4.1, 1.0, 1.0, err));
        // A point already closer to its best center than to a: an easier skip.
        assert!(can_skip(4.0, 0.25, 0.25, err));
        assert!(!can_skip(f32::INFINITY, 1.0, 1.0, err));
        assert!(!can_skip(4.0, f32::INFINITY, 1.0, err));
        assert!(!can_skip(1e30, 1.0, 1.0, None));
        assert!(error_bounds(1 << 30).is_none());
        // Subnormal scale: the absolute error term keeps it from skipping.
        let tiny = f32::from_bits(4);
        assert!(!can_skip(tiny * 4.5, tiny, tiny, err));
    }
}
