//! Named tensors of the heads, with what each one is (so optimizers group them and the
//! engine skips buffers), and the mixing of a step seed into per-unit seeds.

use candle_core::Tensor;
use rtb_models::ParamKind;

/// One named tensor of a head: its full checkpoint key (transformers' names, e.g.
/// `decode_head.bottleneck.conv.weight`), the tensor (a `Var` when built from a `VarMap`) and
/// its kind.
#[derive(Debug, Clone)]
pub struct NamedTensor {
    /// Full key.
    pub name: String,
    /// The tensor.
    pub tensor: Tensor,
    /// What it is.
    pub kind: ParamKind,
}

pub(crate) fn push(
    out: &mut Vec<NamedTensor>,
    prefix: &str,
    name: &str,
    tensor: &Tensor,
    kind: ParamKind,
) {
    out.push(NamedTensor {
        name: if prefix.is_empty() {
            name.to_string()
        } else {
            format!("{prefix}.{name}")
        },
        tensor: tensor.clone(),
        kind,
    });
}

/// A well-mixed combination of a step seed and a unit index (splitmix64 finaliser), so the
/// decode head's and the auxiliary head's dropout draw independent masks.
pub(crate) fn mix_seed(seed: u64, unit: u64) -> u64 {
    let mut z = seed ^ unit.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
