//! The dot product of two `f32` slices, written so that LLVM vectorises it without `unsafe`:
//! sixteen independent accumulators over `chunks_exact(16)` (four SSE or two AVX registers),
//! so no addition waits on the one before it. Summing in a different order than a naive loop
//! changes the last bits of the result, never more than `f32` rounding.

/// Lanes summed independently.
const LANES: usize = 16;

/// `Σ aᵢ·bᵢ` over the shorter of the two slices. For L2-normalized vectors this is their cosine
/// similarity.
#[must_use]
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    let mut acc = [0.0_f32; LANES];
    for (x, y) in ca.zip(cb) {
        for i in 0..LANES {
            acc[i] += x[i] * y[i];
        }
    }
    let mut tail = 0.0_f32;
    for (x, y) in ra.iter().zip(rb) {
        tail += x * y;
    }
    // Pairwise: 16 → 8 → 4 → 2 → 1.
    let mut width = LANES / 2;
    while width > 0 {
        for i in 0..width {
            acc[i] += acc[i + width];
        }
        width /= 2;
    }
    acc[0] + tail
}

/// `dot` computed the plain way, in `f64`: the reference of the tests.
#[cfg(test)]
pub(crate) fn dot_reference(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn random(rng: &mut fastrand::Rng, n: usize) -> Vec<f32> {
        (0..n).map(|_| rng.f32() * 2.0 - 1.0).collect()
    }

    #[test]
    fn matches_the_reference_at_every_length() {
        let mut rng = fastrand::Rng::with_seed(7);
        for n in (0..70).chain([255, 256, 257, 1536, 2000]) {
            let a = random(&mut rng, n);
            let b = random(&mut rng, n);
            let got = f64::from(dot(&a, &b));
            let want = dot_reference(&a, &b);
            assert!(
                (got - want).abs() <= 1e-5 * (1.0 + want.abs()) * (n as f64).sqrt().max(1.0),
                "n={n}: {got} vs {want}"
            );
        }
    }

    #[test]
    fn exact_on_small_integers_and_uneven_lengths() {
        let a: Vec<f32> = (1..=20).map(|i| i as f32).collect();
        let b = vec![1.0_f32; 20];
        assert_eq!(dot(&a, &b), 210.0);
        // The shorter slice decides.
        assert_eq!(dot(&a[..3], &b), 6.0);
        assert_eq!(dot(&[], &b), 0.0);
    }

    #[test]
    fn normalized_vectors_score_one_with_themselves() {
        let mut rng = fastrand::Rng::with_seed(3);
        let mut v = random(&mut rng, 1536);
        let norm = dot(&v, &v).sqrt();
        v.iter_mut().for_each(|x| *x /= norm);
        assert!((dot(&v, &v) - 1.0).abs() < 1e-5);
    }
}
