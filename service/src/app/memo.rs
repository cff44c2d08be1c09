//! Sums of stored rollups, kept by what they were computed from.
//!
//! A run's rollups are written in the run's own transaction and never
//! change after it commits; runs are superseded, never edited. So the
//! current runs a window reads (their ids), the window and the question
//! name the answer exactly: a later run changes the ids, and with them the
//! key. Nothing is invalidated and nothing can be stale. The first view of
//! a month after a run reads its rollups (tens of thousands of rows for a
//! month of a busy gateway); the views after it read none (issue 21).

use std::any::Any;
use std::sync::{Arc, Mutex, PoisonError};

/// Answers kept, most recently used first.
const CAPACITY: usize = 64;

type Entry = (String, Arc<dyn Any + Send + Sync>);

/// A bounded store of answers by key; one per process, shared by requests.
#[derive(Default)]
pub struct Memo {
    entries: Mutex<Vec<Entry>>,
}

impl std::fmt::Debug for Memo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Memo").finish_non_exhaustive()
    }
}

/// The key of an answer over `window` from `runs` (the current runs whose
/// rollups answer for it), for `question`.
pub fn key(question: &str, window: (i64, i64), runs: &[i64]) -> String {
    format!("{question}|{}|{}|{runs:?}", window.0, window.1)
}

impl Memo {
    /// The answer kept under `key`, or `compute`'s, then kept. Two requests
    /// that miss together both compute; the answers are the same.
    pub fn get_or<T: Any + Send + Sync, E>(
        &self,
        key: String,
        compute: impl FnOnce() -> Result<T, E>,
    ) -> Result<Arc<T>, E> {
        if let Some(hit) = self.get(&key) {
            return Ok(hit);
        }
        let answer = Arc::new(compute()?);
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.retain(|(k, _)| *k != key);
        entries.insert(0, (key, answer.clone()));
        entries.truncate(CAPACITY);
        Ok(answer)
    }

    fn get<T: Any + Send + Sync>(&self, key: &str) -> Option<Arc<T>> {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let at = entries.iter().position(|(k, _)| k == key)?;
        let entry = entries.remove(at);
        let hit = entry.1.clone().downcast::<T>().ok();
        entries.insert(0, entry);
        hit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_is_computed_once_per_key_and_the_oldest_leave_first() {
        let memo = Memo::default();
        let mut computed = 0;
        for _ in 0..3 {
            let v = memo
                .get_or::<_, ()>(key("costs", (0, 1), &[1, 2]), || {
                    computed += 1;
                    Ok(vec![7])
                })
                .unwrap();
            assert_eq!(*v, vec![7]);
        }
        assert_eq!(computed, 1);
        // Another run set is another answer.
        let v = memo
            .get_or::<_, ()>(key("costs", (0, 1), &[1, 3]), || Ok(vec![8]))
            .unwrap();
        assert_eq!(*v, vec![8]);
        // A failed computation keeps nothing.
        assert!(
            memo.get_or::<Vec<i32>, _>(key("x", (0, 1), &[]), || Err(()))
                .is_err()
        );
        assert!(memo.get::<Vec<i32>>(&key("x", (0, 1), &[])).is_none());
        // Past capacity, the least recently used leave.
        for i in 0..CAPACITY {
            memo.get_or::<_, ()>(key("fill", (0, 1), &[i as i64]), || Ok(i))
                .unwrap();
            // Keep the first answer in use.
            assert!(
                memo.get::<Vec<i32>>(&key("costs", (0, 1), &[1, 2]))
                    .is_some()
            );
        }
        assert!(
            memo.get::<Vec<i32>>(&key("costs", (0, 1), &[1, 3]))
                .is_none()
        );
        assert!(
            memo.get::<Vec<i32>>(&key("costs", (0, 1), &[1, 2]))
                .is_some()
        );
    }
}
