//! Two cores, without a thread pool: the engine's parallel steps are all
//! "this half here, that half there".

/// Below this many rows a second thread costs more than it saves (a
/// spawn is tens of microseconds; the server reconciles many small days).
pub(crate) const MIN_PARALLEL_ROWS: usize = 8_192;

/// Runs `a` on a second thread and `b` on this one; returns both results.
/// `rows` is the work's size: under [`MIN_PARALLEL_ROWS`] both run here.
/// A panic in `a` is raised again here: an empty result standing in for a
/// crashed half would silently unmatch every row it held.
pub(crate) fn join<A: Send, B>(
    rows: usize,
    a: impl FnOnce() -> A + Send,
    b: impl FnOnce() -> B,
) -> (A, B) {
    if rows < MIN_PARALLEL_ROWS {
        let first = a();
        return (first, b());
    }
    std::thread::scope(|s| {
        let first = s.spawn(a);
        let second = b();
        (
            first
                .join()
                .unwrap_or_else(|e| std::panic::resume_unwind(e)),
            second,
        )
    })
}

/// `f` over `0..n`, in order, the first half on a second thread.
pub(crate) fn map_halves<T: Send>(n: usize, f: impl Fn(usize) -> T + Sync) -> Vec<T> {
    let mid = n / 2;
    let (mut first, second) = join(
        n,
        || (0..mid).map(&f).collect::<Vec<_>>(),
        || (mid..n).map(&f).collect::<Vec<_>>(),
    );
    first.extend(second);
    first
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn halves_come_back_in_order() {
        for n in [0, 1, 2, 7, 1000, MIN_PARALLEL_ROWS + 3] {
            assert_eq!(
                map_halves(n, |i| i * 3),
                (0..n).map(|i| i * 3).collect::<Vec<_>>()
            );
        }
    }

    #[test]
    fn a_panic_on_the_other_thread_is_not_swallowed() {
        let r = std::panic::catch_unwind(|| {
            join(
                MIN_PARALLEL_ROWS,
                || -> Vec<u8> { panic!("half failed") },
                || 1,
            )
        });
        assert!(r.is_err());
    }
}
