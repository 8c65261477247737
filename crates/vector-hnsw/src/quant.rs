//! The int8 copies of the vectors that the HNSW graph traverses: a quarter of the bytes of the
//! `f32` vectors, so each distance of a search reads 1.5 KB instead of 6 KB at 1,536
//! dimensions (the graph search is memory-bound). The graph only chooses candidates; their
//! scores are recomputed exactly from the `f32` vectors of the [`Flat`](crate::flat::Flat).
//!
//! The quantization is symmetric and per vector: `qᵢ = round(xᵢ · 127 / max|x|)`, so every
//! vector uses the whole range `-127..=127` whatever its spread (hashed n-gram vectors and
//! model embeddings differ a lot in their largest component), and `x·y ≈ sₓ·s_y·Σ qᵢrᵢ` with
//! `s = max|x| / 127`. The scale travels with the codes: a quantized vector is `dim` codes
//! followed by the four bytes of `s` (`f32`, little endian), since `hnsw_rs` hands its
//! distance two slices and nothing else. `-128` is never produced, so a product fits `i16`
//! and a sum of two fits the `i32` lanes of `pmaddwd`.

/// Bytes after the codes: the scale.
pub(crate) const SCALE_BYTES: usize = 4;

/// Lanes summed independently (as in [`dot`](crate::dot::dot)).
const LANES: usize = 32;

/// Appends the quantized copy of `v` (`v.len() + SCALE_BYTES` bytes) to `out`.
pub(crate) fn quantize_into(v: &[f32], out: &mut Vec<i8>) {
    let max = v.iter().fold(0.0_f32, |m, x| m.max(x.abs()));
    let (scale, inv) = if max > 0.0 && max.is_finite() {
        (max / 127.0, 127.0 / max)
    } else {
        (0.0, 0.0)
    };
    out.reserve(v.len() + SCALE_BYTES);
    // In range by construction (|x · inv| <= 127; NaN casts to 0).
    #[allow(clippy::cast_possible_truncation)]
    out.extend(
        v.iter()
            .map(|x| (x * inv).round().clamp(-127.0, 127.0) as i8),
    );
    out.extend(scale.to_le_bytes().map(|b| i8::from_le_bytes([b])));
}

/// The quantized copy of `v`.
pub(crate) fn quantize(v: &[f32]) -> Vec<i8> {
    let mut out = Vec::with_capacity(v.len() + SCALE_BYTES);
    quantize_into(v, &mut out);
    out
}

/// The codes and the scale of a quantized vector (empty codes and scale 0 if it is too short).
fn split(q: &[i8]) -> (&[i8], f32) {
    match q.len().checked_sub(SCALE_BYTES) {
        Some(n) => {
            let b = &q[n..];
            let bytes = [b[0], b[1], b[2], b[3]].map(|x| x.to_le_bytes()[0]);
            (&q[..n], f32::from_le_bytes(bytes))
        }
        None => (&[], 0.0),
    }
}

/// `Σ aᵢ·bᵢ` of the codes, over the shorter slice: products of sign-extended bytes summed
/// into `i32` lanes, the shape LLVM turns into `pmaddwd` (no `unsafe`, no intrinsics). At
/// most 127² · n, which fits `i32` for n below 133,000.
#[must_use]
#[inline]
pub(crate) fn dot_codes(a: &[i8], b: &[i8]) -> i32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    let mut acc = [0_i32; LANES];
    for (x, y) in ca.zip(cb) {
        for i in 0..LANES {
            acc[i] += i32::from(x[i]) * i32::from(y[i]);
        }
    }
    let mut sum: i32 = acc.iter().sum();
    for (x, y) in ra.iter().zip(rb) {
        sum += i32::from(*x) * i32::from(*y);
    }
    sum
}

/// The approximate dot product of two quantized vectors (of the same dimension).
#[must_use]
#[inline]
pub(crate) fn dot_quantized(a: &[i8], b: &[i8]) -> f32 {
    let (ca, sa) = split(a);
    let (cb, sb) = split(b);
    // An i32 below 2^31 in an f32: rounding of the last bits only.
    #[allow(clippy::cast_precision_loss)]
    let codes = dot_codes(ca, cb) as f32;
    codes * sa * sb
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dot::dot_reference;
    use crate::tests::unit;

    #[test]
    fn codes_dot_is_exact_at_every_length() {
        let mut rng = fastrand::Rng::with_seed(5);
        for n in (0..70).chain([255, 256, 257, 1536, 3072]) {
            let a: Vec<i8> = (0..n).map(|_| rng.i8(-127..=127)).collect();
            let b: Vec<i8> = (0..n).map(|_| rng.i8(-127..=127)).collect();
            let want: i64 = a
                .iter()
                .zip(&b)
                .map(|(x, y)| i64::from(*x) * i64::from(*y))
                .sum();
            assert_eq!(i64::from(dot_codes(&a, &b)), want, "n={n}");
        }
        // The extremes of the range, everywhere.
        let a = vec![127_i8; 3072];
        let b = vec![-127_i8; 3072];
        assert_eq!(dot_codes(&a, &b), -127 * 127 * 3072);
    }

    /// The error of one quantized dot product of unit vectors: each code is off by at most
    /// half a step (`s/2`), so `|Δ| ≤ ½(sₐ‖b‖₁ + s_b‖a‖₁) + ¼ n sₐ s_b`; the test holds it to
    /// that bound and, on random vectors, to a much tighter typical error.
    #[test]
    fn quantized_dot_is_near_the_reference() {
        let mut rng = fastrand::Rng::with_seed(9);
        for n in [8, 64, 384, 1536] {
            let mut worst = 0.0_f64;
            for _ in 0..200 {
                let a = unit(&mut rng, n);
                let b = unit(&mut rng, n);
                let (qa, qb) = (quantize(&a), quantize(&b));
                assert_eq!(qa.len(), n + SCALE_BYTES);
                let got = f64::from(dot_quantized(&qa, &qb));
                let want = dot_reference(&a, &b);
                let (sa, sb) = (f64::from(split(&qa).1), f64::from(split(&qb).1));
                let l1 = |v: &[f32]| v.iter().map(|x| f64::from(x.abs())).sum::<f64>();
                let bound = 0.5 * (sa * l1(&b) + sb * l1(&a)) + 0.25 * n as f64 * sa * sb;
                let err = (got - want).abs();
                assert!(
                    err <= bound + 1e-6,
                    "n={n}: {got} vs {want} (bound {bound})"
                );
                worst = worst.max(err);
            }
            // Random rounding errors mostly cancel: far below the bound.
            assert!(worst < 0.02, "n={n}: worst error {worst}");
        }
        // A vector with itself: close to 1.
        let a = unit(&mut rng, 1536);
        let qa = quantize(&a);
        assert!((dot_quantized(&qa, &qa) - 1.0).abs() < 0.01);
    }

    #[test]
    fn zero_and_odd_vectors_do_not_break_it() {
        let z = quantize(&[0.0; 16]);
        assert_eq!(dot_quantized(&z, &quantize(&[1.0; 16])), 0.0);
        let nan = quantize(&[f32::NAN, 1.0, f32::INFINITY]);
        assert!(dot_quantized(&nan, &nan).is_finite());
        assert_eq!(dot_quantized(&[1, 2], &[3]), 0.0);
        // The largest component maps to ±127 exactly.
        let q = quantize(&[0.5, -0.25, 0.0]);
        assert_eq!(&q[..3], &[127, -64, 0]);
    }
}
