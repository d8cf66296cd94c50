//! `rtb-nn`: what candle 0.11 lacks for training conv nets and transformers.
//!
//! Every op here has a forward and a backward that were checked against finite differences
//! ([`gradcheck`]) and against PyTorch on golden fixtures. Models and the training engine use
//! these instead of the candle ops that silently drop gradients (see `ARCHITECTURE.md`).
//!
//! This crate knows no model, dataset or file format.
#![deny(missing_docs)]

pub mod boxes;
pub mod clip;
pub mod conv;
pub mod error;
pub mod gradcheck;
pub mod loss;
pub mod nms;
pub mod ops;
pub mod optim;
mod real;
pub mod roi_align;
pub mod schedule;
