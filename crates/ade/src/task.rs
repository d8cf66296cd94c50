//! The segmentation task as the engine sees it: [`AdeTask`] (UperNet over a backbone) trains
//! on [`AdeTrainBatch`]es and predicts label maps of [`AdeTestBatch`]es at their original
//! size, which [`IouMetric`] accumulates.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarMap;
use rtb_ade_eval::{EvalConfig, IouAccumulator, LabelMap, PerImageAreas};
use rtb_models::ArchConfig;
use rtb_models::init::trainable_builder;
use rtb_results::Regime;
use rtb_segmentation::{UperNet, UperNetConfig, argmax, resize_logits};
use rtb_train::seed::{Stream, derive_seed};
use rtb_train::{EvalTask, Metric, StepContext, TrainError, TrainOutput, TrainTask};

use crate::dataset::{AdeTestBatch, AdeTrainBatch};
use crate::error::AdeTaskError;

/// Prefix of the backbone's tensors in checkpoints (transformers' UperNet names).
pub const BACKBONE_PREFIX: &str = "backbone.";

/// Reads `path` in any layout rtb-models knows, drops a classifier, and checks that the rest
/// fits `arch` (without classifier) exactly; keys come back as `backbone.<canonical>`.
fn backbone_weights(
    arch: &ArchConfig,
    path: &Path,
) -> Result<HashMap<String, Tensor>, AdeTaskError> {
    let model = |err: rtb_models::ModelError| AdeTaskError::Model(Box::new(err));
    let canonical = rtb_models::read_canonical(arch, path, None).map_err(model)?;
    let mut tensors = canonical.tensors;
    if let Ok(weight_key) = arch.classifier_key() {
        let bias_key = weight_key.replace("weight", "bias");
        tensors.remove(weight_key);
        tensors.remove(&bias_key);
    }
    let bare = arch.with_num_classes(None).map_err(model)?;
    rtb_models::check_state_dict(&bare, &path.display().to_string(), &tensors).map_err(model)?;
    Ok(tensors
        .into_iter()
        .map(|(k, t)| (format!("{BACKBONE_PREFIX}{k}"), t))
        .collect())
}

/// UperNet over a backbone, in a regime, on a device.
#[derive(Debug)]
pub struct AdeTask {
    model: UperNet,
    device: Device,
    dtype: DType,
}

impl AdeTask {
    /// Builds the backbone of `arch` (classifier dropped) from `weights` (or from `seed`
    /// without), and UperNet's heads of `cfg` initialised from `seed`, in `regime`. `dtype` is
    /// the activations' type; a half type is autocast (f32 weights, `rtb_nn::autocast`).
    pub fn build(
        cfg: &UperNetConfig,
        arch: &ArchConfig,
        weights: Option<&Path>,
        regime: Regime,
        seed: u64,
        (dtype, device): (DType, &Device),
    ) -> Result<Self, AdeTaskError> {
        let model_err = |err: rtb_models::ModelError| AdeTaskError::Model(Box::new(err));
        let arch = arch.with_num_classes(None).map_err(model_err)?;
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
        let mut model = UperNet::build(cfg, &arch, &vb)?;
        model.set_regime(match regime {
            Regime::Fixed => rtb_segmentation::Regime::FixedFeature,
            Regime::Full => rtb_segmentation::Regime::FullNetwork,
        });
        Ok(Self {
            model,
            device: device.clone(),
            dtype,
        })
    }

    /// The segmenter.
    pub fn model(&self) -> &UperNet {
        &self.model
    }

    /// The device the model and its inputs live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The variables that make up the run's state: the heads' (weights and BatchNorm
    /// statistics), and the backbone's in the full-network regime (a fixed backbone is
    /// rebuilt from its weights file).
    fn state_vars(&self) -> Vec<(String, Var)> {
        let params = match self.model.regime() {
            rtb_segmentation::Regime::FixedFeature => self.model.head_parameters(),
            rtb_segmentation::Regime::FullNetwork => self.model.parameters(),
        };
        params
            .into_iter()
            .filter(|p| p.tensor.is_variable())
            .filter_map(|p| Var::from_tensor(&p.tensor).ok().map(|v| (p.name, v)))
            .collect()
    }

    /// Label maps of a normalised, padded batch at each image's original size: whole-image
    /// logits, cropped to the resized image, resized (bilinear) to the label map's size,
    /// argmax.
    pub fn predict(&self, batch: &AdeTestBatch) -> Result<Vec<LabelMap>, AdeTaskError> {
        let images = batch.images.to_device(&self.device)?.to_dtype(self.dtype)?;
        let logits = self.model.forward(&images)?.to_dtype(DType::F32)?;
        let mut out = Vec::with_capacity(batch.sizes.len());
        for (i, (&(h, w), label)) in batch.sizes.iter().zip(&batch.labels).enumerate() {
            let one = logits.narrow(0, i, 1)?.narrow(2, 0, h)?.narrow(3, 0, w)?;
            let (lw, lh) = label.size();
            let full = resize_logits(&one, (lh as usize, lw as usize))?;
            let classes: Vec<u8> = argmax(&full)?.flatten_all()?.to_vec1()?;
            out.push(LabelMap::new(lw, lh, classes)?);
        }
        Ok(out)
    }
}

impl TrainTask for AdeTask {
    type Batch = AdeTrainBatch;

    fn trainable_vars(&self) -> Vec<(String, Var)> {
        self.model.trainable_vars()
    }

    fn trainable_roles(&self) -> Vec<(String, Var, Option<rtb_nn::optim::ParamRole>)> {
        self.model
            .trainable_roles()
            .into_iter()
            .map(|(name, var, role)| (name, var, Some(role)))
            .collect()
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
        batch: AdeTrainBatch,
        ctx: &StepContext,
    ) -> rtb_train::Result<TrainOutput> {
        let images = batch.images.to_device(&self.device)?.to_dtype(self.dtype)?;
        let labels = batch.labels.to_device(&self.device)?;
        let items = images.dim(0)?;
        let losses = self
            .model
            .forward_train(&images, &labels, ctx.seed)
            .map_err(TrainError::task)?;
        let mut parts = vec![(
            "decode".to_string(),
            losses.decode.to_dtype(DType::F64)?.to_scalar::<f64>()?,
        )];
        if let Some(aux) = &losses.auxiliary {
            parts.push(("aux".into(), aux.to_dtype(DType::F64)?.to_scalar::<f64>()?));
        }
        Ok(TrainOutput {
            loss: losses.total.to_dtype(DType::F32)?,
            items,
            parts,
        })
    }
}

/// One evaluation batch's predictions and labels, at the original image sizes.
#[derive(Debug, Clone)]
pub struct SegPredictions {
    /// The reduced label maps.
    pub labels: Vec<LabelMap>,
    /// The predicted label maps, one per label map and of its size.
    pub predicted: Vec<LabelMap>,
}

impl EvalTask for AdeTask {
    type Batch = AdeTestBatch;
    type Output = SegPredictions;

    fn eval_step(&self, batch: AdeTestBatch) -> rtb_train::Result<SegPredictions> {
        let predicted = self.predict(&batch).map_err(TrainError::task)?;
        Ok(SegPredictions {
            labels: batch.labels,
            predicted,
        })
    }
}

/// mmseg's mIoU over evaluation batches, through rtb-ade-eval's [`IouAccumulator`]. The
/// engine's `Metric::update` cannot fail; the first error is kept and reported by
/// [`IouMetric::finish`].
#[derive(Debug)]
pub struct IouMetric {
    accumulator: IouAccumulator,
    // Each image's areas, in evaluation order, when a bootstrap needs them; `image` is the
    // reused one-image accumulator.
    per_image: Option<(PerImageAreas, IouAccumulator)>,
    error: Option<String>,
}

impl IouMetric {
    /// An empty accumulator over `num_classes` classes, ignore index 255.
    pub fn new(num_classes: usize) -> Result<Self, AdeTaskError> {
        Ok(Self {
            accumulator: IouAccumulator::new(EvalConfig::new(num_classes))?,
            per_image: None,
            error: None,
        })
    }

    /// Also keeps every image's areas ([`IouMetric::finish_per_image`]).
    pub fn with_per_image(mut self) -> Result<Self, AdeTaskError> {
        let config = *self.accumulator.config();
        self.per_image = Some((PerImageAreas::new(config), IouAccumulator::new(config)?));
        Ok(self)
    }

    /// The accumulated areas, or the first error an update met.
    pub fn finish(self) -> Result<IouAccumulator, AdeTaskError> {
        Ok(self.finish_per_image()?.0)
    }

    /// The accumulated areas and, when kept, every image's areas.
    pub fn finish_per_image(self) -> Result<(IouAccumulator, Option<PerImageAreas>), AdeTaskError> {
        match self.error {
            Some(message) => Err(AdeTaskError::config("predictions", message)),
            None => Ok((self.accumulator, self.per_image.map(|(areas, _)| areas))),
        }
    }

    fn add(
        &mut self,
        label: &LabelMap,
        predicted: &LabelMap,
    ) -> Result<(), rtb_ade_eval::AdeError> {
        match &mut self.per_image {
            None => self.accumulator.add_map(label, predicted),
            Some((areas, image)) => {
                image.clear();
                image.add_map(label, predicted)?;
                areas.push(image)?;
                self.accumulator.merge(image)
            }
        }
    }
}

impl Metric for IouMetric {
    type Input = SegPredictions;

    fn update(&mut self, input: &SegPredictions) {
        for (label, predicted) in input.labels.iter().zip(&input.predicted) {
            if let Err(err) = self.add(label, predicted)
                && self.error.is_none()
            {
                self.error = Some(err.to_string());
            }
        }
    }

    fn value(&self) -> f64 {
        self.accumulator.metrics().m_iou
    }

    fn reset(&mut self) {
        let config = *self.accumulator.config();
        if let Ok(fresh) = IouAccumulator::new(config) {
            self.accumulator = fresh;
        }
        if let Some((areas, _)) = &mut self.per_image {
            *areas = PerImageAreas::new(config);
        }
        self.error = None;
    }
}
