//! RoIAlign and multi-level RoI pooling against torchvision (fixtures from
//! `tests/golden/train/make_golden.py`), plus gradient checks and error cases.

mod train_common;

use candle_core::{DType, Device, Tensor, Var};
use rtb_nn::gradcheck::{GradCheck, check_gradients};
use rtb_nn::roi_align::{
    LevelMapper, MultiScaleRoiAlign, RoiAlignConfig, roi_align, roi_align_with_candle_ops,
};
use train_common::{assert_close, fixture, get};

const CASES: [&str; 4] = [
    "aligned_adaptive",
    "legacy_sampling2",
    "aligned_sampling3",
    "legacy_adaptive",
];

fn config_from(t: &Tensor) -> RoiAlignConfig {
    let v: Vec<f64> = t.to_vec1().unwrap();
    RoiAlignConfig::new(v[0] as usize, v[1] as usize)
        .with_spatial_scale(v[2])
        .with_sampling_ratio(v[3] as i32)
        .with_aligned(v[4] != 0.0)
}

type RoiFn = fn(&Tensor, &Tensor, &RoiAlignConfig) -> candle_core::Result<Tensor>;

fn check_against_torchvision(pool: RoiFn, label: &str) {
    let fx = fixture("roi_align.safetensors");
    for (dtype, (rtol, atol)) in [("f32", (1e-5, 1e-5)), ("f64", (1e-11, 1e-12))] {
        let features = get(&fx, &format!("{dtype}.features"));
        let rois = get(&fx, &format!("{dtype}.rois"));
        for case in CASES {
            let key = format!("{dtype}.{case}");
            let cfg = config_from(get(&fx, &format!("{key}.config")));
            let var = Var::from_tensor(features).unwrap();
            let pooled = pool(var.as_tensor(), rois, &cfg).unwrap();
            assert_close(
                &format!("{label} {key} output"),
                &pooled,
                get(&fx, &format!("{key}.output")),
                rtol,
                atol,
            );
            let grad_output = get(&fx, &format!("{key}.grad_output"));
            let grads = (pooled * grad_output)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            let grad = grads.get(var.as_tensor()).expect("no gradient to features");
            assert_close(
                &format!("{label} {key} grad"),
                grad,
                get(&fx, &format!("{key}.grad_features")),
                rtol,
                atol,
            );
        }
    }
}

#[test]
fn roi_align_matches_torchvision() {
    check_against_torchvision(roi_align, "custom op");
}

#[test]
fn roi_align_with_candle_ops_matches_torchvision() {
    check_against_torchvision(roi_align_with_candle_ops, "candle ops");
}

fn gradcheck_rois() -> Tensor {
    Tensor::new(
        &[
            [0f64, 0.3, 0.7, 6.2, 5.1],
            [1., -1.5, 2.0, 3.5, 9.0],
            [0., 4.2, 3.3, 4.4, 3.6],
            [1., 5.0, 5.0, 12.0, 11.0],
        ],
        &Device::Cpu,
    )
    .unwrap()
}

#[test]
fn roi_align_gradcheck() {
    let features = Tensor::randn(0f64, 1.0, (2, 2, 6, 7), &Device::Cpu).unwrap();
    let rois = gradcheck_rois();
    for (aligned, sampling) in [(true, 0), (false, 2)] {
        let cfg = RoiAlignConfig::new(3, 2)
            .with_spatial_scale(0.7)
            .with_sampling_ratio(sampling)
            .with_aligned(aligned);
        for pool in [roi_align as RoiFn, roi_align_with_candle_ops as RoiFn] {
            let report = check_gradients(
                |xs| pool(&xs[0], &rois, &cfg),
                std::slice::from_ref(&features),
                &GradCheck::default(),
            )
            .unwrap();
            assert!(
                report.passed(),
                "aligned {aligned} sampling {sampling}: {report}"
            );
            assert!(report.inputs[0].has_gradient);
        }
    }
}

#[test]
fn multi_scale_roi_align_matches_torchvision_and_mmdet() {
    let fx = fixture("multiscale_roi_align.safetensors");
    let rois = get(&fx, "rois");
    let names = ["p2", "p3", "p4", "p5"];
    for (flavour, pooler) in [
        (
            "torchvision",
            MultiScaleRoiAlign {
                roi_align: RoiAlignConfig::new(7, 7).with_sampling_ratio(2),
                strides: vec![4.0, 8.0, 16.0, 32.0],
                mapper: LevelMapper::Torchvision {
                    canonical_level: 4.0,
                    canonical_scale: 224.0,
                },
            },
        ),
        ("mmdet", MultiScaleRoiAlign::mmdet_box()),
    ] {
        let levels = pooler.levels(rois).unwrap();
        let want_key = if flavour == "torchvision" {
            "torchvision.levels_input_order"
        } else {
            "mmdet.levels"
        };
        let want: Vec<i64> = get(&fx, want_key)
            .to_dtype(DType::I64)
            .unwrap()
            .to_vec1()
            .unwrap();
        let got: Vec<i64> = levels.iter().map(|&l| l as i64).collect();
        assert_eq!(got, want, "{flavour} levels");
        let distinct: std::collections::BTreeSet<_> = levels.iter().collect();
        assert_eq!(
            distinct.len(),
            4,
            "{flavour}: the fixture should use every level"
        );

        let vars: Vec<Var> = names
            .iter()
            .map(|n| Var::from_tensor(get(&fx, &format!("features.{n}"))).unwrap())
            .collect();
        let features: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
        let pooled = pooler.forward(&features, rois).unwrap();
        assert_close(
            &format!("{flavour} output"),
            &pooled,
            get(&fx, &format!("{flavour}.output")),
            1e-5,
            1e-5,
        );
        let grads = (pooled * get(&fx, &format!("{flavour}.grad_output")))
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        for (n, var) in names.iter().zip(&vars) {
            assert_close(
                &format!("{flavour} grad {n}"),
                grads.get(var.as_tensor()).expect("gradient"),
                get(&fx, &format!("{flavour}.grad.{n}")),
                1e-5,
                1e-5,
            );
        }
    }
}

#[test]
fn roi_align_with_no_rois_gives_an_empty_batch() {
    let features = Tensor::zeros((1, 3, 4, 4), DType::F32, &Device::Cpu).unwrap();
    let rois = Tensor::zeros((0, 5), DType::F32, &Device::Cpu).unwrap();
    let cfg = RoiAlignConfig::new(2, 2);
    assert_eq!(
        roi_align(&features, &rois, &cfg).unwrap().dims(),
        &[0, 3, 2, 2]
    );
    assert_eq!(
        roi_align_with_candle_ops(&features, &rois, &cfg)
            .unwrap()
            .dims(),
        &[0, 3, 2, 2]
    );
    let pooled = MultiScaleRoiAlign::mmdet_box()
        .forward(
            &[
                features.clone(),
                features.clone(),
                features.clone(),
                features,
            ],
            &rois,
        )
        .unwrap();
    assert_eq!(pooled.dims(), &[0, 3, 7, 7]);
}

#[test]
fn roi_align_errors_name_the_shapes() {
    let dev = Device::Cpu;
    let cfg = RoiAlignConfig::new(2, 2);
    let features = Tensor::zeros((1, 3, 4, 4), DType::F32, &dev).unwrap();
    let rois4 = Tensor::zeros((2, 4), DType::F32, &dev).unwrap();
    let err = roi_align(&features, &rois4, &cfg).unwrap_err().to_string();
    assert!(err.contains("rois") && err.contains("[2, 4]"), "{err}");
    let flat = Tensor::zeros((3, 4, 4), DType::F32, &dev).unwrap();
    let rois = Tensor::new(&[[0f32, 0., 0., 1., 1.]], &dev).unwrap();
    let err = roi_align(&flat, &rois, &cfg).unwrap_err().to_string();
    assert!(
        err.contains("features") && err.contains("[3, 4, 4]"),
        "{err}"
    );
    let wrong_batch = Tensor::new(&[[1f32, 0., 0., 1., 1.]], &dev).unwrap();
    for pool in [roi_align as RoiFn, roi_align_with_candle_ops as RoiFn] {
        let err = pool(&features, &wrong_batch, &cfg).unwrap_err().to_string();
        assert!(err.contains("batch index 1"), "{err}");
    }
    let err = roi_align(&features, &rois, &RoiAlignConfig::new(0, 2))
        .unwrap_err()
        .to_string();
    assert!(err.contains("output_size"), "{err}");
    let ints = Tensor::zeros((1, 3, 4, 4), DType::U32, &dev).unwrap();
    let err = roi_align(&ints, &rois, &cfg).unwrap_err().to_string();
    assert!(err.contains("dtype"), "{err}");
    let err = MultiScaleRoiAlign::mmdet_box()
        .forward(&[features.clone(), features], &rois)
        .unwrap_err()
        .to_string();
    assert!(err.contains("2 feature maps for 4 strides"), "{err}");
}
