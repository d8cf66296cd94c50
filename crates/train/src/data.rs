//! The data loader: indexable datasets, per-sample seeds, deterministic shuffling, worker
//! threads that build batches ahead of the loop, and on-the-fly corruption.
//!
//! Determinism: the order of an epoch is a permutation drawn from `(seed, epoch)`, and sample
//! `i` of epoch `e` is loaded with the seed `(seed, e, i)` (its dataset index, not its
//! position in the batch). Workers claim whole batches and the iterator hands them out in
//! order, so the batches are the same bytes whatever the number of workers, and a run resumed
//! at batch `b` of epoch `e` sees exactly the batches the uninterrupted run saw.

use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use image::RgbImage;
use rtb_corruption::{Corruption, Corruptor, RandomState, Severity, image_seed};
use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};
use crate::seed::{Stream, derive_seed, permutation};

/// A dataset whose samples are loaded by index.
pub trait Dataset: Send + Sync {
    /// What one index yields (an image and its target, a path, a feature row).
    type Sample: Send;

    /// Number of samples.
    fn len(&self) -> usize;

    /// Whether there are no samples.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Loads sample `index`; `seed` seeds its random augmentation (derived by the loader from
    /// the run seed, the epoch and `index`).
    fn get(&self, index: usize, seed: u64) -> Result<Self::Sample>;
}

/// Turns the samples of one batch into what the task's step takes.
pub trait Collate<S>: Send + Sync {
    /// The batch.
    type Batch: Send;

    /// Combines `samples` (in batch order) into a batch.
    fn collate(&self, samples: Vec<S>) -> Result<Self::Batch>;
}

impl<S, B, F> Collate<S> for F
where
    F: Fn(Vec<S>) -> Result<B> + Send + Sync,
    B: Send,
{
    type Batch = B;

    fn collate(&self, samples: Vec<S>) -> Result<B> {
        self(samples)
    }
}

/// A dataset whose samples are another's, transformed by a function of the sample, its index
/// and its seed ([`DatasetExt::map`]).
#[derive(Debug, Clone)]
pub struct Mapped<D, F, T> {
    inner: D,
    f: F,
    _out: PhantomData<fn() -> T>,
}

impl<D, F, T> Dataset for Mapped<D, F, T>
where
    D: Dataset,
    F: Fn(D::Sample, usize, u64) -> Result<T> + Send + Sync,
    T: Send,
{
    type Sample = T;

    fn len(&self) -> usize {
        self.inner.len()
    }

    fn get(&self, index: usize, seed: u64) -> Result<T> {
        (self.f)(self.inner.get(index, seed)?, index, seed)
    }
}

/// Combinators on datasets.
pub trait DatasetExt: Dataset + Sized {
    /// Applies `f(sample, index, seed)` to every sample.
    fn map<F, T>(self, f: F) -> Mapped<Self, F, T>
    where
        F: Fn(Self::Sample, usize, u64) -> Result<T> + Send + Sync,
        T: Send,
    {
        Mapped {
            inner: self,
            f,
            _out: PhantomData,
        }
    }
}

impl<D: Dataset> DatasetExt for D {}

/// A sample that carries an image which corruptions apply to, and the stable key (a
/// relative path) its corruption seed derives from.
pub trait CorruptibleSample {
    /// The image, 8-bit RGB, before any resizing or normalisation.
    fn image_mut(&mut self) -> &mut RgbImage;
    /// The key of the image in its dataset (a relative path such as `val2017/000139.jpg`,
    /// or `test/00042` for an array dataset).
    fn seed_key(&self) -> PathBuf;
}

/// One corruption at one severity, seeded per image with [`rtb_corruption::image_seed`].
#[derive(Debug, Clone)]
pub struct CorruptionSpec {
    /// The corruptions' implementation (flavor and frost textures).
    pub corruptor: Corruptor,
    /// Which corruption.
    pub corruption: Corruption,
    /// Which severity.
    pub severity: Severity,
    /// The evaluation seed (same seed, same corrupted bytes).
    pub seed: u64,
}

impl CorruptionSpec {
    /// Corrupts the image of `sample` in place with the seed of its key.
    pub fn apply<S: CorruptibleSample>(&self, sample: &mut S, index: usize) -> Result<()> {
        let key = sample.seed_key();
        let mut rng = RandomState::new(image_seed(self.seed, &key, self.corruption, self.severity));
        let corrupted = self
            .corruptor
            .corrupt(sample.image_mut(), self.corruption, self.severity, &mut rng)
            .map_err(|err| TrainError::Data {
                index,
                message: format!(
                    "{} at severity {} on {}: {err}",
                    self.corruption,
                    self.severity,
                    key.display()
                ),
            })?;
        *sample.image_mut() = corrupted;
        Ok(())
    }
}

/// A dataset whose images are corrupted when loaded (evaluation under corruption without a
/// cache). Corruption runs in the loader's workers.
#[derive(Debug, Clone)]
pub struct Corrupted<D> {
    inner: D,
    spec: CorruptionSpec,
}

impl<D> Corrupted<D> {
    /// Corrupts every sample of `inner` with `spec`.
    pub fn new(inner: D, spec: CorruptionSpec) -> Self {
        Self { inner, spec }
    }
}

impl<D> Dataset for Corrupted<D>
where
    D: Dataset,
    D::Sample: CorruptibleSample,
{
    type Sample = D::Sample;

    fn len(&self) -> usize {
        self.inner.len()
    }

    fn get(&self, index: usize, seed: u64) -> Result<D::Sample> {
        let mut sample = self.inner.get(index, seed)?;
        self.spec.apply(&mut sample, index)?;
        Ok(sample)
    }
}

/// How a [`DataLoader`] batches, shuffles and parallelises.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoaderConfig {
    /// Samples per batch.
    pub batch_size: usize,
    /// Draw a new order every epoch (training) or keep index order (evaluation).
    #[serde(default)]
    pub shuffle: bool,
    /// Drop the last batch when it is smaller than `batch_size`.
    #[serde(default)]
    pub drop_last: bool,
    /// Worker threads (0: load in the calling thread).
    #[serde(default = "default_workers")]
    pub workers: usize,
    /// Batches built ahead of the one being consumed, beyond one per worker.
    #[serde(default = "default_prefetch")]
    pub prefetch: usize,
    /// Seed of the order and of the per-sample seeds.
    #[serde(default)]
    pub seed: u64,
}

fn default_workers() -> usize {
    2
}
fn default_prefetch() -> usize {
    2
}

impl Default for LoaderConfig {
    fn default() -> Self {
        Self {
            batch_size: 32,
            shuffle: false,
            drop_last: false,
            workers: default_workers(),
            prefetch: default_prefetch(),
            seed: 0,
        }
    }
}

/// Batches of a dataset, one epoch at a time.
#[derive(Debug)]
pub struct DataLoader<D, C> {
    dataset: Arc<D>,
    collate: Arc<C>,
    cfg: LoaderConfig,
    /// A group per sample (e.g. wide or tall images): shuffled batches hold one group each.
    groups: Option<Arc<Vec<u8>>>,
}

impl<D, C> Clone for DataLoader<D, C> {
    fn clone(&self) -> Self {
        Self {
            dataset: self.dataset.clone(),
            collate: self.collate.clone(),
            cfg: self.cfg.clone(),
            groups: self.groups.clone(),
        }
    }
}

impl<D, C> DataLoader<D, C>
where
    D: Dataset + 'static,
    C: Collate<D::Sample> + 'static,
{
    /// A loader over `dataset`; errors when the batch size is 0.
    pub fn new(dataset: D, collate: C, cfg: LoaderConfig) -> Result<Self> {
        Self::from_arcs(Arc::new(dataset), Arc::new(collate), cfg)
    }

    /// A loader over a shared dataset and collate function.
    pub fn from_arcs(dataset: Arc<D>, collate: Arc<C>, cfg: LoaderConfig) -> Result<Self> {
        if cfg.batch_size == 0 {
            return Err(TrainError::config(
                "loader.batch_size",
                "must be at least 1",
            ));
        }
        Ok(Self {
            dataset,
            collate,
            cfg,
            groups: None,
        })
    }

    /// Groups the samples (`groups[i]` is sample `i`'s, e.g. mmdet's aspect-ratio flag): a
    /// shuffled epoch then fills each batch from one group, as torchvision's
    /// `GroupedBatchSampler` does (walking the shuffled order, a group's batch is emitted
    /// when full; the leftovers of every group end the epoch, in group order). The order
    /// stays a function of the seed and the epoch, so resuming is unchanged. Errors when
    /// `groups` does not have one entry per sample.
    pub fn with_groups(mut self, groups: Vec<u8>) -> Result<Self> {
        if groups.len() != self.dataset.len() {
            return Err(TrainError::config(
                "loader.groups",
                format!("{} groups for {} samples", groups.len(), self.dataset.len()),
            ));
        }
        self.groups = Some(Arc::new(groups));
        Ok(self)
    }

    /// The configuration.
    pub fn config(&self) -> &LoaderConfig {
        &self.cfg
    }

    /// The dataset.
    pub fn dataset(&self) -> &D {
        &self.dataset
    }

    /// Batches per epoch.
    pub fn num_batches(&self) -> usize {
        let len = self.dataset.len();
        if self.cfg.drop_last {
            len / self.cfg.batch_size
        } else {
            len.div_ceil(self.cfg.batch_size)
        }
    }

    /// The dataset indices of epoch `epoch`, in order.
    pub fn order(&self, epoch: usize) -> Vec<usize> {
        let len = self.dataset.len();
        if !self.cfg.shuffle {
            return (0..len).collect();
        }
        let order = permutation(
            len,
            derive_seed(self.cfg.seed, Stream::Order, &[epoch as u64]),
        );
        match &self.groups {
            Some(groups) => group_batches(&order, groups, self.cfg.batch_size),
            None => order,
        }
    }

    /// The seed sample `index` is loaded with in epoch `epoch`.
    pub fn sample_seed(&self, epoch: usize, index: usize) -> u64 {
        derive_seed(self.cfg.seed, Stream::Sample, &[epoch as u64, index as u64])
    }

    /// The batches of epoch `epoch`.
    pub fn epoch(&self, epoch: usize) -> Batches<D::Sample, C::Batch> {
        self.epoch_from(epoch, 0)
    }

    /// The batches of epoch `epoch` from batch `first` on (resuming inside an epoch).
    pub fn epoch_from(&self, epoch: usize, first: usize) -> Batches<D::Sample, C::Batch> {
        let order = self.order(epoch);
        let batch_size = self.cfg.batch_size;
        let end = self.num_batches();
        let plan: Vec<Vec<(usize, u64)>> = (0..end)
            .map(|b| {
                let stop = ((b + 1) * batch_size).min(order.len());
                order[b * batch_size..stop]
                    .iter()
                    .map(|&index| (index, self.sample_seed(epoch, index)))
                    .collect()
            })
            .collect();
        let dataset = self.dataset.clone();
        let collate = self.collate.clone();
        let build: BuildFn<C::Batch> = Arc::new(move |samples: &[(usize, u64)]| {
            let loaded = samples
                .iter()
                .map(|&(index, seed)| dataset.get(index, seed))
                .collect::<Result<Vec<_>>>()?;
            collate.collate(loaded)
        });
        Batches::start(
            Arc::new(plan),
            first.min(end),
            build,
            self.cfg.workers,
            self.cfg.prefetch,
        )
    }
}

/// `order` rearranged so that consecutive runs of `batch_size` share a group where possible
/// ([`DataLoader::with_groups`]).
fn group_batches(order: &[usize], groups: &[u8], batch_size: usize) -> Vec<usize> {
    let mut buckets: BTreeMap<u8, Vec<usize>> = BTreeMap::new();
    let mut out = Vec::with_capacity(order.len());
    for &index in order {
        let bucket = buckets.entry(groups[index]).or_default();
        bucket.push(index);
        if bucket.len() == batch_size {
            out.append(bucket);
        }
    }
    for bucket in buckets.values_mut() {
        out.append(bucket);
    }
    out
}

/// Builds one batch from its `(index, seed)` plan.
type BuildBatch<B> = dyn Fn(&[(usize, u64)]) -> Result<B> + Send + Sync;
type BuildFn<B> = Arc<BuildBatch<B>>;

/// Shared between the consumer and the workers: which batch is claimed next and how far the
/// consumer has got (workers stay within a window ahead of it).
#[derive(Debug)]
struct Window {
    next_claim: usize,
    consumed: usize,
    stop: bool,
}

/// An iterator over one epoch's batches, in order.
pub struct Batches<S, B> {
    plan: Arc<Vec<Vec<(usize, u64)>>>,
    next: usize,
    build: BuildFn<B>,
    workers: Vec<JoinHandle<()>>,
    window: Arc<(Mutex<Window>, Condvar)>,
    receiver: Option<Receiver<(usize, Result<B>)>>,
    ready: BTreeMap<usize, Result<B>>,
    _sample: PhantomData<fn() -> S>,
}

impl<S, B> std::fmt::Debug for Batches<S, B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batches")
            .field("next", &self.next)
            .field("batches", &self.plan.len())
            .field("workers", &self.workers.len())
            .finish()
    }
}

impl<S, B: Send + 'static> Batches<S, B> {
    fn start(
        plan: Arc<Vec<Vec<(usize, u64)>>>,
        first: usize,
        build: BuildFn<B>,
        workers: usize,
        prefetch: usize,
    ) -> Self {
        let window = Arc::new((
            Mutex::new(Window {
                next_claim: first,
                consumed: first,
                stop: false,
            }),
            Condvar::new(),
        ));
        let mut handles = Vec::with_capacity(workers);
        let mut receiver = None;
        if workers > 0 {
            let (sender, rx) = channel();
            receiver = Some(rx);
            let ahead = workers + prefetch;
            for worker in 0..workers {
                let plan = plan.clone();
                let build = build.clone();
                let window = window.clone();
                let sender: Sender<(usize, Result<B>)> = sender.clone();
                let handle = std::thread::Builder::new()
                    .name(format!("rtb-loader-{worker}"))
                    .spawn(move || worker_loop(&plan, &*build, &window, &sender, ahead))
                    .expect("spawning a loader thread");
                handles.push(handle);
            }
        }
        Self {
            plan,
            next: first,
            build,
            workers: handles,
            window,
            receiver,
            ready: BTreeMap::new(),
            _sample: PhantomData,
        }
    }
}

fn worker_loop<B>(
    plan: &[Vec<(usize, u64)>],
    build: &BuildBatch<B>,
    window: &(Mutex<Window>, Condvar),
    sender: &Sender<(usize, Result<B>)>,
    ahead: usize,
) {
    loop {
        let claimed = {
            let (lock, condvar) = window;
            let Ok(mut state) = lock.lock() else { return };
            loop {
                if state.stop || state.next_claim >= plan.len() {
                    return;
                }
                if state.next_claim < state.consumed + ahead {
                    break;
                }
                state = match condvar.wait(state) {
                    Ok(state) => state,
                    Err(_) => return,
                };
            }
            state.next_claim += 1;
            state.next_claim - 1
        };
        let result = build(&plan[claimed]);
        if sender.send((claimed, result)).is_err() {
            return;
        }
    }
}

impl<S, B> Batches<S, B> {
    /// Batches left in this epoch.
    pub fn remaining(&self) -> usize {
        self.plan.len() - self.next
    }

    /// The dataset indices of the batch that `next` will return.
    pub fn next_indices(&self) -> Option<Vec<usize>> {
        self.plan
            .get(self.next)
            .map(|b| b.iter().map(|&(i, _)| i).collect())
    }

    fn advance(&mut self) {
        self.next += 1;
        let (lock, condvar) = &*self.window;
        if let Ok(mut state) = lock.lock() {
            state.consumed = self.next;
        }
        condvar.notify_all();
    }
}

impl<S, B> Iterator for Batches<S, B> {
    type Item = Result<B>;

    fn next(&mut self) -> Option<Result<B>> {
        if self.next >= self.plan.len() {
            return None;
        }
        let Some(receiver) = &self.receiver else {
            let batch = (self.build)(&self.plan[self.next]);
            self.advance();
            return Some(batch);
        };
        loop {
            if let Some(batch) = self.ready.remove(&self.next) {
                self.advance();
                return Some(batch);
            }
            match receiver.recv() {
                Ok((index, batch)) => {
                    self.ready.insert(index, batch);
                }
                Err(_) => {
                    // Every worker has gone: only possible if one panicked.
                    let index = self.next;
                    self.next = self.plan.len();
                    return Some(Err(TrainError::Data {
                        index,
                        message: "a loader worker thread panicked".into(),
                    }));
                }
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining(), Some(self.remaining()))
    }
}

impl<S, B> Drop for Batches<S, B> {
    fn drop(&mut self) {
        let (lock, condvar) = &*self.window;
        if let Ok(mut state) = lock.lock() {
            state.stop = true;
        }
        condvar.notify_all();
        // Workers finish the batch they are building, then see `stop`.
        self.receiver = None;
        for handle in self.workers.drain(..) {
            let _ = handle.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sample `i` is `(i, seed)`; loading sleeps a little for some indices so that workers
    /// finish out of order.
    struct Numbers(usize);

    impl Dataset for Numbers {
        type Sample = (usize, u64);
        fn len(&self) -> usize {
            self.0
        }
        fn get(&self, index: usize, seed: u64) -> Result<(usize, u64)> {
            if index % 7 == 3 {
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            if index == usize::MAX {
                return Err(TrainError::Data {
                    index,
                    message: "never".into(),
                });
            }
            Ok((index, seed))
        }
    }

    fn collect(workers: usize, epoch: usize, first: usize) -> Vec<Vec<(usize, u64)>> {
        let cfg = LoaderConfig {
            batch_size: 4,
            shuffle: true,
            workers,
            prefetch: 1,
            seed: 11,
            ..LoaderConfig::default()
        };
        let loader =
            DataLoader::new(Numbers(30), |samples: Vec<(usize, u64)>| Ok(samples), cfg).unwrap();
        loader
            .epoch_from(epoch, first)
            .collect::<Result<Vec<_>>>()
            .unwrap()
    }

    #[test]
    fn grouped_batches_hold_one_group_and_every_index_once() {
        let cfg = LoaderConfig {
            batch_size: 4,
            shuffle: true,
            workers: 0,
            seed: 3,
            ..LoaderConfig::default()
        };
        // 30 samples: multiples of 3 are group 1 (10 of them), the rest group 0 (20).
        let groups: Vec<u8> = (0..30).map(|i| u8::from(i % 3 == 0)).collect();
        let loader = DataLoader::new(Numbers(30), |s: Vec<(usize, u64)>| Ok(s), cfg)
            .unwrap()
            .with_groups(groups.clone())
            .unwrap();
        for epoch in 0..3 {
            let order = loader.order(epoch);
            let mut sorted = order.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, (0..30).collect::<Vec<_>>());
            // Group 0 fills 5 batches, group 1 two (and a leftover of 2 at the end).
            let pure = order
                .chunks(4)
                .filter(|b| b.iter().all(|&i| groups[i] == groups[b[0]]))
                .count();
            assert!(pure >= 7, "epoch {epoch}: {pure} single-group batches");
            assert_eq!(
                order,
                loader.order(epoch),
                "the order is a function of the epoch"
            );
        }
        assert_ne!(loader.order(0), loader.order(1));
        assert!(
            DataLoader::new(
                Numbers(3),
                |s: Vec<(usize, u64)>| Ok(s),
                LoaderConfig::default()
            )
            .unwrap()
            .with_groups(vec![0])
            .is_err()
        );
    }

    #[test]
    fn order_and_seeds_do_not_depend_on_the_worker_count() {
        let serial = collect(0, 1, 0);
        assert_eq!(serial.len(), 8);
        assert_eq!(serial.last().unwrap().len(), 2);
        for workers in [1, 2, 5] {
            assert_eq!(collect(workers, 1, 0), serial, "{workers} workers");
        }
        // Every index once.
        let mut seen: Vec<usize> = serial.iter().flatten().map(|&(i, _)| i).collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..30).collect::<Vec<_>>());
        // Another epoch, another order and other sample seeds.
        let other = collect(2, 2, 0);
        assert_ne!(other, serial);
        // Resuming at batch 3 gives the tail of the same epoch.
        assert_eq!(collect(3, 1, 3), serial[3..].to_vec());
    }

    #[test]
    fn dropping_an_epoch_early_stops_the_workers() {
        let cfg = LoaderConfig {
            batch_size: 2,
            workers: 3,
            ..LoaderConfig::default()
        };
        let loader = DataLoader::new(Numbers(100), |s: Vec<(usize, u64)>| Ok(s), cfg).unwrap();
        let mut batches = loader.epoch(0);
        assert_eq!(batches.next().unwrap().unwrap()[0].0, 0);
        assert_eq!(batches.remaining(), 49);
        drop(batches);
    }

    #[test]
    fn errors_of_a_sample_reach_the_consumer() {
        struct Failing;
        impl Dataset for Failing {
            type Sample = ();
            fn len(&self) -> usize {
                5
            }
            fn get(&self, index: usize, _seed: u64) -> Result<()> {
                if index == 3 {
                    Err(TrainError::Data {
                        index,
                        message: "broken file x.png".into(),
                    })
                } else {
                    Ok(())
                }
            }
        }
        for workers in [0, 2] {
            let cfg = LoaderConfig {
                batch_size: 2,
                workers,
                ..LoaderConfig::default()
            };
            let loader = DataLoader::new(Failing, |s: Vec<()>| Ok(s.len()), cfg).unwrap();
            let results: Vec<_> = loader.epoch(0).collect();
            assert!(results[0].is_ok());
            let err = results[1].as_ref().unwrap_err().to_string();
            assert!(err.contains("sample 3") && err.contains("x.png"), "{err}");
        }
    }
}
