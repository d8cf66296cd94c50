//! Fuzz-style property tests: random bytes, mutated fixture files and random compressed RLE
//! strings must give a value or an error, never a panic (overflow checks are on in tests), and
//! the RLE operations must agree with the same operations on dense masks.
//!
//! Seeds are fixed; `RTB_SLOW_TESTS=1` runs ten times as many cases.

use std::path::Path;

use rtb_coco_eval::mask::rle_iou;
use rtb_coco_eval::{CocoEval, CocoGt, Detections, IouType, Params, Rle};

/// splitmix64: a tiny deterministic generator, enough for fuzzing.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }
}

fn rounds(base: usize) -> usize {
    if std::env::var_os("RTB_SLOW_TESTS").is_some() {
        base * 10
    } else {
        base
    }
}

fn golden(path: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/golden/cases")
            .join(path),
    )
    .unwrap()
}

/// A random edit of a JSON text: mostly a number replaced by another (negative, huge,
/// fractional, zero), sometimes a structural edit (byte flip, deletion, duplication, inserted
/// punctuation, truncation).
fn mutate(rng: &mut Rng, text: &[u8]) -> Vec<u8> {
    const PIECES: [&[u8]; 12] = [
        b"{",
        b"}",
        b"[",
        b"]",
        b",",
        b":",
        b"\"",
        b"\\",
        b"null",
        b"[]",
        b"\"counts\"",
        b"-",
    ];
    const NUMBERS: [&str; 12] = [
        "0",
        "-1",
        "1e9",
        "3.5",
        "4294967295",
        "4294967296",
        "-2147483649",
        "1e300",
        "-0",
        "7",
        "100000",
        "0.0001",
    ];
    let mut out = text.to_vec();
    for _ in 0..1 + rng.below(3) {
        if out.is_empty() {
            break;
        }
        let at = rng.below(out.len());
        if rng.chance(0.8) {
            let Some(start) = (at..out.len()).find(|&i| out[i].is_ascii_digit()) else {
                continue;
            };
            let mut end = start;
            while end < out.len()
                && matches!(out[end], b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-')
            {
                end += 1;
            }
            let number = if rng.chance(0.5) {
                NUMBERS[rng.below(NUMBERS.len())].to_string()
            } else {
                format!("{}", rng.next_u64() % 1000)
            };
            out.splice(start..end, number.bytes());
            continue;
        }
        match rng.below(5) {
            0 => out[at] = rng.next_u64() as u8,
            1 => {
                let end = (at + 1 + rng.below(40)).min(out.len());
                out.drain(at..end);
            }
            2 => {
                let end = (at + 1 + rng.below(200)).min(out.len());
                let copy = out[at..end].to_vec();
                let to = rng.below(out.len());
                out.splice(to..to, copy);
            }
            3 => {
                let piece = PIECES[rng.below(PIECES.len())];
                out.splice(at..at, piece.iter().copied());
            }
            _ => out.truncate(at),
        }
    }
    out
}

#[test]
fn random_bytes_never_panic() {
    let gt = CocoGt::from_slice(&golden("bbox_default/gt.json"), "gt.json").unwrap();
    let mut rng = Rng(1);
    for _ in 0..rounds(3000) {
        let len = rng.below(120);
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                if rng.chance(0.7) {
                    b"{}[],:\"0123456789.-e aimgsboxcuntrz\\"[rng.below(35)]
                } else {
                    rng.next_u64() as u8
                }
            })
            .collect();
        let _ = CocoGt::from_slice(&bytes, "random.json");
        let _ = Detections::from_slice(&bytes, "random.json", &gt);
        if let Ok(text) = std::str::from_utf8(&bytes) {
            let _ = Rle::from_compressed(text, rng.below(50) as u32, rng.below(50) as u32);
        }
    }
}

#[test]
fn mutated_files_load_or_fail_cleanly_and_evaluate() {
    let mut rng = Rng(2);
    let cases = [
        ("bbox_default/gt.json", "bbox_default/dt.json"),
        ("segm_rle_results/gt.json", "segm_rle_results/dt.json"),
        ("segm_bbox_results/gt.json", "segm_bbox_results/dt.json"),
    ];
    let mut evaluated = 0;
    for round in 0..rounds(90) {
        let (gt_path, dt_path) = cases[round % cases.len()];
        let gt_text = golden(gt_path);
        let dt_text = golden(dt_path);
        let (gt_text, dt_text) = if rng.chance(0.5) {
            (mutate(&mut rng, &gt_text), dt_text)
        } else {
            (gt_text, mutate(&mut rng, &dt_text))
        };
        let Ok(gt) = CocoGt::from_slice(&gt_text, "gt.json") else {
            continue;
        };
        let Ok(dt) = Detections::from_slice(&dt_text, "dt.json", &gt) else {
            continue;
        };
        for iou_type in [IouType::Bbox, IouType::Segm] {
            if CocoEval::new(&gt, &dt, Params::new(iou_type)).run().is_ok() {
                evaluated += 1;
            }
        }
    }
    // Most edits keep the files valid enough to evaluate; the test must exercise evaluation.
    assert!(evaluated > 40, "only {evaluated} evaluations ran");
}

#[test]
fn compressed_strings_decode_or_fail_and_round_trip() {
    let mut rng = Rng(3);
    for _ in 0..rounds(20_000) {
        let len = rng.below(12);
        let text: String = (0..len)
            .map(|_| {
                char::from(if rng.chance(0.95) {
                    48 + rng.below(64) as u8
                } else {
                    rng.next_u64() as u8 % 128
                })
            })
            .collect();
        // Decode with the size the counts imply, so that valid strings are accepted.
        let mut counts = Vec::new();
        let Ok(rle) = Rle::from_compressed(&text, 1, 0).or_else(|_| {
            let total: Option<u64> = match Rle::from_compressed(&text, 0, 0) {
                Ok(rle) => Some(rle.counts().iter().map(|&c| u64::from(c)).sum()),
                Err(rtb_coco_eval::MaskError::CountsSum { sum, .. }) => Some(sum),
                Err(_) => None,
            };
            match total {
                Some(total) if total <= u64::from(u32::MAX) => {
                    Rle::from_compressed(&text, 1, total as u32)
                }
                _ => Err(rtb_coco_eval::MaskError::NoPolygon),
            }
        }) else {
            continue;
        };
        counts.extend_from_slice(rle.counts());
        let again = Rle::from_compressed(&rle.to_compressed(), rle.height(), rle.width()).unwrap();
        assert_eq!(again.counts(), counts.as_slice(), "{text:?}");
    }
}

fn random_mask(rng: &mut Rng, pixels: usize) -> Vec<u8> {
    let density = rng.below(100) as f64 / 100.0;
    let mut mask = vec![0u8; pixels];
    // Runs rather than independent pixels, like real masks.
    let mut value = rng.chance(0.5) as u8;
    let mut i = 0;
    while i < pixels {
        let run = 1 + rng.below(6);
        for pixel in mask.iter_mut().skip(i).take(run) {
            *pixel = value;
        }
        i += run;
        value = rng.chance(density) as u8;
    }
    mask
}

#[test]
fn rle_operations_agree_with_dense_masks() {
    let mut rng = Rng(4);
    for _ in 0..rounds(400) {
        let (h, w) = (1 + rng.below(12) as u32, 1 + rng.below(12) as u32);
        let pixels = (h * w) as usize;
        let dense: Vec<Vec<u8>> = (0..1 + rng.below(4))
            .map(|_| random_mask(&mut rng, pixels))
            .collect();
        let rles: Vec<Rle> = dense
            .iter()
            .map(|m| Rle::encode(m, h, w).unwrap())
            .collect();
        for (mask, rle) in dense.iter().zip(&rles) {
            assert_eq!(&rle.decode(), mask);
            let area = mask.iter().filter(|&&p| p == 1).count();
            assert_eq!(rle.area() as usize, area);
            if area > 0 {
                let (mut x0, mut y0, mut x1, mut y1) = (u32::MAX, u32::MAX, 0, 0);
                for (i, &p) in mask.iter().enumerate() {
                    if p == 1 {
                        let (x, y) = (i as u32 / h, i as u32 % h);
                        (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x), y1.max(y));
                    }
                }
                let expected = [x0, y0, x1 - x0 + 1, y1 - y0 + 1].map(f64::from);
                assert_eq!(rle.to_bbox(), expected);
            }
        }
        let union = Rle::merge(&rles, false).unwrap().decode();
        let intersection = Rle::merge(&rles, true).unwrap().decode();
        for i in 0..pixels {
            assert_eq!(union[i], dense.iter().any(|m| m[i] == 1) as u8);
            assert_eq!(intersection[i], dense.iter().all(|m| m[i] == 1) as u8);
        }
        let crowd: Vec<bool> = rles.iter().map(|_| rng.chance(0.3)).collect();
        let ious = rle_iou(&rles, &rles, &crowd);
        for (d, dm) in dense.iter().enumerate() {
            for (g, gm) in dense.iter().enumerate() {
                let inter = (0..pixels).filter(|&i| dm[i] == 1 && gm[i] == 1).count();
                let union = (0..pixels).filter(|&i| dm[i] == 1 || gm[i] == 1).count();
                let dt_area = dm.iter().filter(|&&p| p == 1).count();
                let expected = if inter == 0 {
                    0.0
                } else if crowd[g] {
                    inter as f64 / dt_area as f64
                } else {
                    inter as f64 / union as f64
                };
                assert_eq!(ious[d * rles.len() + g], expected);
            }
        }
    }
}
