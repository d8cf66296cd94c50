//! COCOeval for boxes and masks: per-image matching ([`CocoEval::evaluate`]), precision and
//! recall tables ([`Evaluation::accumulate`]) and the 12 summary numbers
//! ([`Accumulation::summarize`]), each equal to pycocotools 2.0.11.
//!
//! Work is split over (category, image) pairs and over categories with rayon; every pair and
//! category is computed independently and results are placed by index, so the numbers do not
//! depend on the number of threads.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::fmt;

use rayon::prelude::*;

use crate::dataset::{Annotation, CocoGt};
use crate::error::Error;
use crate::mask::{self, Rle};
use crate::params::{IouType, Params, numpy_sum};
use crate::results::{Detection, Detections};

/// Something pycocotools would silently do that a user should know about. The numbers keep
/// pycocotools' behaviour; the warning says where it applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EvalWarning {
    /// Ground-truth annotations with id 0 were evaluated: pycocotools records matches by
    /// annotation id, so a detection matched to such an object counts as a false positive.
    AnnotationIdZero {
        /// How many evaluated annotations have id 0.
        count: usize,
    },
    /// Annotation ids repeat: pycocotools' index keeps the last annotation of each id, so every
    /// annotation with a repeated id is evaluated as that last one.
    DuplicateAnnotationIds {
        /// How many annotations share an id with a later one.
        count: usize,
    },
    /// Masks of different sizes were compared; pycocotools gives such pairs an IoU of −1.
    MaskSizeMismatch {
        /// Number of (detection, ground truth) pairs concerned.
        pairs: usize,
    },
    /// Detections whose category is not evaluated were left out.
    DetectionsOutsideCategories {
        /// How many.
        count: usize,
    },
}

impl fmt::Display for EvalWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EvalWarning::AnnotationIdZero { count } => write!(
                f,
                "{count} ground-truth annotation(s) have id 0; as in pycocotools, detections \
                 matched to them count as false positives"
            ),
            EvalWarning::DuplicateAnnotationIds { count } => write!(
                f,
                "{count} ground-truth annotation(s) repeat an id; as in pycocotools, each is \
                 evaluated as the last annotation with that id"
            ),
            EvalWarning::MaskSizeMismatch { pairs } => write!(
                f,
                "{pairs} detection/ground-truth mask pair(s) have different sizes and get IoU -1"
            ),
            EvalWarning::DetectionsOutsideCategories { count } => write!(
                f,
                "{count} detection(s) have a category that is not evaluated and were ignored"
            ),
        }
    }
}

/// Per-detection outcome at one (area range, IoU threshold).
const FALSE_POSITIVE: u8 = 0;
const TRUE_POSITIVE: u8 = 1;
const IGNORED: u8 = 2;

/// One evaluated (category, image) pair: pycocotools' `evalImgs` entry, for all area ranges.
#[derive(Debug, Clone)]
struct GroupEval {
    /// Category position (0 when categories are pooled).
    k: u32,
    /// Image position in the resolved, sorted image ids.
    image: u32,
    /// Scores of the kept detections, best first.
    scores: Vec<f64>,
    /// Non-ignored ground truths per area range.
    npig: Vec<u32>,
    /// Outcomes, laid out `[detection][area range][threshold]`.
    states: Vec<u8>,
}

/// Evaluates detections against a ground truth.
#[derive(Debug, Clone)]
pub struct CocoEval<'a> {
    gt: &'a CocoGt,
    dt: &'a Detections,
    params: Params,
}

/// Per-image matching results, ready to accumulate.
#[derive(Debug, Clone)]
pub struct Evaluation {
    params: Params,
    groups: Vec<GroupEval>,
    warnings: Vec<EvalWarning>,
}

/// Precision, recall and score tables, laid out as pycocotools' numpy arrays (C order).
#[derive(Debug, Clone)]
pub struct Accumulation {
    params: Params,
    shape: [usize; 5],
    precision: Vec<f64>,
    recall: Vec<f64>,
    scores: Vec<f64>,
}

/// The 12 numbers pycocotools prints, and their lines.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// AP, AP50, AP75, APs, APm, APl, AR1, AR10, AR100, ARs, ARm, ARl.
    pub stats: [f64; 12],
    lines: Vec<String>,
}

/// Everything one evaluation produces.
#[derive(Debug, Clone)]
pub struct EvalReport {
    /// The precision / recall / score tables.
    pub accumulation: Accumulation,
    /// The 12 numbers.
    pub summary: Summary,
    /// What pycocotools would have done silently.
    pub warnings: Vec<EvalWarning>,
}

/// The parameters as pycocotools normalises them in `evaluate()`.
fn resolve(params: &Params, gt: &CocoGt) -> Result<Params, Error> {
    let mut resolved = params.clone();
    let mut img_ids = params.img_ids.clone().unwrap_or_else(|| gt.image_ids());
    img_ids.sort_unstable();
    img_ids.dedup();
    let mut cat_ids = params.cat_ids.clone().unwrap_or_else(|| gt.category_ids());
    if params.use_cats {
        cat_ids.sort_unstable();
        cat_ids.dedup();
    }
    resolved.img_ids = Some(img_ids);
    resolved.cat_ids = Some(cat_ids);
    resolved.max_dets.sort_unstable();
    if resolved.max_dets.is_empty() {
        return Err(Error::Params("max_dets is empty".to_string()));
    }
    if resolved.area_rng.len() != resolved.area_rng_lbl.len() {
        return Err(Error::Params(format!(
            "{} area ranges but {} labels",
            resolved.area_rng.len(),
            resolved.area_rng_lbl.len()
        )));
    }
    Ok(resolved)
}

/// Stable descending order by score (numpy's `argsort(-score, kind='mergesort')`).
fn by_score_descending(a: f64, b: f64) -> Ordering {
    b.partial_cmp(&a).unwrap_or(Ordering::Equal)
}

struct GroupContext<'a> {
    gt: &'a CocoGt,
    detections: &'a [Detection],
    iou_type: IouType,
    iou_thrs: &'a [f64],
    area_rng: &'a [[f64; 2]],
    max_det: usize,
}

#[derive(Default)]
struct Scratch {
    order: Vec<u32>,
    ious: Vec<f64>,
    gt_order: Vec<usize>,
    gt_ignore: Vec<bool>,
    matched: Vec<bool>,
}

impl GroupContext<'_> {
    fn gt_rle(&self, index: u32) -> Result<Rle, Error> {
        let ann = &self.gt.annotations()[index as usize];
        let segmentation = ann.segmentation.as_ref().ok_or_else(|| {
            Error::invalid(
                self.gt.source(),
                format!("annotations[{index}] (id {})", ann.id),
                "has no segmentation, needed for segm evaluation",
            )
        })?;
        segmentation
            .to_rle(self.gt.image_size(ann.image_id), ann.image_id)
            .map_err(|source| Error::Mask {
                context: format!("{}: annotations[{index}] (id {})", self.gt.source(), ann.id),
                source,
            })
    }

    fn dt_rle(&self, index: u32, source_name: &str) -> Result<Rle, Error> {
        let det = &self.detections[index as usize];
        let size = self.gt.image_size(det.image_id);
        let rle = match &det.segmentation {
            Some(segmentation) => segmentation.to_rle(size, det.image_id),
            None => match size {
                Some([height, width]) => Ok(Rle::from_bbox(det.bbox, height, width)),
                None => Err(mask::MaskError::NoImageSize {
                    image_id: det.image_id,
                }),
            },
        };
        rle.map_err(|source| Error::Mask {
            context: format!(
                "{source_name}: results[{index}] (image_id {})",
                det.image_id
            ),
            source,
        })
    }

    /// Fills `scratch.ious[d * G + g]` for the kept detections `scratch.order`.
    fn ious(&self, gts: &[u32], scratch: &mut Scratch, source_name: &str) -> Result<usize, Error> {
        let anns = self.gt.annotations();
        let n_gt = gts.len();
        scratch.ious.clear();
        if n_gt == 0 || scratch.order.is_empty() {
            return Ok(0);
        }
        match self.iou_type {
            IouType::Bbox => {
                let mut gt_boxes = Vec::with_capacity(n_gt);
                for &g in gts {
                    let ann = &anns[g as usize];
                    let bbox = ann.bbox.ok_or_else(|| {
                        Error::invalid(
                            self.gt.source(),
                            format!("annotations[{g}] (id {})", ann.id),
                            "has no bbox, needed for bbox evaluation",
                        )
                    })?;
                    gt_boxes.push((bbox, ann.iscrowd));
                }
                for &d in &scratch.order {
                    let dt_box = self.detections[d as usize].bbox;
                    for &(gt_box, crowd) in &gt_boxes {
                        scratch.ious.push(mask::bbox_iou(dt_box, gt_box, crowd));
                    }
                }
                Ok(0)
            }
            IouType::Segm => {
                let mut gt_masks = Vec::with_capacity(n_gt);
                for &g in gts {
                    let rle = self.gt_rle(g)?;
                    let bbox = rle.to_bbox();
                    gt_masks.push((rle, bbox, anns[g as usize].iscrowd));
                }
                let mut mismatched = 0;
                for &d in &scratch.order {
                    let rle = self.dt_rle(d, source_name)?;
                    let dt_box = rle.to_bbox();
                    let dt_area = rle.area();
                    for (gt_rle, gt_box, crowd) in &gt_masks {
                        let iou = mask::rle_iou_with_boxes(
                            &rle, dt_box, dt_area, gt_rle, *gt_box, *crowd,
                        );
                        if iou == -1.0 {
                            mismatched += 1;
                        }
                        scratch.ious.push(iou);
                    }
                }
                Ok(mismatched)
            }
        }
    }

    /// pycocotools' `computeIoU` + `evaluateImg` for every area range.
    fn evaluate(
        &self,
        k: u32,
        gts: &[u32],
        dts: &[u32],
        scratch: &mut Scratch,
        source_name: &str,
    ) -> Result<(GroupEval, usize), Error> {
        let anns = self.gt.annotations();
        scratch.order.clear();
        scratch.order.extend_from_slice(dts);
        scratch.order.sort_by(|&a, &b| {
            by_score_descending(
                self.detections[a as usize].score,
                self.detections[b as usize].score,
            )
        });
        scratch.order.truncate(self.max_det);
        let mismatched = self.ious(gts, scratch, source_name)?;

        let n_dt = scratch.order.len();
        let n_gt = gts.len();
        let n_thr = self.iou_thrs.len();
        let n_area = self.area_rng.len();
        let scores: Vec<f64> = scratch
            .order
            .iter()
            .map(|&d| self.detections[d as usize].score)
            .collect();
        let mut states = vec![FALSE_POSITIVE; n_dt * n_area * n_thr];
        let mut npig = Vec::with_capacity(n_area);
        for (a, &[low, high]) in self.area_rng.iter().enumerate() {
            scratch.gt_ignore.clear();
            scratch.gt_ignore.extend(gts.iter().map(|&g| {
                let ann: &Annotation = &anns[g as usize];
                ann.iscrowd || ann.area < low || ann.area > high
            }));
            // Ground truths stable-sorted with ignored ones last.
            scratch.gt_order.clear();
            scratch
                .gt_order
                .extend((0..n_gt).filter(|&g| !scratch.gt_ignore[g]));
            let regular = scratch.gt_order.len();
            scratch
                .gt_order
                .extend((0..n_gt).filter(|&g| scratch.gt_ignore[g]));
            npig.push(regular as u32);

            for (t, &threshold) in self.iou_thrs.iter().enumerate() {
                scratch.matched.clear();
                scratch.matched.resize(n_gt, false);
                for (d, &det_index) in scratch.order.iter().enumerate() {
                    // Python's min([t, 1 - 1e-10]).
                    let limit = 1.0 - 1e-10;
                    let mut best = if limit < threshold { limit } else { threshold };
                    let mut matched: Option<usize> = None;
                    for (j, &g) in scratch.gt_order.iter().enumerate() {
                        let crowd = anns[gts[g] as usize].iscrowd;
                        if scratch.matched[j] && !crowd {
                            continue;
                        }
                        if let Some(m) = matched
                            && m < regular
                            && j >= regular
                        {
                            break;
                        }
                        let iou = scratch.ious[d * n_gt + g];
                        if iou < best {
                            continue;
                        }
                        best = iou;
                        matched = Some(j);
                    }
                    let det_area = self.detections[det_index as usize].area;
                    let outside = det_area < low || det_area > high;
                    let state = match matched {
                        Some(j) => {
                            scratch.matched[j] = true;
                            let gt_ignored = j >= regular;
                            // Matches are stored as the gt id, so id 0 reads as unmatched.
                            let recorded = anns[gts[scratch.gt_order[j]] as usize].id != 0;
                            if gt_ignored || (!recorded && outside) {
                                IGNORED
                            } else if recorded {
                                TRUE_POSITIVE
                            } else {
                                FALSE_POSITIVE
                            }
                        }
                        None if outside => IGNORED,
                        None => FALSE_POSITIVE,
                    };
                    states[(d * n_area + a) * n_thr + t] = state;
                }
            }
        }
        Ok((
            GroupEval {
                k,
                // Set by the caller, which knows the image's position.
                image: 0,
                scores,
                npig,
                states,
            },
            mismatched,
        ))
    }
}

/// Entries `(bucket, item)` stably sorted by bucket; `keys[i]` owns
/// `items[starts[i]..starts[i + 1]]`.
struct Buckets {
    items: Vec<u32>,
    keys: Vec<u64>,
    starts: Vec<usize>,
}

impl Buckets {
    fn new(mut entries: Vec<(u64, u32)>) -> Self {
        entries.sort_by_key(|&(key, _)| key);
        let mut keys = Vec::new();
        let mut starts = Vec::new();
        for (i, &(key, _)) in entries.iter().enumerate() {
            if keys.last() != Some(&key) {
                keys.push(key);
                starts.push(i);
            }
        }
        starts.push(entries.len());
        Self {
            items: entries.into_iter().map(|(_, item)| item).collect(),
            keys,
            starts,
        }
    }

    fn get(&self, key: u64) -> &[u32] {
        match self.keys.binary_search(&key) {
            Ok(i) => &self.items[self.starts[i]..self.starts[i + 1]],
            Err(_) => &[],
        }
    }
}

impl<'a> CocoEval<'a> {
    /// An evaluation of `dt` against `gt` with these parameters.
    pub fn new(gt: &'a CocoGt, dt: &'a Detections, params: Params) -> Self {
        Self { gt, dt, params }
    }

    /// evaluate → accumulate → summarize.
    pub fn run(&self) -> Result<EvalReport, Error> {
        let evaluation = self.evaluate()?;
        let accumulation = evaluation.accumulate();
        let summary = accumulation.summarize()?;
        Ok(EvalReport {
            accumulation,
            summary,
            warnings: evaluation.warnings,
        })
    }

    /// Matches detections to ground truth in every (category, image) pair.
    pub fn evaluate(&self) -> Result<Evaluation, Error> {
        let params = resolve(&self.params, self.gt)?;
        let img_ids = params.img_ids.as_deref().unwrap_or_default();
        let cat_ids = params.cat_ids.as_deref().unwrap_or_default();
        let n_img = img_ids.len() as u64;
        let image_position: HashMap<i64, u64> = img_ids
            .iter()
            .enumerate()
            .map(|(i, &id)| (id, i as u64))
            .collect();
        // Distinct categories; with pooled categories the list may repeat ids (pycocotools
        // then concatenates a category's objects once per repeat).
        let mut category_bucket: HashMap<i64, u64> = HashMap::new();
        for &id in cat_ids {
            let next = category_bucket.len() as u64;
            category_bucket.entry(id).or_insert(next);
        }
        let n_bucket = category_bucket.len() as u64;
        // Bucket keys: category-major when categories are used (the order of pycocotools'
        // evalImgs), image-major when pooled.
        let key = |image: u64, bucket: u64| {
            if params.use_cats {
                bucket * n_img + image
            } else {
                image * n_bucket + bucket
            }
        };

        let anns = self.gt.annotations();
        let mut warnings = Vec::new();
        // pycocotools' index keeps the last annotation of each id.
        let mut last_of_id: HashMap<i64, u32> = HashMap::with_capacity(anns.len());
        for (index, ann) in anns.iter().enumerate() {
            last_of_id.insert(ann.id, index as u32);
        }
        let duplicates = anns.len() - last_of_id.len();
        if duplicates > 0 {
            warnings.push(EvalWarning::DuplicateAnnotationIds { count: duplicates });
        }
        let mut gt_entries = Vec::new();
        for &image_id in img_ids {
            for &index in self.gt.annotations_of(image_id) {
                let original = &anns[index as usize];
                if params.use_cats && !category_bucket.contains_key(&original.category_id) {
                    continue;
                }
                let effective = if duplicates > 0 {
                    last_of_id[&original.id]
                } else {
                    index
                };
                let ann = &anns[effective as usize];
                let (Some(&image), Some(&bucket)) = (
                    image_position.get(&ann.image_id),
                    category_bucket.get(&ann.category_id),
                ) else {
                    continue;
                };
                gt_entries.push((key(image, bucket), effective));
            }
        }
        let zero_ids = gt_entries
            .iter()
            .filter(|&&(_, index)| anns[index as usize].id == 0)
            .count();
        if zero_ids > 0 {
            warnings.push(EvalWarning::AnnotationIdZero { count: zero_ids });
        }
        let detections = self.dt.detections();
        let mut dt_entries = Vec::with_capacity(detections.len());
        let mut outside = 0usize;
        for (index, det) in detections.iter().enumerate() {
            let Some(&image) = image_position.get(&det.image_id) else {
                continue;
            };
            let Some(&bucket) = category_bucket.get(&det.category_id) else {
                outside += 1;
                continue;
            };
            dt_entries.push((key(image, bucket), index as u32));
        }
        if outside > 0 {
            warnings.push(EvalWarning::DetectionsOutsideCategories { count: outside });
        }
        let gt_buckets = Buckets::new(gt_entries);
        let dt_buckets = Buckets::new(dt_entries);

        // The (category, image) pairs that have anything to evaluate, in evalImgs order.
        let mut group_keys: Vec<(u32, u32)> = if params.use_cats {
            let mut keys: Vec<u64> = gt_buckets
                .keys
                .iter()
                .chain(&dt_buckets.keys)
                .copied()
                .collect();
            keys.sort_unstable();
            keys.dedup();
            keys.into_iter()
                .map(|key| ((key / n_img) as u32, (key % n_img) as u32))
                .collect()
        } else {
            let mut images: Vec<u32> = gt_buckets
                .keys
                .iter()
                .chain(&dt_buckets.keys)
                .map(|key| (key / n_bucket) as u32)
                .collect();
            images.sort_unstable();
            images.dedup();
            images.into_iter().map(|image| (0, image)).collect()
        };
        group_keys.shrink_to_fit();

        let context = GroupContext {
            gt: self.gt,
            detections,
            iou_type: params.iou_type,
            iou_thrs: &params.iou_thrs,
            area_rng: &params.area_rng,
            max_det: *params.max_dets.last().unwrap_or(&0),
        };
        let source_name = self.dt.source();
        let cat_order: Vec<u64> = cat_ids.iter().map(|id| category_bucket[id]).collect();
        let evaluated: Vec<(GroupEval, usize)> = group_keys
            .par_iter()
            .with_min_len(64)
            .map_init(Scratch::default, |scratch, &(k, image)| {
                if params.use_cats {
                    let key = u64::from(k) * n_img + u64::from(image);
                    context.evaluate(
                        k,
                        gt_buckets.get(key),
                        dt_buckets.get(key),
                        scratch,
                        source_name,
                    )
                } else {
                    // Pooled: concatenate the image's objects category by category.
                    let mut gts = Vec::new();
                    let mut dts = Vec::new();
                    for &bucket in &cat_order {
                        let key = u64::from(image) * n_bucket + bucket;
                        gts.extend_from_slice(gt_buckets.get(key));
                        dts.extend_from_slice(dt_buckets.get(key));
                    }
                    context.evaluate(0, &gts, &dts, scratch, source_name)
                }
            })
            .collect::<Result<_, Error>>()?;
        let mut evaluated = evaluated;
        for ((group, _), &(_, image)) in evaluated.iter_mut().zip(&group_keys) {
            group.image = image;
        }
        let mismatched: usize = evaluated.iter().map(|(_, m)| m).sum();
        if mismatched > 0 {
            warnings.push(EvalWarning::MaskSizeMismatch { pairs: mismatched });
        }
        Ok(Evaluation {
            params,
            groups: evaluated.into_iter().map(|(group, _)| group).collect(),
            warnings,
        })
    }
}

/// Smallest `v` in `0..=max` with `v / positives >= threshold`, as numpy's searchsorted finds
/// it on the recall curve; `None` if even `max` falls short.
fn first_reaching(max: usize, positives: f64, threshold: f64) -> Option<usize> {
    if threshold.is_nan() {
        // numpy sorts NaN after every number.
        return None;
    }
    let (mut lo, mut hi) = (0usize, max + 1);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if (mid as f64 / positives) < threshold {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    (lo <= max).then_some(lo)
}

/// One category's slice of the accumulated tables, `[t][r][a][m]` and `[t][a][m]`.
struct CategoryTables {
    k: usize,
    precision: Vec<f64>,
    recall: Vec<f64>,
    scores: Vec<f64>,
}

impl Evaluation {
    /// The parameters after pycocotools' normalisation (ids sorted and unique, maxDets sorted).
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// What pycocotools would have done silently.
    pub fn warnings(&self) -> &[EvalWarning] {
        &self.warnings
    }

    /// pycocotools' `accumulate()`.
    pub fn accumulate(&self) -> Accumulation {
        self.accumulate_groups(|_| 1)
    }

    /// pycocotools' `accumulate()` over a multiset of the evaluated images: image `i` of
    /// [`params`](Self::params)`().img_ids` (sorted, unique) counts `weights[i]` times. This
    /// equals evaluating and accumulating a dataset that holds `weights[i]` copies of image
    /// `i` (its ground truth and detections, under new ids that sort next to each other, in
    /// image order), which is how a bootstrap replicate of box AP over resampled images is
    /// computed without matching anything again; weights of 1 give
    /// [`accumulate`](Self::accumulate), 0 leaves an image out. (Each copy carries its
    /// image's evaluation as it was made: a ground truth whose repeated annotation id
    /// pycocotools resolved to another image keeps that resolution.) An error unless there
    /// is one weight per image.
    pub fn accumulate_weighted(&self, weights: &[u32]) -> Result<Accumulation, Error> {
        let n_img = self.params.img_ids.as_ref().map_or(0, Vec::len);
        if weights.len() != n_img {
            return Err(Error::Params(format!(
                "{} image weights for {n_img} evaluated images",
                weights.len()
            )));
        }
        Ok(self.accumulate_groups(|image| weights[image as usize]))
    }

    /// The 12 summary numbers of [`accumulate_weighted`](Self::accumulate_weighted) for each
    /// weight vector (one per bootstrap replicate), computed in parallel; `stats[0]` is AP.
    pub fn weighted_stats(&self, weights: &[Vec<u32>]) -> Result<Vec<[f64; 12]>, Error> {
        weights
            .par_iter()
            .map(|w| Ok(self.accumulate_weighted(w)?.summarize()?.stats))
            .collect()
    }

    fn accumulate_groups(&self, weight: impl Fn(u32) -> u32 + Sync) -> Accumulation {
        let params = &self.params;
        let n_thr = params.iou_thrs.len();
        let n_rec = params.rec_thrs.len();
        let n_cat = if params.use_cats {
            params.cat_ids.as_ref().map_or(0, Vec::len)
        } else {
            1
        };
        let n_area = params.area_rng.len();
        let n_max = params.max_dets.len();
        // Groups are sorted by category; find each category's run.
        let mut runs: Vec<(usize, usize, usize)> = Vec::new();
        let mut start = 0;
        for i in 1..=self.groups.len() {
            if i == self.groups.len() || self.groups[i].k != self.groups[start].k {
                runs.push((self.groups[start].k as usize, start, i));
                start = i;
            }
        }
        let tables: Vec<CategoryTables> = runs
            .par_iter()
            .map(|&(k, start, end)| {
                // Each group repeated by its image's weight, copies next to each other: the
                // order of the expanded dataset's evalImgs.
                let groups: Vec<&GroupEval> = self.groups[start..end]
                    .iter()
                    .flat_map(|g| std::iter::repeat_n(g, weight(g.image) as usize))
                    .collect();
                self.accumulate_category(k, &groups)
            })
            .collect();

        let mut precision = vec![-1.0; n_thr * n_rec * n_cat * n_area * n_max];
        let mut scores = precision.clone();
        let mut recall = vec![-1.0; n_thr * n_cat * n_area * n_max];
        for table in &tables {
            let k = table.k;
            for t in 0..n_thr {
                for a in 0..n_area {
                    for m in 0..n_max {
                        recall[((t * n_cat + k) * n_area + a) * n_max + m] =
                            table.recall[(t * n_area + a) * n_max + m];
                        for r in 0..n_rec {
                            let local = ((t * n_rec + r) * n_area + a) * n_max + m;
                            let global = (((t * n_rec + r) * n_cat + k) * n_area + a) * n_max + m;
                            precision[global] = table.precision[local];
                            scores[global] = table.scores[local];
                        }
                    }
                }
            }
        }
        Accumulation {
            params: params.clone(),
            shape: [n_thr, n_rec, n_cat, n_area, n_max],
            precision,
            recall,
            scores,
        }
    }

    fn accumulate_category(&self, k: usize, groups: &[&GroupEval]) -> CategoryTables {
        let params = &self.params;
        let n_thr = params.iou_thrs.len();
        let n_rec = params.rec_thrs.len();
        let n_area = params.area_rng.len();
        let n_max = params.max_dets.len();
        let per_det = n_area * n_thr;
        let mut precision = vec![-1.0; n_thr * n_rec * n_area * n_max];
        let mut scores = precision.clone();
        let mut recall = vec![-1.0; n_thr * n_area * n_max];

        // All detections of the category in image order, then stably sorted by score: the
        // order numpy's mergesort gives the concatenation. Cutting to maxDet later keeps it.
        let mut entries: Vec<(f64, u32, u32)> = Vec::new();
        for (g, group) in groups.iter().enumerate() {
            for (d, &score) in group.scores.iter().enumerate() {
                entries.push((score, g as u32, d as u32));
            }
        }
        entries.sort_by(|x, y| by_score_descending(x.0, y.0));
        let npig: Vec<u64> = (0..n_area)
            .map(|a| groups.iter().map(|g| u64::from(g.npig[a])).sum())
            .collect();

        let mut selected_scores = Vec::with_capacity(entries.len());
        let mut selected_states: Vec<u8> = Vec::with_capacity(entries.len() * per_det);
        // Per threshold: precision at each true positive and the detection index where it
        // happens (flat, `n_thr` lists of up to `n_det` entries).
        let mut tp_precision: Vec<f64> = Vec::new();
        let mut tp_position: Vec<u32> = Vec::new();
        let mut tp_count = vec![0usize; n_thr];
        let mut fp_count = vec![0u64; n_thr];
        for (m, &max_det) in params.max_dets.iter().enumerate() {
            selected_scores.clear();
            selected_states.clear();
            for &(score, g, d) in &entries {
                if (d as usize) < max_det {
                    let group = &groups[g as usize];
                    let offset = d as usize * per_det;
                    selected_scores.push(score);
                    selected_states.extend_from_slice(&group.states[offset..offset + per_det]);
                }
            }
            let n_det = selected_scores.len();
            tp_precision.resize(n_thr * n_det, 0.0);
            tp_position.resize(n_thr * n_det, 0);
            for (a, &positives) in npig.iter().enumerate() {
                if positives == 0 {
                    continue;
                }
                let positives = positives as f64;
                // pycocotools builds tp/fp cumulative sums, rc = tp / npig and
                // pr = tp / (fp + tp + eps) for every detection, makes pr non-increasing from
                // the right and reads it at searchsorted(rc, recThrs). Within a run of equal tp
                // pr only falls, so the right-maximum at the v-th true positive is the maximum
                // of pr over the true positives from the v-th on, and rc = v / npig. Computing
                // pr only at true positives gives the same numbers with far fewer divisions.
                tp_count.iter_mut().for_each(|c| *c = 0);
                fp_count.iter_mut().for_each(|c| *c = 0);
                for e in 0..n_det {
                    let states = &selected_states[e * per_det + a * n_thr..][..n_thr];
                    for (t, &state) in states.iter().enumerate() {
                        match state {
                            TRUE_POSITIVE => {
                                let tp = tp_count[t] + 1;
                                tp_count[t] = tp;
                                let (tp_f, fp_f) = (tp as f64, fp_count[t] as f64);
                                tp_precision[t * n_det + tp - 1] =
                                    tp_f / (fp_f + tp_f + f64::EPSILON);
                                tp_position[t * n_det + tp - 1] = e as u32;
                            }
                            FALSE_POSITIVE => fp_count[t] += 1,
                            _ => {}
                        }
                    }
                }
                for t in 0..n_thr {
                    let true_positives = tp_count[t];
                    let right_max = &mut tp_precision[t * n_det..t * n_det + true_positives];
                    for i in (1..true_positives).rev() {
                        if right_max[i] > right_max[i - 1] {
                            right_max[i - 1] = right_max[i];
                        }
                    }
                    let right_max = &tp_precision[t * n_det..t * n_det + true_positives];
                    let positions = &tp_position[t * n_det..t * n_det + true_positives];
                    recall[(t * n_area + a) * n_max + m] = if n_det > 0 {
                        true_positives as f64 / positives
                    } else {
                        0.0
                    };
                    for r in 0..n_rec {
                        let cell = ((t * n_rec + r) * n_area + a) * n_max + m;
                        precision[cell] = 0.0;
                        scores[cell] = 0.0;
                    }
                    for (r, &threshold) in params.rec_thrs.iter().enumerate() {
                        // Smallest tp count v with v / npig >= threshold (rc is v / npig).
                        let v = first_reaching(true_positives, positives, threshold);
                        let index = match v {
                            None => n_det,
                            Some(0) => 0,
                            Some(v) => positions[v - 1] as usize,
                        };
                        if index >= n_det {
                            // pycocotools' IndexError ends the loop; the rest stays 0.
                            break;
                        }
                        let cell = ((t * n_rec + r) * n_area + a) * n_max + m;
                        precision[cell] = match v {
                            Some(0) | None => right_max.first().copied().unwrap_or(0.0),
                            Some(v) => right_max[v - 1],
                        };
                        scores[cell] = selected_scores[index];
                    }
                }
            }
        }
        CategoryTables {
            k,
            precision,
            recall,
            scores,
        }
    }
}

impl Accumulation {
    /// `[T, R, K, A, M]`: thresholds, recall points, categories, area ranges, maxDets.
    pub fn shape(&self) -> [usize; 5] {
        self.shape
    }

    /// The parameters the tables were computed with.
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// Interpolated precision `[T][R][K][A][M]` (C order); −1 where there is no ground truth.
    pub fn precision(&self) -> &[f64] {
        &self.precision
    }

    /// Recall `[T][K][A][M]`; −1 where there is no ground truth.
    pub fn recall(&self) -> &[f64] {
        &self.recall
    }

    /// Score at each precision point `[T][R][K][A][M]`.
    pub fn scores(&self) -> &[f64] {
        &self.scores
    }

    /// Mean of the cells above −1 in one summary selection (`_summarize`), −1 if none.
    fn summary_value(
        &self,
        average_precision: bool,
        iou: Option<f64>,
        area_label: &str,
        max_dets: usize,
    ) -> Result<f64, Error> {
        let [n_thr, n_rec, n_cat, n_area, n_max] = self.shape;
        let params = &self.params;
        let thresholds: Vec<usize> = match iou {
            None => (0..n_thr).collect(),
            Some(value) => (0..n_thr)
                .filter(|&t| params.iou_thrs[t] == value)
                .collect(),
        };
        let area_index: Vec<usize> = (0..n_area)
            .filter(|&a| params.area_rng_lbl[a] == area_label)
            .collect();
        let max_index: Vec<usize> = (0..n_max)
            .filter(|&m| params.max_dets[m] == max_dets)
            .collect();
        // numpy broadcasts the two index lists against each other.
        let pairs: Vec<(usize, usize)> = match (area_index.len(), max_index.len()) {
            (la, lm) if la == lm => area_index
                .iter()
                .copied()
                .zip(max_index.iter().copied())
                .collect(),
            (1, _) => max_index.iter().map(|&m| (area_index[0], m)).collect(),
            (_, 1) => area_index.iter().map(|&a| (a, max_index[0])).collect(),
            (la, lm) => {
                return Err(Error::Params(format!(
                    "summary selects {la} area ranges labelled {area_label:?} and {lm} maxDets equal to {max_dets}; numpy cannot broadcast them"
                )));
            }
        };
        let mut values = Vec::new();
        for &t in &thresholds {
            if average_precision {
                for r in 0..n_rec {
                    for k in 0..n_cat {
                        for &(a, m) in &pairs {
                            values.push(
                                self.precision
                                    [(((t * n_rec + r) * n_cat + k) * n_area + a) * n_max + m],
                            );
                        }
                    }
                }
            } else {
                for k in 0..n_cat {
                    for &(a, m) in &pairs {
                        values.push(self.recall[((t * n_cat + k) * n_area + a) * n_max + m]);
                    }
                }
            }
        }
        values.retain(|&v| v > -1.0);
        if values.is_empty() {
            Ok(-1.0)
        } else {
            Ok(numpy_sum(&values) / values.len() as f64)
        }
    }

    /// pycocotools' `summarize()`: the 12 numbers and their printed lines.
    pub fn summarize(&self) -> Result<Summary, Error> {
        let params = &self.params;
        if params.max_dets.len() < 3 {
            return Err(Error::Params(format!(
                "summarize needs at least 3 maxDets (pycocotools reads maxDets[2]); got {:?}",
                params.max_dets
            )));
        }
        let (Some(&first), Some(&last)) = (params.iou_thrs.first(), params.iou_thrs.last()) else {
            return Err(Error::Params("summarize needs IoU thresholds".to_string()));
        };
        let md = &params.max_dets;
        let specs: [(bool, Option<f64>, &str, usize); 12] = [
            (true, None, "all", 100),
            (true, Some(0.5), "all", md[2]),
            (true, Some(0.75), "all", md[2]),
            (true, None, "small", md[2]),
            (true, None, "medium", md[2]),
            (true, None, "large", md[2]),
            (false, None, "all", md[0]),
            (false, None, "all", md[1]),
            (false, None, "all", md[2]),
            (false, None, "small", md[2]),
            (false, None, "medium", md[2]),
            (false, None, "large", md[2]),
        ];
        let mut stats = [0.0; 12];
        let mut lines = Vec::with_capacity(12);
        for (i, &(ap, iou, area, max_dets)) in specs.iter().enumerate() {
            let value = self.summary_value(ap, iou, area, max_dets)?;
            stats[i] = value;
            let (title, kind) = if ap {
                ("Average Precision", "(AP)")
            } else {
                ("Average Recall", "(AR)")
            };
            let iou_text = match iou {
                None => format!("{first:.2}:{last:.2}"),
                Some(value) => format!("{value:.2}"),
            };
            lines.push(format!(
                " {title:<18} {kind} @[ IoU={iou_text:<9} | area={area:>6} | maxDets={max_dets:>3} ] = {value:.3}"
            ));
        }
        Ok(Summary { stats, lines })
    }
}

impl Summary {
    /// The 12 lines pycocotools prints, without trailing newlines.
    pub fn lines(&self) -> &[String] {
        &self.lines
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for line in &self.lines {
            writeln!(f, "{line}")?;
        }
        Ok(())
    }
}
