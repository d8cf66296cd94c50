//! Counting (stored label, prediction) byte pairs into a 256×256 joint histogram: the
//! accumulator's inner loop, and the only place where pixels are touched one by one.
//!
//! Segmentation maps are runs of one (label, prediction) pair. Each block of [`RUN`] pixels
//! gets a bit mask of where the pair changes from the pixel before (vector compares); a run is
//! then counted with one increment however long it is, across block and row boundaries.
//! Blocks with many changes (noise) are counted pixel by pixel instead, which is cheaper than
//! walking their bits.
//!
//! The change mask is computed with AVX2 when the CPU has it, SSE2 otherwise on x86_64 (part
//! of its baseline), and eight pixels per 64-bit word (SWAR) elsewhere. All three give the
//! same mask; the tests check each against the per-pixel definition.
// The vector loads and the AVX2 dispatch need `unsafe`; each block states why it holds.
#![allow(unsafe_code)]

/// Joint histogram bins: every (label byte, prediction byte) pair.
pub(crate) const BINS: usize = 256 * 256;

/// The histogram's cells, `label * 256 + prediction`.
pub(crate) type Table = [u32; BINS];

/// Pixels whose pair changes are found at once.
const RUN: usize = 64;

/// Blocks with more pair changes than this are counted pixel by pixel.
const NOISY_BLOCK: u32 = 24;

/// One block and the pixel before it: `window[0]` is the previous pixel, `window[1..]` the
/// block.
type Window = [u8; RUN + 1];

/// Counts (label, prediction) byte pairs into `table[label * 256 + prediction]`. The caller
/// keeps every count below `u32::MAX` (at most that many pixels between flushes).
pub(crate) fn count_pairs(table: &mut Table, label: &[u8], pred: &[u8]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2, checked just above.
            unsafe { count_pairs_avx2(table, label, pred) }
        } else {
            count_pairs_with(table, label, pred, change_mask_sse2);
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    count_pairs_with(table, label, pred, change_mask_swar);
}

/// [`count_pairs_with`] compiled for AVX2, so that the AVX2 change mask inlines into it.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn count_pairs_avx2(table: &mut Table, label: &[u8], pred: &[u8]) {
    count_pairs_with(table, label, pred, |label, pred| {
        change_mask_avx2(label, pred)
    });
}

/// The run-length counting, with `change_mask` giving bit i set where pixel i of a block
/// differs from the pixel before it (see [`change_mask_swar`] for the definition).
#[inline(always)]
fn count_pairs_with(
    table: &mut Table,
    label: &[u8],
    pred: &[u8],
    change_mask: impl Fn(&Window, &Window) -> u64,
) {
    debug_assert_eq!(label.len(), pred.len());
    let len = label.len().min(pred.len());
    if len == 0 {
        return;
    }
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
            count_scalar(table, &label_window[1..RUN], &pred_window[1..RUN]);
            run_key = pair_index(label_window[RUN], pred_window[RUN]);
            run_len = 1;
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

    fn zeroed_table() -> Box<Table> {
        vec![0u32; BINS].into_boxed_slice().try_into().unwrap()
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
                let mut table = zeroed_table();
                count_pairs(&mut table, &label, &pred);
                assert!(table[..] == expected[..], "len {len} noise {noise}");
                let mut table = zeroed_table();
                count_pairs_with(&mut table, &label, &pred, change_mask_swar);
                assert!(table[..] == expected[..], "swar: len {len} noise {noise}");
                #[cfg(target_arch = "x86_64")]
                {
                    let mut table = zeroed_table();
                    count_pairs_with(&mut table, &label, &pred, change_mask_sse2);
                    assert!(table[..] == expected[..], "sse2: len {len} noise {noise}");
                }
            }
        }
    }
}
