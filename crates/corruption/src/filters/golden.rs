//! The primitives against the outputs of numpy 1.26 / scipy 1.13 / scikit-image 0.20 /
//! OpenCV 4.10 / ImageMagick 6.9.11 on small arrays (tests/golden/blur.py → filters.json).
//! Every comparison is exact: float outputs bit for bit.

use serde_json::Value;

use super::ndimage::{self, Axis, ClippedZoom, Mode};
use super::{motion, npmath};
use crate::array::Array3;

fn golden() -> Value {
    serde_json::from_str(include_str!("../../tests/golden/filters.json"))
        .expect("filters.json is valid JSON")
}

fn f64s(v: &Value) -> Vec<f64> {
    v.as_array()
        .expect("an array")
        .iter()
        .map(|x| x.as_f64().expect("a number"))
        .collect()
}

fn shape(v: &Value) -> [usize; 3] {
    let s: Vec<usize> = v
        .as_array()
        .expect("a shape")
        .iter()
        .map(|x| x.as_u64().expect("a size") as usize)
        .collect();
    match s.as_slice() {
        [h, w] => [*h, *w, 1],
        [h, w, c] => [*h, *w, *c],
        other => panic!("unexpected shape {other:?}"),
    }
}

fn array<T: Copy>(shape: [usize; 3], data: Vec<T>) -> Array3<T> {
    assert_eq!(shape[0] * shape[1] * shape[2], data.len());
    Array3 {
        height: shape[0],
        width: shape[1],
        channels: shape[2],
        data,
    }
}

fn mode(name: &str, cval: f64) -> Mode {
    match name {
        "reflect" => Mode::Reflect,
        "mirror" => Mode::Mirror,
        "nearest" => Mode::Nearest,
        "wrap" => Mode::Wrap,
        "constant" => Mode::Constant(cval),
        other => panic!("unknown mode {other}"),
    }
}

/// Asserts bit equality, reporting the first difference.
fn assert_same(label: &str, ours: &[f64], expected: &[f64]) {
    assert_eq!(ours.len(), expected.len(), "{label}: length");
    for (i, (a, b)) in ours.iter().zip(expected).enumerate() {
        assert!(
            a.to_bits() == b.to_bits() || (*a == 0.0 && *b == 0.0),
            "{label}: element {i}: ours {a:e}, reference {b:e}"
        );
    }
}

#[test]
fn exp_equals_numpy() {
    let g = golden();
    let xs = f64s(&g["exp"]["x"]);
    let ys = f64s(&g["exp"]["y"]);
    let ours: Vec<f64> = xs.iter().map(|&x| npmath::exp(x)).collect();
    assert_same("np.exp", &ours, &ys);
}

#[test]
fn gaussian_equals_scikit_image() {
    for case in golden()["gaussian"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let shape = shape(&case["shape"]);
        let sigma = f64s(&case["sigma"]);
        let m = mode(case["mode"].as_str().unwrap(), 0.0);
        let truncate = case["truncate"].as_f64().unwrap();
        let expected = f64s(&case["output"]);
        let ours: Vec<f64> = if case["dtype"] == "float32" {
            let input = array(
                shape,
                f64s(&case["input"]).iter().map(|&v| v as f32).collect(),
            );
            ndimage::gaussian_filter(&input, [sigma[0], sigma[1]], m, truncate)
                .data
                .iter()
                .map(|&v| v as f64)
                .collect()
        } else {
            let input = array(shape, f64s(&case["input"]));
            ndimage::gaussian_filter(&input, [sigma[0], sigma[1]], m, truncate).data
        };
        assert_same(name, &ours, &expected);
    }
}

#[test]
fn correlate1d_equals_scipy() {
    for case in golden()["correlate1d"].as_array().unwrap() {
        let weights = f64s(&case["weights"]);
        let axis = if case["axis"] == 0 {
            Axis::Rows
        } else {
            Axis::Cols
        };
        let m = mode(
            case["mode"].as_str().unwrap(),
            case["cval"].as_f64().unwrap(),
        );
        let input = array(shape(&case["shape"]), f64s(&case["input"]));
        let ours = ndimage::correlate1d(&input, &weights, axis, m);
        let label = format!("correlate1d {weights:?} {axis:?} {m:?}");
        assert_same(&label, &ours.data, &f64s(&case["output"]));
    }
}

#[test]
fn zoom_equals_scipy() {
    for case in golden()["zoom"].as_array().unwrap() {
        let zoom = case["zoom"].as_f64().unwrap();
        let out_shape = shape(&case["output_shape"]);
        let label = format!("zoom {} {zoom}", case["name"]);
        let (dims, ours) = if case["dtype"] == "float32" {
            let input = array(
                shape(&case["shape"]),
                f64s(&case["input"]).iter().map(|&v| v as f32).collect(),
            );
            let out = ndimage::zoom_order1(&input, zoom);
            (
                [out.height, out.width, out.channels],
                out.data.iter().map(|&v| v as f64).collect::<Vec<_>>(),
            )
        } else {
            let input = array(shape(&case["shape"]), f64s(&case["input"]));
            let out = ndimage::zoom_order1(&input, zoom);
            ([out.height, out.width, out.channels], out.data)
        };
        assert_eq!(dims, out_shape, "{label}: shape");
        assert_same(&label, &ours, &f64s(&case["output"]));
    }
}

#[test]
fn clipped_zoom_equals_both_references() {
    for case in golden()["clipped_zoom"].as_array().unwrap() {
        let zoom = case["zoom"].as_f64().unwrap();
        let variant = match case["variant"].as_str().unwrap() {
            "imagecorruptions" => ClippedZoom::ImageCorruptions,
            _ => ClippedZoom::ImageNetC,
        };
        let out_shape = shape(&case["output_shape"]);
        let label = format!("clipped_zoom {variant:?} {zoom} {}", case["dtype"]);
        let (dims, ours) = if case["dtype"] == "float32" {
            let input = array(
                shape(&case["shape"]),
                f64s(&case["input"]).iter().map(|&v| v as f32).collect(),
            );
            let out = ndimage::clipped_zoom(&input, zoom, variant);
            (
                [out.height, out.width, out.channels],
                out.data.iter().map(|&v| v as f64).collect::<Vec<_>>(),
            )
        } else {
            let input = array(shape(&case["shape"]), f64s(&case["input"]));
            let out = ndimage::clipped_zoom(&input, zoom, variant);
            ([out.height, out.width, out.channels], out.data)
        };
        assert_eq!(dims, out_shape, "{label}: shape");
        assert_same(&label, &ours, &f64s(&case["output"]));
    }
}

#[test]
fn map_coordinates_equals_scipy() {
    for case in golden()["map_coordinates"].as_array().unwrap() {
        let m = mode(case["mode"].as_str().unwrap(), 0.0);
        let input = array(
            shape(&case["shape"]),
            f64s(&case["input"]).iter().map(|&v| v as f32).collect(),
        );
        let (rows, cols) = (f64s(&case["rows"]), f64s(&case["cols"]));
        let out = ndimage::map_coordinates_order1_with(&input, m, |p| (rows[p], cols[p]));
        let ours: Vec<f64> = out.data.iter().map(|&v| v as f64).collect();
        assert_same(
            &format!("map_coordinates {m:?}"),
            &ours,
            &f64s(&case["output"]),
        );
    }
}

#[test]
fn motion_blur_equals_both_references() {
    for case in golden()["motion"].as_array().unwrap() {
        let radius = case["radius"].as_u64().unwrap() as usize;
        let sigma = case["sigma"].as_f64().unwrap();
        let angle = case["angle"].as_f64().unwrap();
        let shape = shape(&case["shape"]);
        let input = f64s(&case["input"]);
        let expected = f64s(&case["output"]);
        let label = format!(
            "motion {} r={radius} σ={sigma} a={angle} {shape:?}",
            case["variant"]
        );
        if case["variant"] == "numpy" {
            let out = motion::motion_blur_numpy(&array(shape, input), radius, sigma, angle);
            assert_same(&label, &out.data, &expected);
        } else {
            let x = array(shape, input.iter().map(|&v| v as u8).collect());
            let out = motion::motion_blur_imagemagick(&x, radius, sigma, angle);
            let ours: Vec<f64> = out.data.iter().map(|&v| v as f64).collect();
            assert_same(&label, &ours, &expected);
        }
    }
}

#[test]
fn disk_kernels_equal_opencv() {
    for case in golden()["disk"].as_array().unwrap() {
        let radius = case["radius"].as_f64().unwrap();
        let alias = case["alias_blur"].as_f64().unwrap();
        let (size, kernel) = super::opencv::disk_kernel(radius, alias);
        assert_eq!(
            size as u64,
            case["size"].as_u64().unwrap(),
            "disk({radius}, {alias})"
        );
        let ours: Vec<f64> = kernel.iter().map(|&v| v as f64).collect();
        assert_same(
            &format!("disk({radius}, {alias})"),
            &ours,
            &f64s(&case["kernel"]),
        );
    }
}

#[test]
fn gaussian_kernels_equal_opencv() {
    for case in golden()["gaussian_kernel"].as_array().unwrap() {
        let ksize = case["ksize"].as_u64().unwrap() as usize;
        let sigma = case["sigma"].as_f64().unwrap();
        let ours: Vec<f64> = super::opencv::gaussian_kernel_f32(ksize, sigma)
            .iter()
            .map(|&v| v as f64)
            .collect();
        assert_same(
            &format!("getGaussianKernel({ksize}, {sigma})"),
            &ours,
            &f64s(&case["kernel"]),
        );
    }
}

#[test]
fn filter2d_equals_opencv() {
    for case in golden()["filter2d"].as_array().unwrap() {
        let [h, w, _] = shape(&case["shape"]);
        let ksize = case["ksize"].as_u64().unwrap() as usize;
        let input = f64s(&case["input"]);
        let kernel = f64s(&case["kernel"]);
        let expected = f64s(&case["output"]);
        if case["dtype"] == "uint8" {
            let plane: Vec<u8> = input.iter().map(|&v| v as u8).collect();
            let k: Vec<i32> = kernel.iter().map(|&v| v as i32).collect();
            let out = super::opencv::filter2d_u8_integer_kernel(&plane, h, w, &k, ksize);
            let ours: Vec<f64> = out.iter().map(|&v| v as f64).collect();
            assert_same("filter2D CV_8U", &ours, &expected);
        } else {
            let out = super::opencv::filter2d_f64_small(&input, h, w, &kernel, ksize);
            assert_same("filter2D CV_64F", &out, &expected);
        }
    }
}

#[test]
fn affine_transform_and_warp_equal_opencv() {
    for case in golden()["affine"].as_array().unwrap() {
        let pts = |v: &Value| -> [[f32; 2]; 3] {
            let p = f64s(v);
            [
                [p[0] as f32, p[1] as f32],
                [p[2] as f32, p[3] as f32],
                [p[4] as f32, p[5] as f32],
            ]
        };
        let m = super::opencv::get_affine_transform(pts(&case["pts1"]), pts(&case["pts2"]))
            .expect("non-degenerate points");
        assert_same("getAffineTransform", &m, &f64s(&case["matrix"]));
        let input = array(
            shape(&case["shape"]),
            f64s(&case["input"]).iter().map(|&v| v as f32).collect(),
        );
        let out = super::opencv::warp_affine_linear_f32(&input, m);
        let ours: Vec<f64> = out.data.iter().map(|&v| v as f64).collect();
        assert_same("warpAffine", &ours, &f64s(&case["output"]));
    }
}
