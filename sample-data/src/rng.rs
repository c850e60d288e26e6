//! Deterministic random numbers.
//!
//! Every random stream is a ChaCha8 generator seeded from a label such as
//! `"amsterdam/air_quality"`, so each table of each city draws from its own stream and the output
//! never depends on the order in which tables or cities are generated.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A generator seeded from `label` (32 seed bytes from four salted FNV-1a hashes of the label).
pub(crate) fn seeded(label: &str) -> ChaCha8Rng {
    let mut seed = [0u8; 32];
    for (salt, chunk) in (0u8..).zip(seed.chunks_exact_mut(8)) {
        chunk.copy_from_slice(&fnv1a(salt, label).to_le_bytes());
    }
    ChaCha8Rng::from_seed(seed)
}

fn fnv1a(salt: u8, label: &str) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325_u64;
    for byte in std::iter::once(salt).chain(label.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// Uniform in `[lo, hi)`.
pub(crate) fn uniform(rng: &mut impl Rng, lo: f64, hi: f64) -> f64 {
    lo + (hi - lo) * rng.random::<f64>()
}

/// Standard normal (Box-Muller).
pub(crate) fn normal(rng: &mut impl Rng) -> f64 {
    let u1 = 1.0 - rng.random::<f64>(); // (0, 1], so the logarithm is finite
    let u2 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// Poisson-distributed count with mean `lambda` (Knuth for small means, normal approximation
/// for large ones).
pub(crate) fn poisson(rng: &mut impl Rng, lambda: f64) -> i64 {
    if lambda <= 0.0 {
        return 0;
    }
    if lambda < 30.0 {
        let limit = (-lambda).exp();
        let mut count = 0;
        let mut product = rng.random::<f64>();
        while product > limit {
            count += 1;
            product *= rng.random::<f64>();
        }
        count
    } else {
        (lambda + lambda.sqrt() * normal(rng)).round().max(0.0) as i64
    }
}

/// A stationary AR(1) series of `len` standard-normal values with lag-one correlation `phi`.
pub(crate) fn ar1(rng: &mut impl Rng, len: usize, phi: f64) -> Vec<f64> {
    let innovation = (1.0 - phi * phi).sqrt();
    let mut value = normal(rng);
    let mut series = Vec::with_capacity(len);
    for _ in 0..len {
        series.push(value);
        value = phi * value + innovation * normal(rng);
    }
    series
}

/// `x` rounded to `decimals` decimal places; printing the result with `{:.N}` gives back exactly
/// the digits a reader of the file parses into the same `f64`.
pub(crate) fn round_to(x: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (x * scale).round() / scale
}
