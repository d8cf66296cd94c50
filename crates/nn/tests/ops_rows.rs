//! The row ops a transformer block is made of: window attention, the linear layer, the per-feature bias add, the
//! row gather of a window partition, and the fused last-dimension softmax and layer norm, each against its
//! candle composition (outputs and gradients, f32 at sizes that split into several rayon
//! tasks) and against central differences (f64).

mod ops_support;

use candle_core::{DType, Tensor};
use ops_support::{assert_close, assert_error_mentions, assert_gradcheck, grads_of, uniform};
use rtb_nn::ops::activation::{softmax, softmax_composed};
use rtb_nn::ops::attention::{window_attention, window_attention_composed};
use rtb_nn::ops::bias::{bias_add, bias_add_at, scale_at};
use rtb_nn::ops::gather::{RowMap, gather_rows, gather_rows_composed};
use rtb_nn::ops::linear::{linear, linear_composed};
use rtb_nn::ops::norm::{layer_norm, layer_norm_composed};

fn f32(t: &Tensor) -> Tensor {
    t.to_dtype(DType::F32).unwrap()
}

/// Compares `fused` with `composed` on f32 inputs: output and every input's gradient.
fn assert_same<F, G>(what: &str, fused: F, composed: G, inputs: &[Tensor], gy: &Tensor)
where
    F: Fn(&[Tensor]) -> candle_core::Result<Tensor>,
    G: Fn(&[Tensor]) -> candle_core::Result<Tensor>,
{
    let (y, grads) = grads_of(fused, inputs, gy);
    let (y_ref, grads_ref) = grads_of(composed, inputs, gy);
    assert_close(&format!("{what} y"), &y, &y_ref, 1e-5, 1e-6);
    for (i, (g, g_ref)) in grads.iter().zip(&grads_ref).enumerate() {
        assert_close(
            &format!("{what} grad {i}"),
            g.as_ref().expect("fused gradient"),
            g_ref.as_ref().expect("composed gradient"),
            1e-5,
            1e-5,
        );
    }
}

#[test]
fn bias_add_equals_broadcast_add_and_passes_gradcheck() {
    // 300 rows of 96: several rayon tasks and a partial last one.
    let xs = f32(&uniform(&[3, 100, 96], 1, 2.0));
    let bias = f32(&uniform(&[96], 2, 1.0));
    let gy = f32(&uniform(&[3, 100, 96], 3, 1.0));
    assert_same(
        "bias_add",
        |t| bias_add(&t[0], &t[1]),
        |t| t[0].broadcast_add(&t[1]),
        &[xs, bias],
        &gy,
    );
    assert_gradcheck(
        "bias_add",
        |t| bias_add(&t[0], &t[1]),
        &[uniform(&[2, 3, 5], 4, 1.0), uniform(&[5], 5, 1.0)],
    );
    let xs = uniform(&[2, 3, 5], 6, 1.0);
    assert_error_mentions(
        bias_add(&xs, &uniform(&[3], 7, 1.0)),
        &["bias_add", "[3]", "[2, 3, 5]"],
    );
}

#[test]
fn bias_add_at_a_middle_dimension_equals_broadcast_add_and_passes_gradcheck() {
    // A convolution's [N, C, H, W] output: 6 × 7 × 40 × 50 spans several rayon tasks (runs of
    // 2000), the last partial; and a run length that does not divide the task size.
    // In f64 against candle's composition; in f32 the bias gradient (sums of thousands of
    // elements, accumulated in f64) against the f64 composition, which candle's f32 sum is
    // further from than the kernel's.
    for shape in [[6usize, 7, 40, 50], [3, 5, 7, 9]] {
        let xs = uniform(&shape, 11, 2.0);
        let bias = uniform(&shape[1..2], 12, 1.0);
        let gy = uniform(&shape, 13, 1.0);
        let channels = shape[1];
        let composed = |t: &[Tensor]| t[0].broadcast_add(&t[1].reshape((1, channels, 1, 1))?);
        assert_same(
            "bias_add_at",
            |t| bias_add_at(&t[0], &t[1], 1),
            composed,
            &[xs.clone(), bias.clone()],
            &gy,
        );
        let (y, grads) = grads_of(
            |t| bias_add_at(&t[0], &t[1], 1),
            &[f32(&xs), f32(&bias)],
            &f32(&gy),
        );
        let (y_ref, grads_ref) = grads_of(composed, &[xs, bias], &gy);
        assert_close("bias_add_at f32 y", &y, &y_ref, 1e-6, 1e-6);
        assert_close(
            "bias_add_at f32 bias grad",
            grads[1].as_ref().unwrap(),
            grads_ref[1].as_ref().unwrap(),
            1e-6,
            1e-6,
        );
    }
    assert_gradcheck(
        "bias_add_at",
        |t| bias_add_at(&t[0], &t[1], 1),
        &[uniform(&[2, 3, 4, 5], 14, 1.0), uniform(&[3], 15, 1.0)],
    );
    // Dimension 0 (no outer) and the last (the row path) agree with broadcast_add too.
    let xs = uniform(&[4, 3, 5], 16, 1.0);
    let first = uniform(&[4], 17, 1.0);
    assert_eq!(
        bias_add_at(&xs, &first, 0)
            .unwrap()
            .to_vec3::<f64>()
            .unwrap(),
        xs.broadcast_add(&first.reshape((4, 1, 1)).unwrap())
            .unwrap()
            .to_vec3::<f64>()
            .unwrap()
    );
    assert_error_mentions(
        bias_add_at(&xs, &uniform(&[4], 18, 1.0), 1),
        &["bias_add", "[4]", "dimension 1", "[4, 3, 5]"],
    );
    assert_error_mentions(
        bias_add_at(&xs, &uniform(&[5], 19, 1.0), 3),
        &["bias_add", "dimension 3"],
    );
}

/// The bias gradient of `op` on 1, 3 and 8 threads: the same bytes.
fn assert_bias_grad_thread_independent<F>(op: F, xs: &Tensor, bias: &Tensor)
where
    F: Fn(&[Tensor]) -> candle_core::Result<Tensor> + Sync,
{
    let grad_of_bias = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let (_, grads) = grads_of(&op, &[xs.clone(), bias.clone()], xs);
            grads[1].clone().unwrap().to_vec1::<f32>().unwrap()
        })
    };
    let one = grad_of_bias(1);
    assert_eq!(one, grad_of_bias(3));
    assert_eq!(one, grad_of_bias(8));
}

#[test]
fn bias_add_sums_the_same_on_any_thread_count() {
    // Rows of a [..., C] input, and runs of a convolution's [N, C, H, W] output.
    assert_bias_grad_thread_independent(
        |t| bias_add(&t[0], &t[1]),
        &f32(&uniform(&[4096, 32], 8, 3.0)),
        &f32(&uniform(&[32], 9, 1.0)),
    );
    assert_bias_grad_thread_independent(
        |t| bias_add_at(&t[0], &t[1], 1),
        &f32(&uniform(&[16, 8, 24, 24], 20, 3.0)),
        &f32(&uniform(&[8], 21, 1.0)),
    );
}

/// A map that reverses 5 source rows into 7 output rows with two zero rows.
fn sample_map() -> RowMap {
    RowMap::new(
        &[Some(4), None, Some(3), Some(2), None, Some(1), Some(0)],
        5,
    )
    .unwrap()
}

#[test]
fn gather_rows_equals_index_select_and_passes_gradcheck() {
    let map = sample_map();
    let xs = f32(&uniform(&[3, 5, 6], 10, 2.0));
    let gy = f32(&uniform(&[3, 7, 6], 11, 1.0));
    assert_same(
        "gather_rows",
        |t| gather_rows(&t[0], &map),
        |t| gather_rows_composed(&t[0], &map),
        std::slice::from_ref(&xs),
        &gy,
    );
    let ys = gather_rows(&xs, &map).unwrap();
    assert_eq!(ys.dims(), [3, 7, 6]);
    let rows = ys.to_vec3::<f32>().unwrap();
    let src = xs.to_vec3::<f32>().unwrap();
    for (b, item) in rows.iter().enumerate() {
        for (t, row) in item.iter().enumerate() {
            match map.source(t) {
                Some(s) => assert_eq!(row, &src[b][s], "item {b} row {t}"),
                None => assert!(row.iter().all(|&v| v == 0.0), "item {b} row {t}"),
            }
        }
    }
    // Back and forth: the inverse map restores the input.
    let back = gather_rows(&ys, &map.inverse()).unwrap();
    assert_eq!(back.to_vec3::<f32>().unwrap(), src);
    assert_gradcheck(
        "gather_rows",
        |t| gather_rows(&t[0], &map),
        &[uniform(&[2, 5, 3], 12, 1.0)],
    );
}

#[test]
fn row_maps_reject_repeats_and_out_of_range_sources() {
    assert_error_mentions(
        RowMap::new(&[Some(0), Some(0)], 2),
        &["source row 0", "output rows 0 and 1"],
    );
    assert_error_mentions(RowMap::new(&[Some(3)], 2), &["source 3", "2 sources"]);
    assert_error_mentions(
        gather_rows(&uniform(&[1, 4, 2], 13, 1.0), &sample_map()),
        &["gather_rows", "4 rows", "takes 5"],
    );
}

#[test]
fn fused_softmax_and_layer_norm_equal_their_compositions() {
    // Rows of 16 (attention windows of 4×4) and of 48 features.
    let scores = f32(&uniform(&[40, 3, 16, 16], 14, 4.0));
    let gy = f32(&uniform(&[40, 3, 16, 16], 15, 1.0));
    assert_same(
        "softmax",
        |t| softmax(&t[0], 3),
        |t| softmax_composed(&t[0], 3),
        &[scores],
        &gy,
    );
    let xs = f32(&uniform(&[2, 700, 48], 16, 3.0));
    let weight = f32(&uniform(&[48], 17, 1.0));
    let bias = f32(&uniform(&[48], 18, 1.0));
    let gy = f32(&uniform(&[2, 700, 48], 19, 1.0));
    assert_same(
        "layer_norm",
        |t| layer_norm(&t[0], Some(&t[1]), Some(&t[2]), 1e-5),
        |t| layer_norm_composed(&t[0], Some(&t[1]), Some(&t[2]), 1e-5),
        &[xs, weight, bias],
        &gy,
    );
}

#[test]
fn linear_equals_its_composition_and_passes_gradcheck() {
    let xs = f32(&uniform(&[4, 150, 24], 20, 2.0));
    let weight = f32(&uniform(&[40, 24], 21, 0.5));
    let bias = f32(&uniform(&[40], 22, 1.0));
    let gy = f32(&uniform(&[4, 150, 40], 23, 1.0));
    assert_same(
        "linear",
        |t| linear(&t[0], &t[1], Some(&t[2])),
        |t| linear_composed(&t[0], &t[1], Some(&t[2])),
        &[xs.clone(), weight.clone(), bias],
        &gy,
    );
    assert_same(
        "linear without bias",
        |t| linear(&t[0], &t[1], None),
        |t| linear_composed(&t[0], &t[1], None),
        &[xs, weight],
        &gy,
    );
    assert_gradcheck(
        "linear",
        |t| linear(&t[0], &t[1], Some(&t[2])),
        &[
            uniform(&[2, 3, 4], 24, 1.0),
            uniform(&[5, 4], 25, 1.0),
            uniform(&[5], 26, 1.0),
        ],
    );
    assert_gradcheck(
        "linear without bias",
        |t| linear(&t[0], &t[1], None),
        &[uniform(&[3, 4], 27, 1.0), uniform(&[2, 4], 28, 1.0)],
    );
    assert_error_mentions(
        linear(&uniform(&[3, 4], 29, 1.0), &uniform(&[2, 5], 30, 1.0), None),
        &["linear", "[3, 4]", "[2, 5]"],
    );
}

/// A shifted-window style mask `[nW, N, N]`: 0 within a region, −100 across.
fn region_mask(masks: usize, tokens: usize) -> Tensor {
    let values: Vec<f64> = (0..masks * tokens * tokens)
        .map(|i| {
            let (w, q, k) = (i / (tokens * tokens), i / tokens % tokens, i % tokens);
            let region = |t: usize| if w == 0 { 0 } else { (t * (w + 1)) / tokens };
            if region(q) == region(k) { 0.0 } else { -100.0 }
        })
        .collect();
    Tensor::from_vec(values, (masks, tokens, tokens), &candle_core::Device::Cpu).unwrap()
}

#[test]
fn window_attention_equals_its_composition_and_passes_gradcheck() {
    // 12 windows of 16 tokens, 3 heads of 8 channels; masks for 4 windows per image.
    let (windows, tokens, heads, head_dim) = (12, 16, 3, 8);
    let qkv = f32(&uniform(&[windows, tokens, 3 * heads * head_dim], 31, 2.0));
    let bias = f32(&uniform(&[heads, tokens, tokens], 32, 1.0));
    let gy = f32(&uniform(&[windows, tokens, heads * head_dim], 33, 1.0));
    let mask = f32(&region_mask(4, tokens));
    let scale = (head_dim as f64).powf(-0.5);
    for mask in [None, Some(&mask)] {
        assert_same(
            &format!("window_attention (mask: {})", mask.is_some()),
            |t| window_attention(&t[0], &t[1], mask, heads, scale),
            |t| window_attention_composed(&t[0], &t[1], mask, heads, scale),
            &[qkv.clone(), bias.clone()],
            &gy,
        );
    }
    let mask = region_mask(2, 4);
    assert_gradcheck(
        "window_attention",
        |t| window_attention(&t[0], &t[1], Some(&mask), 2, 0.7),
        &[uniform(&[4, 4, 12], 34, 1.0), uniform(&[2, 4, 4], 35, 1.0)],
    );
    assert_error_mentions(
        window_attention(&qkv, &bias, Some(&region_mask(5, tokens)), heads, scale),
        &["window_attention", "mask [5, 16, 16]", "dividing 12"],
    );
    assert_error_mentions(
        window_attention(&qkv, &bias, None, 5, scale),
        &["window_attention", "5 heads"],
    );
}

#[test]
fn scale_at_equals_broadcast_mul_and_passes_gradcheck() {
    // A BatchNorm's [N, C, H, W] input (several rayon tasks, a partial last one, a run length
    // that does not divide the task size) and the last dimension (runs of one).
    for (shape, dim) in [
        (vec![6usize, 7, 40, 50], 1usize),
        (vec![3, 5, 7, 9], 1),
        (vec![4, 3, 5], 2),
    ] {
        let xs = uniform(&shape, 21, 2.0);
        let scale = uniform(&shape[dim..dim + 1], 22, 1.0);
        let gy = uniform(&shape, 23, 1.0);
        let mut broadcast = vec![1usize; shape.len()];
        broadcast[dim] = shape[dim];
        let composed = |t: &[Tensor]| t[0].broadcast_mul(&t[1].reshape(broadcast.clone())?);
        assert_same(
            "scale_at",
            |t| scale_at(&t[0], &t[1], dim),
            composed,
            &[xs, scale],
            &gy,
        );
    }
    assert_gradcheck(
        "scale_at",
        |t| scale_at(&t[0], &t[1], 1),
        &[uniform(&[2, 3, 4, 5], 24, 1.0), uniform(&[3], 25, 1.0)],
    );
    let xs = uniform(&[4, 3, 5], 26, 1.0);
    assert_error_mentions(
        scale_at(&xs, &uniform(&[4], 27, 1.0), 1),
        &["scale_at", "[4]", "dimension 1", "[4, 3, 5]"],
    );
}

#[test]
fn scale_at_sums_the_same_on_any_thread_count() {
    assert_bias_grad_thread_independent(
        |t| scale_at(&t[0], &t[1], 1),
        &f32(&uniform(&[6, 7, 40, 50], 28, 2.0)),
        &f32(&uniform(&[7], 29, 1.0)),
    );
}
