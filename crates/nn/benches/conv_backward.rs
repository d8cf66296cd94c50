//! conv2d forward, backward alone and forward+backward on the three shapes of issue 6, with
//! wall time and process CPU time per call, interleaved round by round so that a change in
//! machine load hits all three measurements alike. Prints medians and the ratio
//! backward / forward, the issue's target being ≤ 2.
//!
//! RAYON_NUM_THREADS=2 cargo bench -p rtb-nn --bench conv_backward
//!
//! `RTB_CONV_ROUNDS` (default 15) sets the number of rounds; `RTB_CONV_SHAPES` (default: the
//! three of issue 6) picks shapes by name, comma-separated, from `benches/common`. "bwd" is `y.backward()` on the output of a forward
//! that ran outside the timed region (candle's ones seed, the fused backward op and candle's
//! accumulation of both gradients), which is what `(forward+backward) − forward` estimates.
//! "kernels" is the convolution's own backward alone, `conv2d_grads` (dX and dW from a given
//! dY), without candle's autograd bookkeeping. PyTorch's side is
//! `benches/torch_conv_resize.py --conv-only`.

// A bench's report is its standard output.
#![allow(clippy::print_stdout)]

use std::time::Instant;

use candle_core::{Device, Tensor, Var};
use rtb_nn::conv::{Conv2dConfig, conv2d, conv2d_grads};

mod common;
use common::{CONV_SHAPES, MORE_CONV_SHAPES};

/// CPU time of every thread of this process so far, in seconds (Linux: the first field of
/// each task's schedstat, nanoseconds on the CPU), or `None` where that is unreadable.
fn process_cpu_seconds() -> Option<f64> {
    let mut total: u64 = 0;
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let path = task.ok()?.path().join("schedstat");
        // A thread may exit between listing and reading; it then simply stops counting.
        if let Ok(text) = std::fs::read_to_string(path) {
            total += text.split_whitespace().next()?.parse::<u64>().ok()?;
        }
    }
    Some(total as f64 * 1e-9)
}

#[derive(Default)]
struct Series {
    wall: Vec<f64>,
    cpu: Vec<f64>,
}

impl Series {
    fn time<R>(&mut self, f: impl FnOnce() -> R) -> R {
        let cpu0 = process_cpu_seconds();
        let t0 = Instant::now();
        let out = f();
        let wall = t0.elapsed().as_secs_f64();
        if let (Some(a), Some(b)) = (cpu0, process_cpu_seconds()) {
            self.cpu.push(b - a);
        }
        self.wall.push(wall);
        out
    }
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v[mid]
    } else {
        0.5 * (v[mid - 1] + v[mid])
    }
}

fn randn(shape: &[usize], scale: f64) -> Tensor {
    // Tensor::randn is seeded per thread; the values do not affect the timing.
    (Tensor::randn(0f32, 1f32, shape, &Device::Cpu).unwrap() * scale).unwrap()
}

fn main() {
    let rounds: usize = std::env::var("RTB_CONV_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(15);
    let only = std::env::var("RTB_CONV_SHAPES").ok();
    println!(
        "rayon threads {}, {rounds} rounds; times in ms, median over rounds (CPU = all threads)",
        rayon::current_num_threads()
    );
    println!(
        "{:<14} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9}",
        "shape",
        "fwd",
        "fwd cpu",
        "bwd",
        "bwd cpu",
        "kernels",
        "kern cpu",
        "fwd+bwd",
        "f+b cpu",
        "bwd/fwd",
        "cpu",
        "kern/fwd",
        "(f+b-f)/f"
    );
    for s in CONV_SHAPES.iter().chain(&MORE_CONV_SHAPES) {
        // By default the three shapes of issue 6; the others only when named.
        let wanted = match &only {
            Some(only) => only.split(',').any(|name| name == s.name),
            None => CONV_SHAPES.iter().any(|issue| issue.name == s.name),
        };
        if !wanted {
            continue;
        }
        let x = randn(&[s.batch, s.in_channels, s.size, s.size], 1.0);
        let w = randn(&[s.out_channels, s.in_channels, s.kernel, s.kernel], 0.05);
        let cfg = Conv2dConfig::default().with_padding(s.kernel / 2);
        let xv = Var::from_tensor(&x).unwrap();
        let wv = Var::from_tensor(&w).unwrap();
        let grad_out = conv2d(&x, &w, None, &cfg).unwrap().ones_like().unwrap();
        let (mut fwd, mut bwd, mut kernels, mut both) = (
            Series::default(),
            Series::default(),
            Series::default(),
            Series::default(),
        );
        // One untimed warm-up of each, then the timed rounds.
        for round in 0..=rounds {
            let mut f = Series::default();
            let mut b = Series::default();
            let mut k = Series::default();
            let mut fb = Series::default();
            drop(f.time(|| conv2d(&x, &w, None, &cfg).unwrap()));
            drop(k.time(|| conv2d_grads(&x, &w, &grad_out, &cfg).unwrap()));
            let y = conv2d(xv.as_tensor(), wv.as_tensor(), None, &cfg).unwrap();
            let grads = b.time(|| y.backward().unwrap());
            assert!(grads.get(xv.as_tensor()).is_some() && grads.get(wv.as_tensor()).is_some());
            drop((grads, y));
            fb.time(|| {
                let y = conv2d(xv.as_tensor(), wv.as_tensor(), None, &cfg).unwrap();
                // Seeds the backward with ones, like `y.backward(torch.ones_like(y))`.
                let grads = y.backward().unwrap();
                assert!(grads.get(xv.as_tensor()).is_some());
            });
            if round > 0 {
                for (all, one) in [
                    (&mut fwd, f),
                    (&mut bwd, b),
                    (&mut kernels, k),
                    (&mut both, fb),
                ] {
                    all.wall.extend(one.wall);
                    all.cpu.extend(one.cpu);
                }
            }
        }
        let ms = |v: &[f64]| 1e3 * median(v);
        let (fw, fc, bw, bc, kw, kc, fbw, fbc) = (
            ms(&fwd.wall),
            ms(&fwd.cpu),
            ms(&bwd.wall),
            ms(&bwd.cpu),
            ms(&kernels.wall),
            ms(&kernels.cpu),
            ms(&both.wall),
            ms(&both.cpu),
        );
        println!(
            "{:<14} {fw:>8.1} {fc:>8.1} {bw:>8.1} {bc:>8.1} {kw:>8.1} {kc:>8.1} {fbw:>8.1} {fbc:>8.1} {:>8.2} {:>8.2} {:>8.2} {:>9.2}",
            s.name,
            bw / fw,
            bc / fc,
            kw / fw,
            (fbw - fw) / fw
        );
    }
}
