//! The statistics under the forecast: least squares, bucket medians, sign tests, the cycle rate.

use super::Sample;

/// Least-squares slope and its standard error over `(x, y)` points; `None` below three points or
/// with no spread in x.
pub fn least_squares(points: impl Iterator<Item = (f64, f64)> + Clone) -> Option<(f64, f64)> {
    let (mut n, mut sx, mut sy) = (0.0f64, 0.0f64, 0.0f64);
    for (x, y) in points.clone() {
        n += 1.0;
        sx += x;
        sy += y;
    }
    if n < 3.0 {
        return None;
    }
    let (mx, my) = (sx / n, sy / n);
    let (mut sxx, mut sxy) = (0.0, 0.0);
    for (x, y) in points.clone() {
        sxx += (x - mx) * (x - mx);
        sxy += (x - mx) * (y - my);
    }
    if sxx <= f64::EPSILON {
        return None;
    }
    let slope = sxy / sxx;
    let residual: f64 = points.map(|(x, y)| (y - my - slope * (x - mx)).powi(2)).sum();
    let error = (residual / (n - 2.0) / sxx).sqrt();
    Some((slope, error))
}

pub(crate) fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 0 {
        f64::midpoint(values[mid - 1], values[mid])
    } else {
        values[mid]
    }
}

/// Buckets per full window of the background fit: spikes shorter than half a bucket do not move it.
pub(super) const BUCKETS: usize = 24;

/// `(time, median background)` of each bucket of `window` samples, buckets `width` seconds wide
/// from `start`: robust points for the long fit.
pub(super) fn bucket_medians(window: &[&Sample], start: f64, width: f64) -> Vec<(f64, f64)> {
    let mut points = Vec::with_capacity(BUCKETS);
    let (mut times, mut values): (Vec<f64>, Vec<f64>) = (Vec::new(), Vec::new());
    let mut index = 0usize;
    for s in window {
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // a small bucket number
        let bucket = ((s.t - start).max(0.0) / width).floor() as usize;
        if bucket != index && !values.is_empty() {
            points.push((median(&mut times), median(&mut values)));
            times.clear();
            values.clear();
        }
        index = bucket;
        times.push(s.t);
        values.push(s.background);
    }
    if !values.is_empty() {
        points.push((median(&mut times), median(&mut values)));
    }
    points
}

/// The least-squares slope (and error) of `points` with times taken relative to `now`.
pub(crate) fn slope_before(points: &[(f64, f64)], now: f64) -> Option<(f64, f64)> {
    least_squares(points.iter().map(|&(t, y)| (t - now, y)))
}

/// A real fill rises across the whole window; another tenant's files come and go within it. So
/// growth counts only when each half of the window shows growth too (a half too short to fit
/// does not object).
pub(super) fn rises_in_both_halves(points: &[(f64, f64)], now: f64) -> bool {
    let rises = |part: &[(f64, f64)]| slope_before(part, now).is_none_or(|(slope, _)| slope > 0.0);
    let half = points.len() / 2;
    points.len() >= 6 && rises(&points[..half]) && rises(&points[half..])
}

/// A sign test: usage rose at far more steps than noise would (noise rises at half the steps; a
/// file landing at one). Demands eight steps and 3.5 standard deviations above half.
pub(crate) fn rises_steadily(points: &[(f64, f64)]) -> bool {
    let steps = points.len().saturating_sub(1);
    let rising = points.windows(2).filter(|w| w[1].1 > w[0].1).count();
    let (steps_f, rising_f) = (steps as f64, rising as f64);
    steps >= 8 && rising_f >= steps_f / 2.0 + 3.5 * steps_f.sqrt() / 2.0
}

/// Which of two candidate `(slope, error)` rates rises faster; the first wins ties.
pub(crate) fn steeper(a: Option<(f64, f64)>, b: Option<(f64, f64)>) -> Option<(f64, f64)> {
    match (a, b) {
        (Some(a), Some(b)) if b.0 > a.0 => Some(b),
        (None, b) => b,
        (a, _) => a,
    }
}

/// The net rate of steps measured at the same phase of each save cycle: how much the running
/// offset rose from just before the first of `saves` (`(time, offset just before)`) to just before
/// the last, over the time between them. Saves that stopped stop counting: past two usual
/// intervals, the growth is spread to `now`.
pub(crate) fn cycle_rate(saves: &[(f64, f64)], now: f64) -> f64 {
    let (Some(&(first_t, first_offset)), Some(&(last_t, last_offset))) = (saves.first(), saves.last()) else {
        return 0.0;
    };
    let span = last_t - first_t;
    if span <= 0.0 {
        return 0.0;
    }
    let interval = span / (saves.len() - 1) as f64;
    let span = if now - last_t > 2.0 * interval {
        now - first_t
    } else {
        span
    };
    (last_offset - first_offset) / span
}
