//! numpy's legacy `RandomState`, bit for bit.
//!
//! The reference corruption code draws from numpy's global generator. With the same seed and
//! the same sequence of calls, [`RandomState`] returns exactly the same numbers, so a seeded
//! rtb run equals `np.random.seed(seed); corrupt(...)` byte for byte. The generator is the
//! Mersenne Twister MT19937 seeded with `init_genrand`; the distributions follow numpy's
//! `legacy` code paths (polar Box–Muller with a cached second value, masked rejection for
//! bounded integers, multiplication / PTRS for Poisson).
//!
//! ```
//! use rtb_corruption::RandomState;
//! let mut rng = RandomState::new(0);
//! // np.random.seed(0); np.random.random_sample() == 0.5488135039273248
//! assert_eq!(rng.random_sample(), 0.5488135039273248);
//! ```

const N: usize = 624;
const M: usize = 397;
const MATRIX_A: u32 = 0x9908_b0df;
const UPPER_MASK: u32 = 0x8000_0000;
const LOWER_MASK: u32 = 0x7fff_ffff;

/// numpy's legacy `RandomState` (MT19937 with numpy's distribution algorithms).
#[derive(Clone)]
pub struct RandomState {
    key: [u32; N],
    /// The tempered outputs of the current state, computed in one pass after each twist.
    out: [u32; N],
    pos: usize,
    /// The second value of the polar method, returned by the next normal draw.
    cached_gauss: Option<f64>,
}

impl std::fmt::Debug for RandomState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RandomState")
            .field("pos", &self.pos)
            .field("cached_gauss", &self.cached_gauss)
            .finish_non_exhaustive()
    }
}

impl RandomState {
    /// The state after `np.random.seed(seed)` for an integer seed.
    pub fn new(seed: u32) -> Self {
        let mut key = [0u32; N];
        key[0] = seed;
        for i in 1..N {
            let prev = key[i - 1];
            key[i] = 1_812_433_253u32
                .wrapping_mul(prev ^ (prev >> 30))
                .wrapping_add(i as u32);
        }
        Self {
            key,
            out: [0; N],
            pos: N,
            cached_gauss: None,
        }
    }

    /// Refills the 624-word state (the MT19937 twist), in three runs so that no index needs a
    /// modulo: the results are those of the textbook loop.
    fn generate(&mut self) {
        #[inline(always)]
        fn twist(current: u32, next: u32, far: u32) -> u32 {
            let y = (current & UPPER_MASK) | (next & LOWER_MASK);
            far ^ (y >> 1) ^ ((y & 1).wrapping_neg() & MATRIX_A)
        }
        let key = &mut self.key;
        for i in 0..N - M {
            key[i] = twist(key[i], key[i + 1], key[i + M]);
        }
        for i in N - M..N - 1 {
            key[i] = twist(key[i], key[i + 1], key[i + M - N]);
        }
        key[N - 1] = twist(key[N - 1], key[0], key[M - 1]);
        for (out, &word) in self.out.iter_mut().zip(key.iter()) {
            let mut y = word;
            y ^= y >> 11;
            y ^= (y << 7) & 0x9d2c_5680;
            y ^= (y << 15) & 0xefc6_0000;
            y ^= y >> 18;
            *out = y;
        }
        self.pos = 0;
    }

    /// The next raw 32-bit output (tempered).
    #[inline]
    pub fn next_u32(&mut self) -> u32 {
        if self.pos == N {
            self.generate();
        }
        let y = self.out[self.pos];
        self.pos += 1;
        y
    }

    /// `np.random.random_sample()`: a double in [0, 1) with 53 random bits.
    #[inline]
    pub fn random_sample(&mut self) -> f64 {
        let (a, b) = if self.pos + 2 <= N {
            let pair = (self.out[self.pos], self.out[self.pos + 1]);
            self.pos += 2;
            pair
        } else {
            (self.next_u32(), self.next_u32())
        };
        let (a, b) = ((a >> 5) as f64, (b >> 6) as f64);
        (a * 67_108_864.0 + b) / 9_007_199_254_740_992.0
    }

    /// `np.random.uniform(low, high)`.
    pub fn uniform(&mut self, low: f64, high: f64) -> f64 {
        low + (high - low) * self.random_sample()
    }

    /// `np.random.standard_normal()` (legacy polar method).
    pub fn standard_normal(&mut self) -> f64 {
        if let Some(value) = self.cached_gauss.take() {
            return value;
        }
        loop {
            let x1 = 2.0 * self.random_sample() - 1.0;
            let x2 = 2.0 * self.random_sample() - 1.0;
            let r2 = x1 * x1 + x2 * x2;
            if r2 < 1.0 && r2 != 0.0 {
                let f = (-2.0 * r2.ln() / r2).sqrt();
                self.cached_gauss = Some(f * x1);
                return f * x2;
            }
        }
    }

    /// `np.random.normal(loc, scale)`.
    pub fn normal(&mut self, loc: f64, scale: f64) -> f64 {
        loc + scale * self.standard_normal()
    }

    /// `np.random.randint(low, high)`: an integer in `[low, high)`. `high` must exceed `low`
    /// (numpy raises otherwise); an empty range returns `low` without drawing.
    pub fn randint(&mut self, low: i64, high: i64) -> i64 {
        if high <= low {
            return low;
        }
        let range = (high - 1 - low) as u64;
        low.wrapping_add(self.bounded_u64(range) as i64)
    }

    /// numpy's masked rejection sampling of an integer in `[0, range]`.
    fn bounded_u64(&mut self, range: u64) -> u64 {
        if range == 0 {
            return 0;
        }
        if range <= 0xFFFF_FFFF {
            if range == 0xFFFF_FFFF {
                return self.next_u32() as u64;
            }
            let mask = mask_for(range) as u32;
            loop {
                let value = self.next_u32() & mask;
                if value as u64 <= range {
                    return value as u64;
                }
            }
        }
        let mask = mask_for(range);
        loop {
            let value = self.next_u64() & mask;
            if value <= range {
                return value;
            }
        }
    }

    fn next_u64(&mut self) -> u64 {
        let high = self.next_u32() as u64;
        let low = self.next_u32() as u64;
        (high << 32) | low
    }

    /// `np.random.poisson(lam)` for one `lam ≥ 0`.
    pub fn poisson(&mut self, lam: f64) -> i64 {
        self.poisson_with(&PoissonSampler::new(lam))
    }

    /// `np.random.poisson(lam)` with the per-λ constants prepared once (see
    /// [`PoissonSampler`]); the draws and the result are those of [`RandomState::poisson`].
    pub fn poisson_with(&mut self, sampler: &PoissonSampler) -> i64 {
        match sampler.method {
            PoissonMethod::Zero => 0,
            PoissonMethod::Multiplication { enlam } => {
                let mut count = 0;
                let mut prod = 1.0;
                loop {
                    prod *= self.random_sample();
                    if prod > enlam {
                        count += 1;
                    } else {
                        return count;
                    }
                }
            }
            PoissonMethod::Ptrs(ref c) => self.poisson_ptrs(sampler.lam, c),
        }
    }

    /// Hörmann's transformed rejection (PTRS), as numpy implements it.
    fn poisson_ptrs(&mut self, lam: f64, c: &PtrsConstants) -> i64 {
        loop {
            let u = self.random_sample() - 0.5;
            let v = self.random_sample();
            let us = 0.5 - u.abs();
            let k = floor_to_i64((2.0 * c.a / us + c.b) * u + lam + 0.43);
            if us >= 0.07 && v <= c.vr {
                return k;
            }
            if k < 0 || (us < 0.013 && v > us) {
                continue;
            }
            if v.ln() + c.log_invalpha - (c.a / (us * us) + c.b).ln()
                <= -lam + k as f64 * c.loglam - loggam_of_integer(k + 1)
            {
                return k;
            }
        }
    }

    /// The threshold `t` such that `np.random.choice([True, False], p=[p, 1 - p])` is `True`
    /// exactly when the uniform it draws is below `t` (numpy normalises the cumulative sum).
    pub fn choice_threshold(p: f64) -> f64 {
        p / (p + (1.0 - p))
    }

    /// `np.random.choice(2, p=[p, 1 - p]) == 0`, the draw behind
    /// `np.random.choice([True, False], p=[p, 1 - p])`: one uniform compared with the
    /// normalised cumulative probability (`searchsorted(cdf, u, side='right') == 0`).
    pub fn bernoulli_choice(&mut self, p: f64) -> bool {
        self.random_sample() < Self::choice_threshold(p)
    }
}

/// The constants numpy derives from λ before drawing a Poisson variate. Preparing them once per
/// λ changes no value (the same expressions are evaluated) but saves the logarithms when the
/// same λ is drawn many times, as shot noise does for each of the 256 grey levels.
#[derive(Debug, Clone)]
pub struct PoissonSampler {
    lam: f64,
    method: PoissonMethod,
}

#[derive(Debug, Clone)]
enum PoissonMethod {
    Zero,
    Multiplication { enlam: f64 },
    Ptrs(PtrsConstants),
}

#[derive(Debug, Clone)]
struct PtrsConstants {
    loglam: f64,
    a: f64,
    b: f64,
    /// `ln(invalpha)`, the same value numpy computes on every pass.
    log_invalpha: f64,
    vr: f64,
}

impl PoissonSampler {
    /// The sampler for `lam ≥ 0` (multiplication below 10, PTRS from 10, as numpy).
    pub fn new(lam: f64) -> Self {
        let method = if lam >= 10.0 {
            let slam = lam.sqrt();
            let loglam = lam.ln();
            let b = 0.931 + 2.53 * slam;
            let a = -0.059 + 0.02483 * b;
            let invalpha = 1.1239 + 1.1328 / (b - 3.4);
            let vr = 0.9277 - 3.6224 / (b - 2.0);
            PoissonMethod::Ptrs(PtrsConstants {
                loglam,
                a,
                b,
                log_invalpha: invalpha.ln(),
                vr,
            })
        } else if lam == 0.0 {
            PoissonMethod::Zero
        } else {
            PoissonMethod::Multiplication {
                enlam: (-lam).exp(),
            }
        };
        Self { lam, method }
    }
}

/// `floor(v) as i64` without a libm call (x86-64's baseline has no rounding instruction): exact
/// for every |v| < 2⁶³; −∞ (a zero uniform makes PTRS divide by zero) saturates to `i64::MIN`,
/// a negative candidate that is rejected, as in numpy.
#[inline]
fn floor_to_i64(v: f64) -> i64 {
    let t = v as i64;
    if (t as f64) > v {
        t.saturating_sub(1)
    } else {
        t
    }
}

/// The smallest all-ones mask covering `value`.
fn mask_for(value: u64) -> u64 {
    let mut mask = value;
    mask |= mask >> 1;
    mask |= mask >> 2;
    mask |= mask >> 4;
    mask |= mask >> 8;
    mask |= mask >> 16;
    mask |= mask >> 32;
    mask
}

/// `loggam(k)` for a positive integer `k`, from a table for the small values PTRS meets most.
fn loggam_of_integer(k: i64) -> f64 {
    const TABLE_SIZE: usize = 1024;
    static TABLE: std::sync::OnceLock<Vec<f64>> = std::sync::OnceLock::new();
    match usize::try_from(k) {
        Ok(index) if index < TABLE_SIZE => {
            TABLE.get_or_init(|| (0..TABLE_SIZE).map(|i| loggam(i as f64)).collect())[index]
        }
        _ => loggam(k as f64),
    }
}

/// log Γ(x) by numpy's Stirling series (the exact arithmetic matters for PTRS acceptance).
fn loggam(x: f64) -> f64 {
    const COEFFS: [f64; 10] = [
        8.333_333_333_333_333e-2,
        -2.777_777_777_777_778e-3,
        7.936_507_936_507_937e-4,
        -5.952_380_952_380_952e-4,
        8.417_508_417_508_418e-4,
        -1.917_526_917_526_918e-3,
        6.410_256_410_256_41e-3,
        -2.955_065_359_477_124e-2,
        1.796_443_723_688_307e-1,
        -1.392_432_216_905_9,
    ];
    if x == 1.0 || x == 2.0 {
        return 0.0;
    }
    let n = if x < 7.0 { (7.0 - x) as i64 } else { 0 };
    let mut x0 = x + n as f64;
    let x2 = (1.0 / x0) * (1.0 / x0);
    let lg2pi = 1.837_877_066_409_345_3;
    let mut gl0 = COEFFS[9];
    for k in (0..9).rev() {
        gl0 *= x2;
        gl0 += COEFFS[k];
    }
    let mut gl = gl0 / x0 + 0.5 * lg2pi + (x0 - 0.5) * x0.ln() - x0;
    if x < 7.0 {
        for _ in 1..=n {
            gl -= (x0 - 1.0).ln();
            x0 -= 1.0;
        }
    }
    gl
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floor_to_i64_is_floor() {
        for v in [
            -2.5,
            -2.0,
            -1e-300,
            -0.0,
            0.0,
            0.3,
            1.0,
            7.999_999_999_999_999,
            1e15 + 0.5,
        ] {
            assert_eq!(floor_to_i64(v), v.floor() as i64, "{v}");
        }
        assert_eq!(floor_to_i64(f64::NEG_INFINITY), i64::MIN);
    }

    #[test]
    fn mask_covers_the_range() {
        assert_eq!(mask_for(0), 0);
        assert_eq!(mask_for(1), 1);
        assert_eq!(mask_for(4), 7);
        assert_eq!(mask_for(8), 15);
        assert_eq!(mask_for(u32::MAX as u64 + 1), (1u64 << 33) - 1);
    }

    #[test]
    fn loggam_matches_known_values() {
        // log Γ(n) = log((n − 1)!)
        let facts = [1.0f64, 1.0, 2.0, 6.0, 24.0, 120.0, 720.0, 5040.0, 40320.0];
        for (i, f) in facts.iter().enumerate() {
            let x = i as f64 + 1.0;
            assert!((loggam(x) - f.ln()).abs() < 1e-12, "x = {x}");
        }
    }

    #[test]
    fn empty_randint_range_draws_nothing() {
        let mut a = RandomState::new(5);
        let mut b = RandomState::new(5);
        assert_eq!(a.randint(3, 3), 3);
        assert_eq!(a.next_u32(), b.next_u32());
    }
}
