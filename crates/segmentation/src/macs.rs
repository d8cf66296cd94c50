//! Multiply-accumulates of UperNet's heads ([`UperNetConfig::head_macs`]), for the study's
//! cost estimate: the backbone's count is rtb-models' (`ArchConfig::forward_macs`), this is
//! what the decode and auxiliary heads add on top of it.
//!
//! Counted as rtb-models counts backbones: convolutions (`k² · C_in · C_out` per output
//! pixel) and the classifiers; BatchNorm, ReLU, pooling, dropout, the bilinear upsampling
//! and the loss are not. Feature level `i` of a `H × W` input is `⌈H / s_i⌉ × ⌈W / s_i⌉`
//! at the backbone's stride `s_i` (every stride-2 step of ResNet, Swin and ConvNeXt rounds
//! up).

use crate::upernet::UperNetConfig;

/// Forward multiply-accumulates of UperNet's two heads on one image.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UperNetMacs {
    /// The decode head (PPM, lateral and FPN convolutions, fused bottleneck, classifier).
    pub decode: f64,
    /// The auxiliary FCN head (0 without one).
    pub auxiliary: f64,
}

impl UperNetMacs {
    /// Both heads: a training step's forward and an inference pass alike (`UperNet::forward`
    /// runs the auxiliary head too and drops its logits).
    pub fn total(&self) -> f64 {
        self.decode + self.auxiliary
    }
}

/// MACs of a `k × k` convolution from `c_in` to `c_out` channels over `pixels` outputs.
fn conv(k: usize, c_in: usize, c_out: usize, pixels: usize) -> f64 {
    (k * k) as f64 * c_in as f64 * c_out as f64 * pixels as f64
}

impl UperNetConfig {
    /// The heads' multiply-accumulates on one `height × width` image whose backbone gives
    /// C2..C5 of `in_channels` at `strides` (`Backbone::out_channels` / `strides`).
    pub fn head_macs(
        &self,
        in_channels: &[usize; 4],
        strides: &[usize; 4],
        (height, width): (usize, usize),
    ) -> UperNetMacs {
        let pixels: Vec<usize> = strides
            .iter()
            .map(|&s| height.div_ceil(s.max(1)) * width.div_ceil(s.max(1)))
            .collect();
        let ch = self.channels;
        let top = in_channels[3];
        // PPM: a 1×1 ConvModule on each s × s pooled C5, then the 3×3 bottleneck over C5 and
        // the upsampled branches.
        let ppm: f64 = self
            .pool_scales
            .iter()
            .map(|&s| conv(1, top, ch, s * s))
            .sum();
        let bottleneck = conv(3, top + self.pool_scales.len() * ch, ch, pixels[3]);
        // Laterals (1×1) and FPN convolutions (3×3) on C2..C4.
        let fpn: f64 = (0..3)
            .map(|i| conv(1, in_channels[i], ch, pixels[i]) + conv(3, ch, ch, pixels[i]))
            .sum();
        // The fused bottleneck over the four levels upsampled to C2, then the classifier.
        let fused = conv(3, 4 * ch, ch, pixels[0]) + conv(1, ch, self.num_classes, pixels[0]);
        let auxiliary = self.auxiliary.as_ref().map_or(0.0, |aux| {
            let level = aux.in_index.min(3);
            let (c_in, px) = (in_channels[level], pixels[level]);
            let convs: f64 = (0..aux.num_convs)
                .map(|i| {
                    conv(
                        3,
                        if i == 0 { c_in } else { aux.channels },
                        aux.channels,
                        px,
                    )
                })
                .sum();
            let cat = if aux.concat_input {
                conv(3, c_in + aux.channels, aux.channels, px)
            } else {
                0.0
            };
            convs + cat + conv(1, aux.channels, self.num_classes, px)
        });
        UperNetMacs {
            decode: ppm + bottleneck + fpn + fused,
            auxiliary,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tiny config (16 channels, pools 1, 2, 3, 6, 5 classes, auxiliary of 8 on C4) over
    /// C2..C5 of 8, 16, 32, 64 channels at strides 4..32 on a 64 × 64 image, counted by
    /// hand: levels of 16², 8², 4², 2² pixels.
    #[test]
    fn tiny_head_matches_a_hand_count() {
        let macs = UperNetConfig::tiny().head_macs(&[8, 16, 32, 64], &[4, 8, 16, 32], (64, 64));
        let ppm = 64 * 16 * (1 + 4 + 9 + 36);
        let bottleneck = 9 * (64 + 4 * 16) * 16 * 4;
        let laterals = 8 * 16 * 256 + 16 * 16 * 64 + 32 * 16 * 16;
        let fpn_convs = 9 * 16 * 16 * (256 + 64 + 16);
        let fused = 9 * 64 * 16 * 256;
        let classifier = 16 * 5 * 256;
        let decode = ppm + bottleneck + laterals + fpn_convs + fused + classifier;
        let auxiliary = 9 * 32 * 8 * 16 + 8 * 5 * 16;
        assert_eq!(macs.decode, decode as f64);
        assert_eq!(macs.auxiliary, auxiliary as f64);
        assert_eq!(macs.total(), (decode + auxiliary) as f64);
    }

    /// Odd sizes round each level up (a 65-px side is 17 at stride 4), and a head without
    /// the auxiliary branch counts none.
    #[test]
    fn levels_round_up_and_no_auxiliary_counts_zero() {
        let mut cfg = UperNetConfig::tiny();
        cfg.auxiliary = None;
        let even = cfg.head_macs(&[8, 16, 32, 64], &[4, 8, 16, 32], (68, 68));
        let odd = cfg.head_macs(&[8, 16, 32, 64], &[4, 8, 16, 32], (65, 65));
        assert_eq!(even, odd);
        assert_eq!(odd.auxiliary, 0.0);
    }

    /// A formula check against a published count: Swin's paper (Liu et al. 2021, Table 3)
    /// gives UperNet Swin-T 945 GFLOPs (fvcore's multiply-accumulates, mmseg's
    /// `get_flops.py`, which runs the decode head only) at 512 × 2048. Ours: the decode head
    /// here plus rtb-models' count of Swin-T, within 2 %.
    #[test]
    fn upernet_swin_t_matches_the_published_count() {
        let arch = rtb_models::ArchConfig::from_name("swin_t").unwrap();
        let backbone = arch.forward_macs(512, 2048).unwrap();
        let heads =
            UperNetConfig::ade20k().head_macs(&[96, 192, 384, 768], &[4, 8, 16, 32], (512, 2048));
        let total = (backbone + heads.decode) / 1e9;
        assert!((total / 945.0 - 1.0).abs() < 0.02, "{total} GMACs");
    }
}
