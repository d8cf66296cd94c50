//! Rearranging the rows of `[B, S, C]` tensors by a fixed map, differentiably: what a chain of
//! rolls, pads, reshapes and permutes does to token grids (a Swin block's shifted window
//! partition and its reverse), as one op.
//!
//! Each candle node costs a zero-filled gradient buffer and an addition in the backward pass
//! (candle's `GradStore`), so the dozen views and copies of a shifted window partition cost a
//! small Swin more than its attention. A [`RowMap`] states the whole rearrangement once; on the
//! CPU [`gather_rows`] is one copy forward and one backward (the map is injective, so the
//! backward is the gather by the inverse map); elsewhere it is candle's `index_select` over
//! the rows with a zero row appended for the unmapped outputs.

use std::sync::Arc;

use candle_core::{DType, Result, Shape, Tensor, WithDType};
use rayon::prelude::*;

use crate::ops::{CpuKernel1, kernel_op, shape_error};

const NONE: u32 = u32::MAX;

/// An injective map from output rows to source rows, per batch item: output row `t` takes
/// source row `map[t]`, or zeros where `map[t]` is `None`; no source row is taken twice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowMap {
    forward: Arc<[u32]>,
    inverse: Arc<[u32]>,
}

impl RowMap {
    /// Checks that every source index is below `sources` and used at most once.
    pub fn new(map: &[Option<usize>], sources: usize) -> Result<Self> {
        const OP: &str = "RowMap";
        if sources >= NONE as usize || map.len() >= NONE as usize {
            return Err(shape_error(
                OP,
                format!("{sources} source rows or {} output rows", map.len()),
            ));
        }
        let mut inverse = vec![NONE; sources];
        let mut forward = Vec::with_capacity(map.len());
        for (row, source) in map.iter().enumerate() {
            match *source {
                None => forward.push(NONE),
                Some(s) if s >= sources => {
                    return Err(shape_error(
                        OP,
                        format!("output row {row} maps to source {s}, beyond {sources} sources"),
                    ));
                }
                Some(s) if inverse[s] != NONE => {
                    return Err(shape_error(
                        OP,
                        format!(
                            "source row {s} is taken by output rows {} and {row}",
                            inverse[s]
                        ),
                    ));
                }
                Some(s) => {
                    inverse[s] = row as u32;
                    forward.push(s as u32);
                }
            }
        }
        Ok(Self {
            forward: forward.into(),
            inverse: inverse.into(),
        })
    }

    /// Output rows per batch item.
    pub fn rows(&self) -> usize {
        self.forward.len()
    }

    /// Source rows per batch item.
    pub fn sources(&self) -> usize {
        self.inverse.len()
    }

    /// The map the other way round (source rows from output rows).
    pub fn inverse(&self) -> Self {
        Self {
            forward: self.inverse.clone(),
            inverse: self.forward.clone(),
        }
    }

    /// The source of output row `row`, if any.
    pub fn source(&self, row: usize) -> Option<usize> {
        self.forward
            .get(row)
            .and_then(|&s| (s != NONE).then_some(s as usize))
    }
}

/// `out[b, t, :] = xs[b, map[t], :]` (zeros where unmapped) for `xs` `[B, S, C]` with
/// `S = map.sources()`; the output is `[B, map.rows(), C]`.
pub fn gather_rows(xs: &Tensor, map: &RowMap) -> Result<Tensor> {
    const OP: &str = "gather_rows";
    let (batch, sources, channels) = match xs.dims() {
        &[b, s, c] => (b, s, c),
        dims => {
            return Err(shape_error(
                OP,
                format!("expected a [B, S, C] tensor, got shape {dims:?}"),
            ));
        }
    };
    if sources != map.sources() {
        return Err(shape_error(
            OP,
            format!(
                "input {:?} has {sources} rows, the map takes {}",
                xs.dims(),
                map.sources()
            ),
        ));
    }
    if xs.device().is_cpu() && matches!(xs.dtype(), DType::F32 | DType::F64) {
        return xs.contiguous()?.apply_op1(GatherRows {
            map: map.clone(),
            batch,
            channels,
        });
    }
    gather_rows_composed(xs, map)
}

/// [`gather_rows`] through `index_select` (any device; candle derives the backward).
pub fn gather_rows_composed(xs: &Tensor, map: &RowMap) -> Result<Tensor> {
    let (batch, sources, channels) = xs.dims3()?;
    // Source row `sources` is the appended zero row.
    let index: Vec<u32> = map
        .forward
        .iter()
        .map(|&s| if s == NONE { sources as u32 } else { s })
        .collect();
    let index = Tensor::from_vec(index, map.rows(), xs.device())?;
    let zero = Tensor::zeros((batch, 1, channels), xs.dtype(), xs.device())?;
    Tensor::cat(&[xs, &zero], 1)?.index_select(&index, 1)
}

#[derive(Debug, Clone)]
struct GatherRows {
    map: RowMap,
    batch: usize,
    channels: usize,
}

impl CpuKernel1 for GatherRows {
    const OP: &'static str = "gather_rows";
    fn run<T: WithDType>(&self, xs: &[T]) -> Result<(Vec<T>, Shape)> {
        let (c, rows, sources) = (self.channels, self.map.rows(), self.map.sources());
        let mut out = vec![T::from_f64(0.0); self.batch * rows * c];
        if c > 0 && rows > 0 {
            out.par_chunks_mut(rows * c)
                .zip(xs.par_chunks(sources * c))
                .for_each(|(dst, src)| {
                    for (dst, &s) in dst.chunks_exact_mut(c).zip(self.map.forward.iter()) {
                        if s != NONE {
                            let s = s as usize * c;
                            dst.copy_from_slice(&src[s..s + c]);
                        }
                    }
                });
        }
        Ok((out, Shape::from((self.batch, rows, c))))
    }
}

kernel_op!(1, GatherRows {
    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        // Injective: each source row's gradient is the one output row that took it.
        let op = GatherRows {
            map: self.map.inverse(),
            batch: self.batch,
            channels: self.channels,
        };
        Ok(Some(grad_res.contiguous()?.apply_op1_no_bwd(&op)?))
    }
});
