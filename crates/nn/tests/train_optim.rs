//! Optimizers, LR schedules and gradient clipping against torch.optim,
//! torch.optim.lr_scheduler, mmcv's LrUpdaterHook formulas and clip_grad_norm_ (fixtures
//! from `tests/golden/train/make_golden.py`).

mod train_common;

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor, Var};
use rtb_nn::clip::clip_grad_norm;
use rtb_nn::optim::{
    AdamW, AdamWConfig, Optimizer, ParamGroup, ParamGroupsBuilder, Sgd, SgdConfig, load_state,
    save_state,
};
use rtb_nn::schedule::{Decay, LrSchedule, Warmup};
use train_common::{assert_close, fixture, get};

/// The fixture's least-squares problem: mean((x·wᵀ + b − y)²).
struct Problem {
    x: Tensor,
    y: Tensor,
    w0: Tensor,
    b0: Tensor,
    lrs: Vec<f64>,
}

impl Problem {
    fn load(fx: &HashMap<String, Tensor>) -> Self {
        Self {
            x: get(fx, "x").clone(),
            y: get(fx, "y").clone(),
            w0: get(fx, "w0").clone(),
            b0: get(fx, "b0").clone(),
            lrs: get(fx, "lrs").to_vec1().unwrap(),
        }
    }

    fn vars(&self) -> (Var, Var) {
        (
            Var::from_tensor(&self.w0).unwrap(),
            Var::from_tensor(&self.b0).unwrap(),
        )
    }

    fn loss(&self, w: &Var, b: &Var) -> Tensor {
        self.x
            .matmul(&w.as_tensor().t().unwrap())
            .unwrap()
            .broadcast_add(b.as_tensor())
            .unwrap()
            .sub(&self.y)
            .unwrap()
            .sqr()
            .unwrap()
            .mean_all()
            .unwrap()
    }

    /// Runs steps `range` with the fixture's per-step learning rates; returns parameters after
    /// each step.
    fn run(
        &self,
        opt: &mut dyn Optimizer,
        w: &Var,
        b: &Var,
        range: std::ops::Range<usize>,
    ) -> (Vec<Tensor>, Vec<Tensor>) {
        let (mut ws, mut bs) = (Vec::new(), Vec::new());
        for step in range {
            opt.set_learning_rate(self.lrs[step]);
            let grads = self.loss(w, b).backward().unwrap();
            opt.step(&grads).unwrap();
            ws.push(w.as_tensor().copy().unwrap());
            bs.push(b.as_tensor().copy().unwrap());
        }
        (ws, bs)
    }
}

fn compare_trajectory(fx: &HashMap<String, Tensor>, name: &str, ws: &[Tensor], bs: &[Tensor]) {
    let ws = Tensor::stack(ws, 0).unwrap();
    let bs = Tensor::stack(bs, 0).unwrap();
    assert_close(
        &format!("{name} w"),
        &ws,
        get(fx, &format!("{name}.w")),
        1e-10,
        1e-12,
    );
    assert_close(
        &format!("{name} b"),
        &bs,
        get(fx, &format!("{name}.b")),
        1e-10,
        1e-12,
    );
}

fn sgd_configs() -> Vec<(&'static str, SgdConfig)> {
    let base = SgdConfig::default();
    vec![
        (
            "sgd_momentum_wd",
            SgdConfig {
                momentum: 0.9,
                weight_decay: 1e-2,
                ..base
            },
        ),
        (
            "sgd_nesterov",
            SgdConfig {
                momentum: 0.9,
                nesterov: true,
                weight_decay: 1e-3,
                ..base
            },
        ),
        (
            "sgd_dampening",
            SgdConfig {
                momentum: 0.8,
                dampening: 0.3,
                ..base
            },
        ),
        ("sgd_plain", base),
    ]
}

#[test]
fn sgd_matches_torch_20_steps() {
    let fx = fixture("optim.safetensors");
    let problem = Problem::load(&fx);
    for (name, cfg) in sgd_configs() {
        let (w, b) = problem.vars();
        let group = ParamGroup::new(vec![("w".into(), w.clone()), ("b".into(), b.clone())]);
        let mut sgd = Sgd::new(vec![group], cfg).unwrap();
        let (ws, bs) = problem.run(&mut sgd, &w, &b, 0..20);
        compare_trajectory(&fx, name, &ws, &bs);
    }
}

fn adamw_groups(w: &Var, b: &Var) -> Vec<ParamGroup> {
    // mmcv-style: biases get no decay and (here) twice the learning rate.
    ParamGroupsBuilder::default()
        .custom_key("bias", 2.0, 0.0)
        .build([
            ("head.weight".to_string(), w.clone()),
            ("head.bias".to_string(), b.clone()),
        ])
}

#[test]
fn adamw_groups_match_torch_20_steps() {
    let fx = fixture("optim.safetensors");
    let problem = Problem::load(&fx);
    let (w, b) = problem.vars();
    let groups = adamw_groups(&w, &b);
    assert_eq!(groups.len(), 2);
    let cfg = AdamWConfig {
        weight_decay: 0.05,
        ..AdamWConfig::default()
    };
    let mut adamw = AdamW::new(groups, cfg).unwrap();
    let (ws, bs) = problem.run(&mut adamw, &w, &b, 0..20);
    compare_trajectory(&fx, "adamw_groups", &ws, &bs);
}

fn temp_path(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("rtb-nn-{}-{name}.safetensors", std::process::id()))
}

#[test]
fn optimizer_state_save_and_load_resumes_bit_identically() {
    let fx = fixture("optim.safetensors");
    let problem = Problem::load(&fx);
    type Make = fn(&Var, &Var) -> Box<dyn Optimizer>;
    let makers: [(&str, Make); 2] = [
        ("sgd", |w, b| {
            let cfg = SgdConfig {
                momentum: 0.9,
                nesterov: true,
                weight_decay: 1e-3,
                ..SgdConfig::default()
            };
            let group = ParamGroup::new(vec![("w".into(), w.clone()), ("b".into(), b.clone())]);
            Box::new(Sgd::new(vec![group], cfg).unwrap())
        }),
        ("adamw", |w, b| {
            let cfg = AdamWConfig {
                weight_decay: 0.05,
                ..AdamWConfig::default()
            };
            Box::new(AdamW::new(adamw_groups(w, b), cfg).unwrap())
        }),
    ];
    for (name, make) in makers {
        let (w, b) = problem.vars();
        let mut straight = make(&w, &b);
        let (ws, bs) = problem.run(straight.as_mut(), &w, &b, 0..20);

        let (w1, b1) = problem.vars();
        let mut first = make(&w1, &b1);
        problem.run(first.as_mut(), &w1, &b1, 0..10);
        let path = temp_path(name);
        save_state(first.as_ref(), &path).unwrap();
        // A fresh process: parameters from the checkpoint, state from the file.
        let w2 = Var::from_tensor(&w1.as_tensor().copy().unwrap()).unwrap();
        let b2 = Var::from_tensor(&b1.as_tensor().copy().unwrap()).unwrap();
        let mut resumed = make(&w2, &b2);
        load_state(resumed.as_mut(), &path).unwrap();
        std::fs::remove_file(&path).unwrap();
        let (ws2, bs2) = problem.run(resumed.as_mut(), &w2, &b2, 10..20);
        for (step, (a, c)) in ws[10..].iter().zip(&ws2).enumerate() {
            let a: Vec<f64> = a.flatten_all().unwrap().to_vec1().unwrap();
            let c: Vec<f64> = c.flatten_all().unwrap().to_vec1().unwrap();
            assert_eq!(a, c, "{name}: w differs at resumed step {step}");
        }
        assert_eq!(
            bs[19].to_vec1::<f64>().unwrap(),
            bs2[9].to_vec1::<f64>().unwrap(),
            "{name}: b differs"
        );
    }
}

#[test]
fn optimizer_state_load_rejects_mismatches() {
    let w = Var::new(&[1f32, 2.], &Device::Cpu).unwrap();
    let mut sgd = Sgd::new(
        vec![ParamGroup::new(vec![("w".into(), w.clone())])],
        SgdConfig {
            momentum: 0.9,
            ..SgdConfig::default()
        },
    )
    .unwrap();
    let mut state = HashMap::new();
    state.insert(
        "w.momentum_buffer".to_string(),
        Tensor::zeros(3, DType::F32, &Device::Cpu).unwrap(),
    );
    let err = sgd.load_state_tensors(&state).unwrap_err().to_string();
    assert!(
        err.contains("w.momentum_buffer") && err.contains("[3]") && err.contains("[2]"),
        "{err}"
    );
    let mut state = HashMap::new();
    state.insert(
        "v.momentum_buffer".to_string(),
        Tensor::zeros(2, DType::F32, &Device::Cpu).unwrap(),
    );
    let err = sgd.load_state_tensors(&state).unwrap_err().to_string();
    assert!(err.contains("v.momentum_buffer"), "{err}");
    let mut adamw = AdamW::new(
        vec![ParamGroup::new(vec![("w".into(), w)])],
        AdamWConfig::default(),
    )
    .unwrap();
    let mut state = HashMap::new();
    state.insert(
        "w.exp_avg".to_string(),
        Tensor::zeros(2, DType::F32, &Device::Cpu).unwrap(),
    );
    let err = adamw.load_state_tensors(&state).unwrap_err().to_string();
    assert!(err.contains("saved together"), "{err}");
}

#[test]
fn optimizers_reject_bad_configs() {
    let w = Var::new(&[1f32], &Device::Cpu).unwrap();
    let group = || vec![ParamGroup::new(vec![("w".into(), w.clone())])];
    let err = Sgd::new(
        group(),
        SgdConfig {
            nesterov: true,
            ..SgdConfig::default()
        },
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("nesterov"), "{err}");
    let twice = vec![ParamGroup::new(vec![
        ("w".into(), w.clone()),
        ("w".into(), w.clone()),
    ])];
    let err = Sgd::new(twice, SgdConfig::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("\"w\" appears twice"), "{err}");
    let err = AdamW::new(
        group(),
        AdamWConfig {
            betas: (0.9, 1.0),
            ..AdamWConfig::default()
        },
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("betas"), "{err}");
}

#[test]
fn param_groups_follow_mmcv_paramwise_rules() {
    let names = [
        "backbone.patch_embed.proj.weight",
        "backbone.patch_embed.norm.weight",
        "backbone.absolute_pos_embed",
        "backbone.layers.0.blocks.0.attn.relative_position_bias_table",
        "backbone.layers.0.blocks.0.attn.qkv.bias",
        "backbone.layers.0.blocks.0.norm1.bias",
        "neck.lateral_convs.0.conv.weight",
        "roi_head.bbox_head.fc_cls.bias",
        "backbone.layer1.0.bn1.weight",
    ];
    let swin = ParamGroupsBuilder::mmdet_swin();
    let decays: Vec<f64> = names.iter().map(|n| swin.multipliers(n).1).collect();
    assert_eq!(decays, vec![1., 0., 0., 0., 1., 0., 1., 1., 1.]);
    let none = ParamGroupsBuilder::no_decay_for_norms_biases_and_position_tables();
    let decays: Vec<f64> = names.iter().map(|n| none.multipliers(n).1).collect();
    assert_eq!(decays, vec![1., 0., 0., 0., 0., 0., 1., 0., 0.]);
    // Longest key wins, as mmcv sorts custom keys.
    let builder = ParamGroupsBuilder::default()
        .custom_key("backbone", 0.1, 1.0)
        .custom_key("backbone.layers", 0.5, 1.0);
    assert_eq!(builder.multipliers("backbone.layers.0.x").0, 0.5);
    assert_eq!(builder.multipliers("backbone.stem.x").0, 0.1);
    let vars: Vec<(String, Var)> = names
        .iter()
        .map(|n| (n.to_string(), Var::new(&[0f32], &Device::Cpu).unwrap()))
        .collect();
    let groups = none.build(vars);
    assert_eq!(groups.len(), 2);
    assert_eq!(groups[0].params.len() + groups[1].params.len(), names.len());
    assert_eq!(groups[1].decay_mult, 0.0);
}

fn schedule_values(schedule: &LrSchedule, steps: usize, iters_per_epoch: usize) -> Tensor {
    let v: Vec<f64> = (0..steps)
        .map(|it| schedule.lr(it, it / iters_per_epoch))
        .collect();
    Tensor::new(v.as_slice(), &Device::Cpu).unwrap()
}

#[test]
fn lr_schedules_match_torch_and_mmcv_30_steps() {
    let fx = fixture("schedules.safetensors");
    let base = |decay, warmup| LrSchedule {
        base_lr: 0.1,
        decay,
        by_epoch: false,
        warmup,
    };
    let multistep = |m: Vec<usize>| Decay::MultiStep {
        milestones: m,
        gamma: 0.1,
    };
    let torch_cases = [
        (
            "torch.multistep",
            base(multistep(vec![8, 11, 20]), Warmup::None),
        ),
        (
            "torch.poly",
            base(
                Decay::Poly {
                    power: 0.9,
                    min_lr: 0.0,
                    max_progress: 25,
                },
                Warmup::None,
            ),
        ),
        (
            "torch.cosine",
            base(
                Decay::Cosine {
                    min_lr: 1e-3,
                    max_progress: 30,
                },
                Warmup::None,
            ),
        ),
        (
            "torch.warmup_multistep",
            base(
                multistep(vec![8, 11]),
                Warmup::Linear {
                    iters: 5,
                    ratio: 0.001,
                },
            ),
        ),
        (
            "torch.warmup_poly",
            base(
                Decay::Poly {
                    power: 1.0,
                    min_lr: 0.0,
                    max_progress: 25,
                },
                Warmup::Linear {
                    iters: 7,
                    ratio: 1e-6,
                },
            ),
        ),
    ];
    for (key, schedule) in torch_cases {
        assert_close(
            key,
            &schedule_values(&schedule, 30, 1),
            get(&fx, key),
            1e-9,
            1e-15,
        );
    }
    let decays = [
        ("mmcv.step_warmup", multistep(vec![8, 11])),
        (
            "mmcv.poly_min",
            Decay::Poly {
                power: 0.9,
                min_lr: 1e-4,
                max_progress: 30,
            },
        ),
        (
            "mmcv.cosine_min",
            Decay::Cosine {
                min_lr: 1e-3,
                max_progress: 30,
            },
        ),
    ];
    for (name, decay) in decays {
        for (kind, warmup) in [
            (
                "linear",
                Warmup::Linear {
                    iters: 6,
                    ratio: 0.01,
                },
            ),
            (
                "constant",
                Warmup::Constant {
                    iters: 6,
                    ratio: 0.01,
                },
            ),
            (
                "exp",
                Warmup::Exp {
                    iters: 6,
                    ratio: 0.01,
                },
            ),
        ] {
            let key = format!("{name}.{kind}");
            let schedule = base(decay.clone(), warmup);
            assert_close(
                &key,
                &schedule_values(&schedule, 30, 1),
                get(&fx, &key),
                1e-12,
                1e-15,
            );
        }
    }
    let by_epoch = LrSchedule {
        base_lr: 0.1,
        decay: Decay::MultiStep {
            milestones: vec![3, 5],
            gamma: 0.1,
        },
        by_epoch: true,
        warmup: Warmup::Linear {
            iters: 6,
            ratio: 0.001,
        },
    };
    assert_close(
        "mmcv.step_by_epoch",
        &schedule_values(&by_epoch, 30, 4),
        get(&fx, "mmcv.step_by_epoch"),
        1e-12,
        1e-15,
    );
}

#[test]
fn clip_grad_norm_matches_torch() {
    let fx = fixture("clip.safetensors");
    for dtype in ["f32", "f64"] {
        let (rtol, atol) = if dtype == "f32" {
            (1e-6, 1e-7)
        } else {
            (1e-14, 1e-15)
        };
        for max_norm in [1.0, 100.0] {
            let grads: Vec<Tensor> = (0..3)
                .map(|i| get(&fx, &format!("{dtype}.grad{i}")).clone())
                .collect();
            let vars: Vec<Var> = grads
                .iter()
                .map(|g| Var::zeros(g.shape(), g.dtype(), &Device::Cpu).unwrap())
                .collect();
            // A GradStore holding exactly these gradients: d/dv sum(v · g) = g.
            let mut loss = Tensor::zeros((), grads[0].dtype(), &Device::Cpu).unwrap();
            for (v, g) in vars.iter().zip(&grads) {
                loss = (loss + (v.as_tensor() * g).unwrap().sum_all().unwrap()).unwrap();
            }
            let mut store = loss.backward().unwrap();
            let total = clip_grad_norm(&mut store, &vars, max_norm).unwrap();
            let key = format!("{dtype}.max{}", max_norm as i64);
            let want: Vec<f64> = get(&fx, &format!("{key}.total")).to_vec1().unwrap();
            assert!(
                (total - want[0]).abs() <= atol + rtol * want[0],
                "{key}: {total} vs {}",
                want[0]
            );
            for (i, v) in vars.iter().enumerate() {
                assert_close(
                    &format!("{key} grad {i}"),
                    store.get(v.as_tensor()).unwrap(),
                    get(&fx, &format!("{key}.clipped{i}")),
                    rtol,
                    atol,
                );
            }
        }
    }
}
