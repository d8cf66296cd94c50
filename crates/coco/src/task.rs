//! The detection task as the engine sees it: [`CocoTask`] (Mask R-CNN over a backbone)
//! trains on [`CocoTrainBatch`]es (split into micro-batches whose gradients accumulate) and
//! detects in [`CocoTestBatch`]es at each image's original size; [`DetectionCollector`]
//! gathers the COCO results for rtb-coco-eval.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarMap;
use rtb_coco_eval::{DetectionResult, Rle, Segmentation};
use rtb_detection::Flavor;
use rtb_detection::image_batch::ImageBatch;
use rtb_detection::mask_rcnn::MaskRcnn;
use rtb_detection::paste::binarize_masks;
use rtb_detection::roi_heads::{GtInstances, InstanceDetections};
use rtb_models::init::trainable_builder;
use rtb_models::{ArchConfig, Freeze};
use rtb_results::Regime;
use rtb_train::seed::{Stream, derive_seed, mix64};
use rtb_train::{EvalTask, Metric, StepContext, TrainError, TrainOutput, TrainTask};

use crate::config::DetectorConfig;
use crate::data::{CocoTestBatch, CocoTrainBatch, CocoTrainSample};
use crate::error::CocoTaskError;

/// Prefix of the backbone's tensors in checkpoints (mmdet's names).
pub const BACKBONE_PREFIX: &str = "backbone.";

/// Reads `path` in any layout rtb-models knows, drops a classifier, checks that the rest fits
/// `arch` (without classifier) exactly; keys come back as `backbone.<canonical>`.
fn backbone_weights(
    arch: &ArchConfig,
    path: &Path,
) -> Result<HashMap<String, Tensor>, CocoTaskError> {
    let canonical = rtb_models::read_canonical(arch, path, None)?;
    let mut tensors = canonical.tensors;
    if let Ok(weight_key) = arch.classifier_key() {
        let bias_key = weight_key.replace("weight", "bias");
        tensors.remove(weight_key);
        tensors.remove(&bias_key);
    }
    let bare = arch.with_num_classes(None)?;
    rtb_models::check_state_dict(&bare, &path.display().to_string(), &tensors)?;
    Ok(tensors
        .into_iter()
        .map(|(k, t)| (format!("{BACKBONE_PREFIX}{k}"), t))
        .collect())
}

/// The backbone's freezing in a regime: everything for fixed features; for the full
/// network mmdet's ResNet default (`frozen_stages=1`, `norm_eval=True`) and nothing for other
/// families (mmdet's Swin and ConvNeXt configs freeze no stage).
pub fn regime_freeze(regime: Regime, family: &str) -> Freeze {
    match regime {
        Regime::Fixed => Freeze::all(),
        Regime::Full if family == "resnet" => Freeze::mmdet_resnet(),
        Regime::Full => Freeze::none(),
    }
}

/// Mask R-CNN over a backbone, in a regime, on a device.
pub struct CocoTask {
    model: MaskRcnn,
    varmap: VarMap,
    regime: Regime,
    accumulate: usize,
    cat_ids: Vec<i64>,
    device: Device,
    dtype: DType,
}

impl std::fmt::Debug for CocoTask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CocoTask")
            .field("model", &self.model)
            .field("regime", &self.regime)
            .field("accumulate", &self.accumulate)
            .field("cat_ids", &self.cat_ids)
            .field("device", &self.device)
            .field("dtype", &self.dtype)
            .finish_non_exhaustive()
    }
}

impl CocoTask {
    /// Builds the backbone of `arch` (classifier dropped) from `weights` (or from `seed`
    /// without), and the neck and heads of `model` initialised from `seed`, in `regime`;
    /// class `k` reports category `cat_ids[k]`; each training step is split into
    /// `accumulate` micro-batches. `dtype` is the activations' type; a half type is autocast
    /// (f32 weights, `rtb_nn::autocast`; boxes stay f32).
    #[allow(clippy::too_many_arguments)]
    pub fn build(
        model: &DetectorConfig,
        arch: &ArchConfig,
        weights: Option<&Path>,
        regime: Regime,
        seed: u64,
        cat_ids: Vec<i64>,
        accumulate: usize,
        (dtype, device): (DType, &Device),
    ) -> Result<Self, CocoTaskError> {
        if cat_ids.len() != model.num_classes {
            return Err(CocoTaskError::config(
                "model.num_classes",
                format!(
                    "{} classes but the dataset has {} categories",
                    model.num_classes,
                    cat_ids.len()
                ),
            ));
        }
        let arch = arch.with_num_classes(None)?;
        let tensors = match weights {
            Some(path) => backbone_weights(&arch, path)?,
            None => HashMap::new(),
        };
        let varmap = VarMap::new();
        let vb = trainable_builder(
            &varmap,
            tensors,
            derive_seed(seed, Stream::Init, &[0]),
            rtb_nn::autocast::param_dtype(dtype),
            device,
        );
        let cfg = model.to_mask_rcnn()?;
        let mut backbone = arch.build(&vb.pp(cfg.backbone_prefix()))?;
        backbone.set_freeze(regime_freeze(regime, arch.family()));
        let model = MaskRcnn::new(&cfg, backbone, &vb)?;
        Ok(Self {
            model,
            varmap,
            regime,
            accumulate: accumulate.max(1),
            cat_ids,
            device: device.clone(),
            dtype,
        })
    }

    /// The detector.
    pub fn model(&self) -> &MaskRcnn {
        &self.model
    }

    /// The device the model and its inputs live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The category id of each class.
    pub fn cat_ids(&self) -> &[i64] {
        &self.cat_ids
    }

    /// The variables that make up the run's state: neck and heads, and the whole backbone
    /// (BatchNorm statistics included) in the full-network regime (a fixed backbone is
    /// rebuilt from its weights file).
    fn state_vars(&self) -> Vec<(String, Var)> {
        let data = match self.varmap.data().lock() {
            Ok(data) => data,
            Err(poisoned) => poisoned.into_inner(),
        };
        let mut vars: Vec<(String, Var)> = data
            .iter()
            .filter(|(name, _)| self.regime == Regime::Full || !name.starts_with(BACKBONE_PREFIX))
            .map(|(name, var)| (name.clone(), var.clone()))
            .collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        vars
    }

    /// The padded batch and targets of some training samples, on the task's device.
    fn micro_batch(
        &self,
        samples: &[CocoTrainSample],
    ) -> Result<(ImageBatch, Vec<GtInstances>), CocoTaskError> {
        let images = samples
            .iter()
            .map(|s| s.image.to_device(&self.device)?.to_dtype(self.dtype))
            .collect::<candle_core::Result<Vec<_>>>()?;
        let batch = ImageBatch::from_images(&images, 32)?;
        let targets = samples
            .iter()
            .map(|s| {
                let (_, h, w) = s.image.dims3()?;
                let n = s.targets.boxes.len();
                let boxes: Vec<f32> = s.targets.boxes.iter().flatten().copied().collect();
                let masks: Vec<u8> = s.targets.masks.concat();
                Ok(GtInstances {
                    // Box geometry stays f32 under autocast (bf16 would round a 1333-pixel
                    // coordinate to 8 pixels).
                    boxes: Tensor::from_vec(boxes, (n, 4), &self.device)?,
                    labels: s.targets.labels.clone(),
                    masks: Tensor::from_vec(masks, (n, h, w), &self.device)?,
                })
            })
            .collect::<Result<Vec<_>, CocoTaskError>>()?;
        Ok((batch, targets))
    }

    /// The step: each micro-batch's losses (scaled by its share of the images) are
    /// back-propagated on their own and their gradients summed, so only one micro-batch's
    /// graph is alive at a time; the returned loss carries the summed gradient (its value is
    /// the total loss, its gradient the accumulated one: `Σ_v v·ĝ_v − stop(Σ_v v·ĝ_v)` adds
    /// exactly the earlier micro-batches' gradients `ĝ_v` to the last one's).
    fn step(
        &mut self,
        batch: &CocoTrainBatch,
        seed: u64,
    ) -> Result<(Tensor, Vec<(String, f64)>), CocoTaskError> {
        let n = batch.samples.len();
        if n == 0 {
            return Err(CocoTaskError::config("batch", "an empty training batch"));
        }
        let chunk = n.div_ceil(self.accumulate);
        let chunks: Vec<&[CocoTrainSample]> = batch.samples.chunks(chunk).collect();
        let vars: Vec<Var> = self
            .trainable_roles()
            .into_iter()
            .map(|(_, v, _)| v)
            .collect();
        let mut accumulated: Vec<Option<Tensor>> = vec![None; vars.len()];
        let mut earlier_loss = 0f64;
        let mut parts = [0f64; 5];
        let last = chunks.len() - 1;
        let mut final_loss = None;
        for (k, samples) in chunks.iter().enumerate() {
            let (images, targets) = self.micro_batch(samples)?;
            let micro_seed = if k == 0 { seed } else { mix64(seed ^ k as u64) };
            let losses = self.model.forward_train(&images, &targets, micro_seed)?;
            let share = samples.len() as f64 / n as f64;
            for (slot, l) in parts.iter_mut().zip([
                &losses.objectness,
                &losses.rpn_box,
                &losses.classifier,
                &losses.box_reg,
                &losses.mask,
            ]) {
                *slot += share * l.to_dtype(DType::F64)?.to_scalar::<f64>()?;
            }
            let total = (losses.total()? * share)?;
            if k < last {
                earlier_loss += total.to_dtype(DType::F64)?.to_scalar::<f64>()?;
                let grads = total.backward()?;
                for (slot, var) in accumulated.iter_mut().zip(&vars) {
                    if let Some(g) = grads.get(var.as_tensor()) {
                        *slot = Some(match slot.take() {
                            Some(sum) => (sum + g)?,
                            None => g.clone(),
                        });
                    }
                }
            } else {
                final_loss = Some(total);
            }
        }
        let mut loss =
            final_loss.ok_or_else(|| CocoTaskError::config("batch", "no micro-batch"))?;
        if last > 0 {
            let mut surrogate: Option<Tensor> = None;
            for (g, var) in accumulated.iter().zip(&vars) {
                if let Some(g) = g {
                    let term = (var.as_tensor() * g.detach())?.sum_all()?;
                    surrogate = Some(match surrogate {
                        Some(s) => (s + term)?,
                        None => term,
                    });
                }
            }
            if let Some(s) = surrogate {
                loss = ((loss + (&s - s.detach())?)? + earlier_loss)?;
            } else {
                loss = (loss + earlier_loss)?;
            }
        }
        let names = ["objectness", "rpn_box", "classifier", "box_reg", "mask"];
        Ok((
            loss,
            names
                .iter()
                .zip(parts)
                .map(|(n, v)| ((*n).to_string(), v))
                .collect(),
        ))
    }

    /// Detections of a batch at each image's original size.
    pub fn detect(&self, batch: &ImageBatch) -> Result<Vec<InstanceDetections>, CocoTaskError> {
        let tensor = batch.tensor.to_device(&self.device)?.to_dtype(self.dtype)?;
        let batch = ImageBatch {
            tensor,
            image_sizes: batch.image_sizes.clone(),
            original_sizes: batch.original_sizes.clone(),
        };
        Ok(self.model.forward(&batch)?)
    }

    /// COCO results (boxes `[x, y, w, h]`, scores, categories, masks as compressed RLE
    /// binarised at 0.5) of a batch of images with ids `image_ids`.
    pub fn results(
        &self,
        batch: &ImageBatch,
        image_ids: &[i64],
    ) -> Result<Vec<DetectionResult>, CocoTaskError> {
        let detections = self.detect(batch)?;
        let mut out = Vec::new();
        for (det, &image_id) in detections.iter().zip(image_ids) {
            out.extend(to_results(det, image_id, &self.cat_ids)?);
        }
        Ok(out)
    }
}

/// One image's detections as COCO results (mmdet's `xyxy2xywh`: `w = x2 − x1`).
pub fn to_results(
    det: &InstanceDetections,
    image_id: i64,
    cat_ids: &[i64],
) -> Result<Vec<DetectionResult>, CocoTaskError> {
    let d = &det.detections;
    if d.labels.is_empty() {
        return Ok(Vec::new());
    }
    let boxes: Vec<Vec<f32>> = d.boxes.to_dtype(DType::F32)?.to_vec2()?;
    let scores: Vec<f32> = d.scores.to_dtype(DType::F32)?.to_vec1()?;
    let masks = binarize_masks(Flavor::Mmdet, &det.masks)?;
    let (_, h, w) = masks.dims3()?;
    let masks: Vec<u8> = masks.to_dtype(DType::U8)?.flatten_all()?.to_vec1()?;
    let plane = h * w;
    let mut out = Vec::with_capacity(d.labels.len());
    for (i, &label) in d.labels.iter().enumerate() {
        let category_id = *cat_ids.get(label).ok_or_else(|| {
            CocoTaskError::config(
                "labels",
                format!("class {label} is past the {} categories", cat_ids.len()),
            )
        })?;
        let b = &boxes[i];
        let rle = Rle::encode_row_major(&masks[i * plane..(i + 1) * plane], h as u32, w as u32)
            .map_err(|err| CocoTaskError::config("masks", err.to_string()))?;
        out.push(DetectionResult {
            image_id,
            category_id,
            score: f64::from(scores[i]),
            bbox: Some([
                f64::from(b[0]),
                f64::from(b[1]),
                f64::from(b[2] - b[0]),
                f64::from(b[3] - b[1]),
            ]),
            segmentation: Some(Segmentation::compressed(&rle)),
        });
    }
    Ok(out)
}

fn backbone_key(name: &str) -> String {
    if name.starts_with(BACKBONE_PREFIX) {
        name.to_string()
    } else {
        format!("{BACKBONE_PREFIX}{name}")
    }
}

impl TrainTask for CocoTask {
    type Batch = CocoTrainBatch;

    fn trainable_vars(&self) -> Vec<(String, Var)> {
        self.trainable_roles()
            .into_iter()
            .map(|(name, var, _)| (name, var))
            .collect()
    }

    fn trainable_roles(&self) -> Vec<(String, Var, Option<rtb_nn::optim::ParamRole>)> {
        // Neck and heads: every variable outside the backbone trains (they hold no running
        // statistics); their optimizer roles come from the names.
        let mut out: Vec<(String, Var, Option<rtb_nn::optim::ParamRole>)> = {
            let data = match self.varmap.data().lock() {
                Ok(data) => data,
                Err(poisoned) => poisoned.into_inner(),
            };
            let mut heads: Vec<_> = data
                .iter()
                .filter(|(name, _)| !name.starts_with(BACKBONE_PREFIX))
                .map(|(name, var)| (name.clone(), var.clone(), None))
                .collect();
            heads.sort_by(|a, b| a.0.cmp(&b.0));
            heads
        };
        out.extend(
            self.model
                .backbone
                .trainable_roles()
                .into_iter()
                .map(|(name, var, role)| (backbone_key(&name), var, Some(role))),
        );
        out
    }

    fn state_tensors(&self) -> rtb_train::Result<BTreeMap<String, Tensor>> {
        let mut state = BTreeMap::new();
        for (name, var) in self.state_vars() {
            state.insert(name, var.as_tensor().copy()?);
        }
        Ok(state)
    }

    fn load_state_tensors(&mut self, state: &BTreeMap<String, Tensor>) -> rtb_train::Result<()> {
        rtb_train::assign_vars(&self.state_vars(), state)
    }

    fn train_step(
        &mut self,
        batch: CocoTrainBatch,
        ctx: &StepContext,
    ) -> rtb_train::Result<TrainOutput> {
        let items = batch.samples.len();
        let (loss, parts) = self.step(&batch, ctx.seed).map_err(TrainError::task)?;
        Ok(TrainOutput {
            loss: loss.to_dtype(DType::F32)?,
            items,
            parts,
        })
    }
}

impl EvalTask for CocoTask {
    type Batch = CocoTestBatch;
    type Output = Vec<DetectionResult>;

    fn eval_step(&self, batch: CocoTestBatch) -> rtb_train::Result<Vec<DetectionResult>> {
        self.results(&batch.images, &batch.image_ids)
            .map_err(TrainError::task)
    }
}

/// Gathers the COCO results of an evaluation (the engine's `Metric`; the numbers come from
/// rtb-coco-eval once every image is done).
#[derive(Debug, Default)]
pub struct DetectionCollector {
    results: Vec<DetectionResult>,
}

impl DetectionCollector {
    /// An empty collector.
    pub fn new() -> Self {
        Self::default()
    }

    /// The gathered results, in image order.
    pub fn into_results(self) -> Vec<DetectionResult> {
        self.results
    }
}

impl Metric for DetectionCollector {
    type Input = Vec<DetectionResult>;

    fn update(&mut self, input: &Vec<DetectionResult>) {
        self.results.extend(input.iter().cloned());
    }

    fn value(&self) -> f64 {
        self.results.len() as f64
    }

    fn reset(&mut self) {
        self.results.clear();
    }
}
