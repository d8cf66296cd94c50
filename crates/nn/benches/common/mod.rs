//! What the convolution benches share: the three shapes of issue 6 (batch 8).

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
