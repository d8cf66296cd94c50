//! `rtb-nn`: what candle 0.11 lacks for training conv nets and transformers.
//!
//! Every op here has a forward and a backward that were checked against finite differences
//! ([`gradcheck`]) and against PyTorch on golden fixtures. Models and the training engine use
//! these instead of the candle ops that silently drop gradients (see `ARCHITECTURE.md`).
//!
//! The modules:
//! - [`conv`]: conv2d (stride, padding, dilation, groups) whose backward is im2col/col2im +
//!   GEMM, and the `Conv2d` module;
//! - [`deconv`]: transposed convolution with kernel = stride (the mask head's 2×2 upsampler)
//!   as three GEMMs, and the `ConvTranspose2d` module;
//! - [`ops`]: bilinear and nearest resize, max and adaptive-average pooling, layer norm (last
//!   dimension and channels-first), a BatchNorm2d that trains, exact GELU, softmax, DropPath;
//! - [`roi_align`], [`nms`], [`boxes`]: RoIAlign with backward and the FPN multi-level pooler,
//!   batched NMS, box IoU and the mmdet delta coder;
//! - [`loss`]: cross-entropy with ignore index on `[N, C, …]`, stable BCE-with-logits, L1 and
//!   smooth-L1;
//! - [`optim`], [`schedule`], [`clip`]: SGD and AdamW with parameter groups and saveable state,
//!   LR schedules as pure functions of the iteration, global-norm gradient clipping;
//! - [`gradcheck`]: the finite-difference checker every test uses;
//! - [`cpu`]: how a program runs these ops on the CPU (one rayon pool, no second candle pool);
//! - [`autocast`]: mixed precision (f32 weights, half-precision activations).
//!
//! Each op has a CPU fast path with its own backward and a composition of candle ops (with
//! correct gradients) that runs on any device, CUDA included.
//!
//! This crate knows no model, dataset or file format.
//!
//! ```
//! use candle_core::{Device, Tensor};
//! use rtb_nn::ops::resize::resize_bilinear;
//! let xs = Tensor::arange(0f32, 16.0, &Device::Cpu).unwrap().reshape((1, 1, 4, 4)).unwrap();
//! let ys = resize_bilinear(&xs, (8, 8), false).unwrap();
//! assert_eq!(ys.dims(), &[1, 1, 8, 8]);
//! ```
#![deny(missing_docs)]

pub mod autocast;
pub mod boxes;
pub mod clip;
pub mod conv;
pub mod cpu;
pub mod cuda_paths;
pub mod deconv;
pub mod error;
pub mod gradcheck;
pub mod loss;
pub mod nms;
pub mod ops;
pub mod optim;
mod real;
pub mod roi_align;
pub mod schedule;
