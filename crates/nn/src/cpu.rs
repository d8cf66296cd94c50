//! How a program should run rtb's CPU ops: on a worker thread of one rayon pool.
//!
//! rtb-nn's kernels and candle's matmul split their work with rayon. Called from a thread
//! outside the pool, every parallel section is a hand-off: the caller queues the work, wakes a
//! worker and sleeps until it is done, two context switches per op. On a small network (the
//! mini ResNet's training step runs some hundred ops on tensors of a few kilobytes) those
//! hand-offs cost more than the arithmetic. Run on a pool worker, a section starts on the
//! calling thread and the other workers steal its halves: [`on_compute_pool`].
//!
//! candle 0.11 also keeps a second pool of its own for elementwise ops, sized by the
//! `CANDLE_NUM_THREADS` environment variable (default: one thread per core), whose workers
//! spin between ops. On a few cores those spinning threads take the cores from rayon's
//! workers; rtb's binaries set `CANDLE_NUM_THREADS=1` (no second pool) unless the user set it,
//! which [`CANDLE_THREADS_VARIABLE`] names. BENCHMARKS.md (rtb-cifar) has what each bought.
//!
//! ```
//! let sum: u64 = rtb_nn::cpu::on_compute_pool(|| (1..=10u64).sum()).unwrap();
//! assert_eq!(sum, 55);
//! ```

/// The environment variable that sizes candle's own elementwise thread pool; read once, when
/// candle first needs the pool, so a binary sets it before any tensor op.
pub const CANDLE_THREADS_VARIABLE: &str = "CANDLE_NUM_THREADS";

/// Runs `work` on a worker of a new rayon pool (as many threads as rayon's global pool would
/// have: `RAYON_NUM_THREADS`, else one per core) and returns its result. Parallel sections
/// inside `work` use this pool. Threads that `work` starts itself (data loaders) stay outside
/// it and use rayon's global pool, so a loader never waits for a worker that waits for it.
pub fn on_compute_pool<R: Send>(
    work: impl FnOnce() -> R + Send,
) -> Result<R, rayon::ThreadPoolBuildError> {
    let pool = rayon::ThreadPoolBuilder::new()
        .thread_name(|index| format!("rtb-compute-{index}"))
        .build()?;
    Ok(pool.install(work))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_runs_on_a_pool_worker_with_the_global_thread_count() {
        let (inside, threads) =
            on_compute_pool(|| (rayon::current_thread_index(), rayon::current_num_threads()))
                .unwrap();
        assert!(inside.is_some(), "the work ran outside the pool");
        assert_eq!(
            threads,
            rayon::ThreadPoolBuilder::new()
                .build()
                .unwrap()
                .current_num_threads()
        );
        assert!(rayon::current_thread_index().is_none());
    }
}
