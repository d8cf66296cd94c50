//! What the convolution benches share: the three shapes of issue 6 (batch 8), and more
//! ResNet-50 shapes that the backward bench runs when asked for them by name.

/// One convolution: NCHW input `[batch, in_channels, size, size]`, a square kernel, stride 1,
/// padding `kernel / 2`.
pub struct ConvShape {
    pub name: &'static str,
    pub batch: usize,
    pub in_channels: usize,
    pub out_channels: usize,
    pub size: usize,
    pub kernel: usize,
}

pub const CONV_SHAPES: [ConvShape; 3] = [
    ConvShape {
        name: "3x3_64ch_56",
        batch: 8,
        in_channels: 64,
        out_channels: 64,
        size: 56,
        kernel: 3,
    },
    ConvShape {
        name: "3x3_256ch_14",
        batch: 8,
        in_channels: 256,
        out_channels: 256,
        size: 14,
        kernel: 3,
    },
    ConvShape {
        name: "1x1_256ch_56",
        batch: 8,
        in_channels: 256,
        out_channels: 256,
        size: 56,
        kernel: 1,
    },
];

/// Further ResNet-50 convolutions (batch 8), used to check choices that depend on the shape
/// (the weight gradient's product order): `RTB_CONV_SHAPES=3x3_128ch_28,...`.
#[allow(dead_code)] // Only the backward bench uses them.
pub const MORE_CONV_SHAPES: [ConvShape; 5] = [
    ConvShape {
        name: "3x3_128ch_28",
        batch: 8,
        in_channels: 128,
        out_channels: 128,
        size: 28,
        kernel: 3,
    },
    ConvShape {
        name: "3x3_512ch_7",
        batch: 8,
        in_channels: 512,
        out_channels: 512,
        size: 7,
        kernel: 3,
    },
    ConvShape {
        name: "1x1_64to256_56",
        batch: 8,
        in_channels: 64,
        out_channels: 256,
        size: 56,
        kernel: 1,
    },
    ConvShape {
        name: "1x1_256to64_56",
        batch: 8,
        in_channels: 256,
        out_channels: 64,
        size: 56,
        kernel: 1,
    },
    ConvShape {
        name: "1x1_1024to256_14",
        batch: 8,
        in_channels: 1024,
        out_channels: 256,
        size: 14,
        kernel: 1,
    },
];
