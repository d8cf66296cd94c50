//! Counting (stored label, prediction) byte pairs into a 256×256 joint histogram: the
//! accumulator's inner loop, and the only place where pixels are touched one by one.
//!
//! Segmentation maps are runs of one (label, prediction) pair. Each block of [`RUN`] pixels
//! gets a bit mask of where the pair changes from the pixel before (vector compares); a run is
//! then counted with one increment however long it is, across block and row boundaries.
//! Blocks with many changes (noise) are counted pixel by pixel instead, which is cheaper than
//! walking their bits: their 64 pair keys are formed at once (byte interleaves), then counted
//! in 8-bit cells that stay in the L1 cache (see [`JointHistogram`]).
//!
//! The change mask is computed with AVX2 when the CPU has it, SSE2 otherwise on x86_64 (part
//! of its baseline), and eight pixels per 64-bit word (SWAR) elsewhere. All three give the
//! same mask; the tests check each against the per-pixel definition, and every path's counts
//! against a per-pixel histogram.
// The vector loads and the AVX2 dispatch need `unsafe`; each block states why it holds.
#![allow(unsafe_code)]

/// Joint histogram bins: every (label byte, prediction byte) pair.
pub(crate) const BINS: usize = 256 * 256;

/// 32-bit histogram cells, `label * 256 + prediction`.
type Table = [u32; BINS];

/// The joint histogram of (stored label, prediction) byte pairs.
///
/// Runs are added to 32-bit cells. Pixels counted one by one (noise) go to 8-bit cells
/// instead, since random increments are limited by cache traffic: the cells that a 150-class
/// map touches are 23 KB of 8-bit ones, which stay in the L1 cache, against 90 KB of 32-bit
/// ones, which do not. benches/accumulate.rs measured i.i.d. maps at 4.2 GB/s with them
/// against 3.4 GB/s with 32-bit cells only (counting into `wide` in `count_block`). An 8-bit
/// cell that wraps to zero carries 256 into its 32-bit cell.
pub(crate) struct JointHistogram {
    wide: Box<Table>,
    narrow: Box<[u8; BINS]>,
    /// Whether any 8-bit cell may be non-zero (region maps never touch them).
    narrow_used: bool,
}

impl std::fmt::Debug for JointHistogram {
    // Scratch space: its cells say nothing useful.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JointHistogram").finish_non_exhaustive()
    }
}

impl JointHistogram {
    /// An all-zero histogram.
    pub(crate) fn new() -> Self {
        JointHistogram {
            wide: vec![0; BINS]
                .into_boxed_slice()
                .try_into()
                .expect("BINS cells"),
            narrow: vec![0; BINS]
                .into_boxed_slice()
                .try_into()
                .expect("BINS cells"),
            narrow_used: false,
        }
    }

    /// Counts each (label, prediction) pair. The caller keeps every count below `u32::MAX`
    /// (at most that many pixels between reads of [`counts_mut`](Self::counts_mut)).
    pub(crate) fn count(&mut self, label: &[u8], pred: &[u8]) {
        count_pairs(self, label, pred);
    }

    /// The counts, `label * 256 + prediction`; the caller zeroes them after reading.
    pub(crate) fn counts_mut(&mut self) -> &mut [u32; BINS] {
        if self.narrow_used {
            // Row by row, skipping the untouched ones (labels that do not occur).
            for (wide, narrow) in self
                .wide
                .chunks_exact_mut(256)
                .zip(self.narrow.chunks_exact_mut(256))
            {
                if narrow.iter().fold(0, |any, &c| any | c) == 0 {
                    continue;
                }
                for (wide, narrow) in wide.iter_mut().zip(narrow.iter_mut()) {
                    *wide += u32::from(*narrow);
                    *narrow = 0;
                }
            }
            self.narrow_used = false;
        }
        &mut self.wide
    }
}

/// Pixels whose pair changes are found at once.
const RUN: usize = 64;

/// Blocks with more pair changes than this are counted pixel by pixel.
const NOISY_BLOCK: u32 = 24;

/// One block and the pixel before it: `window[0]` is the previous pixel, `window[1..]` the
/// block.
type Window = [u8; RUN + 1];

fn count_pairs(table: &mut JointHistogram, label: &[u8], pred: &[u8]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("bmi1")
            && std::arch::is_x86_feature_detected!("popcnt")
        {
            // SAFETY: the CPU has AVX2, BMI1 and POPCNT, checked just above.
            unsafe { count_pairs_avx2(table, label, pred) }
        } else {
            count_pairs_with(table, label, pred, change_mask_sse2, block_keys_sse2);
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    count_pairs_with(table, label, pred, change_mask_swar, block_keys_portable);
}

/// [`count_pairs_with`] compiled for AVX2, so that the AVX2 change mask inlines into it.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,bmi1,popcnt")]
fn count_pairs_avx2(table: &mut JointHistogram, label: &[u8], pred: &[u8]) {
    count_pairs_with(
        table,
        label,
        pred,
        |label, pred| change_mask_avx2(label, pred),
        block_keys_sse2,
    );
}

/// The run-length counting, with `change_mask` giving bit i set where pixel i of a block
/// differs from the pixel before it (see [`change_mask_swar`] for the definition).
#[inline(always)]
fn count_pairs_with(
    histogram: &mut JointHistogram,
    label: &[u8],
    pred: &[u8],
    change_mask: impl Fn(&Window, &Window) -> u64,
    block_keys: impl Fn(&Window, &Window) -> [u16; RUN],
) {
    debug_assert_eq!(label.len(), pred.len());
    let len = label.len().min(pred.len());
    if len == 0 {
        return;
    }
    let JointHistogram {
        wide: table,
        narrow,
        narrow_used,
    } = histogram;
    // The run in progress: its pair and how many pixels it has so far. Pixel 0 starts it, so
    // every block below has a pixel before it.
    let mut run_key = pair_index(label[0], pred[0]);
    let mut run_len: u32 = 1;
    let mut start = 1;
    while start + RUN <= len {
        let label_window: &Window = label[start - 1..start + RUN].try_into().expect("window");
        let pred_window: &Window = pred[start - 1..start + RUN].try_into().expect("window");
        let mut changes = change_mask(label_window, pred_window);
        if changes == 0 {
            run_len += RUN as u32;
        } else if changes.count_ones() > NOISY_BLOCK {
            table[run_key] += run_len;
            *narrow_used = true;
            count_block(table, narrow, &block_keys(label_window, pred_window));
            // The next run starts after the block.
            run_key = pair_index(label_window[RUN], pred_window[RUN]);
            run_len = 0;
        } else {
            let mut run_start = 0;
            while changes != 0 {
                let at = changes.trailing_zeros();
                table[run_key] += run_len + (at - run_start);
                let pixel = at as usize + 1;
                run_key = pair_index(label_window[pixel], pred_window[pixel]);
                run_len = 0;
                run_start = at;
                changes &= changes - 1;
            }
            run_len = RUN as u32 - run_start;
        }
        start += RUN;
    }
    table[run_key] += run_len;
    count_scalar(table, &label[start..len], &pred[start..len]);
}

/// Bit i is set when pixel i of the block (`window[i + 1]`) has a different label or
/// prediction than the pixel before it (`window[i]`). Eight pixels per 64-bit word, portable.
#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
#[inline(always)]
fn change_mask_swar(label: &Window, pred: &Window) -> u64 {
    const LOW7: u64 = 0x7F7F_7F7F_7F7F_7F7F;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let word = |bytes: &Window, at: usize| {
        u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
    };
    let mut mask = 0u64;
    for group in 0..RUN / 8 {
        let at = group * 8;
        let diff = (word(label, at + 1) ^ word(label, at)) | (word(pred, at + 1) ^ word(pred, at));
        // High bit of each byte set where the byte is non-zero.
        let nonzero = (((diff & LOW7) + LOW7) | diff) & HIGH;
        // Gather the eight high bits into one byte (no carries between the partial products).
        let byte = (nonzero >> 7).wrapping_mul(0x0102_0408_1020_4080) >> 56;
        mask |= byte << at;
    }
    mask
}

/// [`change_mask_swar`] with SSE2, 16 pixels per compare.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn change_mask_sse2(label: &Window, pred: &Window) -> u64 {
    use std::arch::x86_64::{
        __m128i, _mm_and_si128, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8,
    };
    let mut mask = 0u64;
    for group in 0..RUN / 16 {
        let at = group * 16;
        // SAFETY: SSE2 is part of the x86_64 baseline. Each unaligned load reads 16 bytes
        // starting at `at` or `at + 1`, and at + 1 + 16 ≤ RUN + 1, the window's length.
        let same = unsafe {
            let before_label = _mm_loadu_si128(label.as_ptr().add(at).cast::<__m128i>());
            let this_label = _mm_loadu_si128(label.as_ptr().add(at + 1).cast::<__m128i>());
            let before_pred = _mm_loadu_si128(pred.as_ptr().add(at).cast::<__m128i>());
            let this_pred = _mm_loadu_si128(pred.as_ptr().add(at + 1).cast::<__m128i>());
            _mm_movemask_epi8(_mm_and_si128(
                _mm_cmpeq_epi8(this_label, before_label),
                _mm_cmpeq_epi8(this_pred, before_pred),
            ))
        };
        mask |= u64::from(!(same as u32) & 0xFFFF) << at;
    }
    mask
}

/// [`change_mask_swar`] with AVX2, 32 pixels per compare.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
fn change_mask_avx2(label: &Window, pred: &Window) -> u64 {
    use std::arch::x86_64::{
        __m256i, _mm256_and_si256, _mm256_cmpeq_epi8, _mm256_loadu_si256, _mm256_movemask_epi8,
    };
    let mut mask = 0u64;
    for group in 0..RUN / 32 {
        let at = group * 32;
        // SAFETY: each unaligned load reads 32 bytes starting at `at` or `at + 1`, and
        // at + 1 + 32 ≤ RUN + 1, the window's length; AVX2 is enabled on this function.
        let same = unsafe {
            let before_label = _mm256_loadu_si256(label.as_ptr().add(at).cast::<__m256i>());
            let this_label = _mm256_loadu_si256(label.as_ptr().add(at + 1).cast::<__m256i>());
            let before_pred = _mm256_loadu_si256(pred.as_ptr().add(at).cast::<__m256i>());
            let this_pred = _mm256_loadu_si256(pred.as_ptr().add(at + 1).cast::<__m256i>());
            _mm256_movemask_epi8(_mm256_and_si256(
                _mm256_cmpeq_epi8(this_label, before_label),
                _mm256_cmpeq_epi8(this_pred, before_pred),
            ))
        };
        mask |= u64::from(!(same as u32)) << at;
    }
    mask
}

/// Counts a block's pixels one by one: the pair keys of the whole block are formed first
/// (`keys`, vectorised on x86_64), then counted in the 8-bit cells.
#[inline(always)]
fn count_block(wide: &mut Table, narrow: &mut [u8; BINS], keys: &[u16; RUN]) {
    for &key in keys {
        let key = usize::from(key);
        let count = narrow[key].wrapping_add(1);
        narrow[key] = count;
        if count == 0 {
            wide[key] += 256;
        }
    }
}

/// The pair keys (`label * 256 + prediction`) of a block's pixels, `window[1..]`, in any
/// order (a histogram does not care). Portable.
#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
#[inline(always)]
fn block_keys_portable(label: &Window, pred: &Window) -> [u16; RUN] {
    std::array::from_fn(|i| pair_index(label[i + 1], pred[i + 1]) as u16)
}

/// [`block_keys_portable`] with SSE2: byte interleaves put the prediction in the low byte and
/// the label in the high byte of each 16-bit lane.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn block_keys_sse2(label: &Window, pred: &Window) -> [u16; RUN] {
    use std::arch::x86_64::{
        __m128i, _mm_loadu_si128, _mm_storeu_si128, _mm_unpackhi_epi8, _mm_unpacklo_epi8,
    };
    let mut keys = [0u16; RUN];
    for group in 0..RUN / 16 {
        let at = group * 16;
        // SAFETY: SSE2 is part of the x86_64 baseline. The loads read 16 bytes from 1 + at,
        // and 1 + at + 16 ≤ RUN + 1; the stores write 8 keys each from key `at` and key
        // `at + 8`, and at + 16 ≤ RUN keys.
        unsafe {
            let l = _mm_loadu_si128(label.as_ptr().add(1 + at).cast::<__m128i>());
            let p = _mm_loadu_si128(pred.as_ptr().add(1 + at).cast::<__m128i>());
            let out = keys.as_mut_ptr().add(at).cast::<__m128i>();
            _mm_storeu_si128(out, _mm_unpacklo_epi8(p, l));
            _mm_storeu_si128(out.add(1), _mm_unpackhi_epi8(p, l));
        }
    }
    keys
}

#[inline(always)]
fn count_scalar(table: &mut Table, label: &[u8], pred: &[u8]) {
    for (&l, &p) in label.iter().zip(pred) {
        table[pair_index(l, p)] += 1;
    }
}

#[inline(always)]
fn pair_index(label: u8, pred: u8) -> usize {
    usize::from(label) << 8 | usize::from(pred)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lcg(state: &mut u64) -> u64 {
        *state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        *state >> 33
    }

    /// The definition, one pixel at a time.
    fn reference_mask(label: &Window, pred: &Window) -> u64 {
        (0..RUN).fold(0, |mask, i| {
            let changed = label[i + 1] != label[i] || pred[i + 1] != pred[i];
            mask | u64::from(changed) << i
        })
    }

    fn reference_counts(label: &[u8], pred: &[u8]) -> Vec<u32> {
        let mut table = vec![0u32; BINS];
        for (&l, &p) in label.iter().zip(pred) {
            table[pair_index(l, p)] += 1;
        }
        table
    }

    fn random_windows(state: &mut u64) -> (Window, Window) {
        let mut label = [0u8; RUN + 1];
        let mut pred = [0u8; RUN + 1];
        // Few distinct values (including ones with the high bit set), so that equal
        // neighbours are common and every byte lane sees both outcomes.
        for i in 0..=RUN {
            label[i] = (lcg(state) % 3) as u8 * 127;
            pred[i] = (lcg(state) % 2) as u8 * 255;
        }
        (label, pred)
    }

    #[test]
    fn every_change_mask_flags_every_pair_change() {
        let mut state = 3;
        for _ in 0..5000 {
            let (label, pred) = random_windows(&mut state);
            let expected = reference_mask(&label, &pred);
            assert_eq!(change_mask_swar(&label, &pred), expected, "swar");
            #[cfg(target_arch = "x86_64")]
            {
                assert_eq!(change_mask_sse2(&label, &pred), expected, "sse2");
                if std::arch::is_x86_feature_detected!("avx2") {
                    // SAFETY: the CPU has AVX2, checked just above.
                    let avx2 = unsafe { change_mask_avx2(&label, &pred) };
                    assert_eq!(avx2, expected, "avx2");
                }
            }
        }
    }

    /// Noise made of two pairs only: each 8-bit cell wraps hundreds of times and must carry
    /// into its 32-bit cell every time.
    #[test]
    fn noise_of_few_pairs_carries_out_of_the_narrow_cells() {
        let len = 64 * 1000 + 17;
        let label: Vec<u8> = (0..len).map(|i| (i % 2) as u8 * 7).collect();
        let pred: Vec<u8> = (0..len).map(|i| (i % 3 == 0) as u8).collect();
        let expected = reference_counts(&label, &pred);
        let mut table = JointHistogram::new();
        table.count(&label, &pred);
        assert!(table.counts_mut()[..] == expected[..]);
        assert!(expected.iter().filter(|&&c| c > 0).all(|&c| c > 5000));
    }

    /// Runs of random length, noise, block-straddling runs and every remainder length,
    /// counted with each change mask.
    #[test]
    fn every_path_counts_every_pixel_once() {
        let mut state = 11;
        for len in [0usize, 1, 2, 63, 64, 65, 66, 128, 129, 130, 1000, 4097] {
            for noise in [0u64, 2, 5, 30, 50, 100] {
                let mut label = Vec::with_capacity(len);
                let mut pred = Vec::with_capacity(len);
                let (mut l, mut p) = (0u8, 0u8);
                for _ in 0..len {
                    if lcg(&mut state) % 100 < noise {
                        l = lcg(&mut state) as u8;
                        p = lcg(&mut state) as u8;
                    }
                    label.push(l);
                    pred.push(p);
                }
                let expected = reference_counts(&label, &pred);
                let mut table = JointHistogram::new();
                count_pairs(&mut table, &label, &pred);
                assert!(
                    table.counts_mut()[..] == expected[..],
                    "len {len} noise {noise}"
                );
                let mut table = JointHistogram::new();
                count_pairs_with(
                    &mut table,
                    &label,
                    &pred,
                    change_mask_swar,
                    block_keys_portable,
                );
                assert!(
                    table.counts_mut()[..] == expected[..],
                    "swar: len {len} noise {noise}"
                );
                #[cfg(target_arch = "x86_64")]
                {
                    let mut table = JointHistogram::new();
                    count_pairs_with(&mut table, &label, &pred, change_mask_sse2, block_keys_sse2);
                    assert!(
                        table.counts_mut()[..] == expected[..],
                        "sse2: len {len} noise {noise}"
                    );
                    if std::arch::is_x86_feature_detected!("avx2")
                        && std::arch::is_x86_feature_detected!("bmi1")
                        && std::arch::is_x86_feature_detected!("popcnt")
                    {
                        let mut table = JointHistogram::new();
                        // SAFETY: the CPU has AVX2, BMI1 and POPCNT, checked just above.
                        unsafe { count_pairs_avx2(&mut table, &label, &pred) };
                        assert!(
                            table.counts_mut()[..] == expected[..],
                            "avx2: len {len} noise {noise}"
                        );
                    }
                }
            }
        }
    }
}
