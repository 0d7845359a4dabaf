//! Data parallelism for the native twins on bevy_tasks' compute pool.

use bevy_tasks::{ComputeTaskPool, TaskPool};

/// `f(0..count)` on the compute pool, results in index order.
pub fn map<T: Send + 'static>(count: usize, f: impl Fn(usize) -> T + Sync) -> Vec<T> {
    let pool = ComputeTaskPool::get_or_init(TaskPool::default);
    let f = &f;
    pool.scope(|scope| {
        for i in 0..count {
            scope.spawn(async move { f(i) });
        }
    })
}
