//! `rtb-image`: the image operations rtb's dense tasks share, equal to mmcv's with the cv2
//! backend (OpenCV 4.10), so the ADE20K and COCO pipelines resize the same bytes.
//!
//! - [`rescale_size`]: mmcv's keep-ratio rule (`imrescale`);
//! - [`resize_linear`]: cv2 `INTER_LINEAR` on 8-bit images in OpenCV's 11-bit fixed point;
//! - [`resize_nearest`]: cv2 `INTER_NEAREST` (label maps, masks).
//!
//! Byte equality with OpenCV is checked by rtb-ade's golden tests
//! (`crates/ade/tests/golden.rs`, fixtures from `crates/ade/tests/golden/make_golden.py`).
//!
//! Architecture invariant: layer 1; plain byte buffers in and out, no candle, no other rtb
//! crate.
//!
//! ```
//! use rtb_image::{rescale_size, resize_linear};
//!
//! // mmdet's (1333, 800) scale: a 640×480 image grows by 800 / 480.
//! let ((w, h), factor) = rescale_size(640, 480, (1333, 800))?;
//! assert_eq!((w, h), (1067, 800));
//! assert!((factor - 800.0 / 480.0).abs() < 1e-12);
//! // A constant image stays constant.
//! let out = resize_linear(&[9u8; 4 * 2 * 3], 4, 2, 3, 7, 5)?;
//! assert!(out.iter().all(|&v| v == 9));
//! # Ok::<(), rtb_image::ResizeError>(())
//! ```
#![deny(missing_docs)]

pub mod resize;

pub use resize::{ResizeError, rescale_size, resize_linear, resize_nearest};
