//! Figures that read a large part of the database (the day's totals, the reports, the tier
//! distribution, a campaign's report and preview, a cycle's reconciliation): computed off the
//! request, kept for a while, and shown with the time they were computed, so every page answers
//! at once whatever the size of the network.
//!
//! [`Computed::get`] answers the kept value when there is one (and, once it is older than the
//! cache's time to live, starts one task that computes it again while the older one is shown),
//! or [`Shown::Pending`] while the first computation runs: the page then says so and reloads
//! itself. [`Computed::get_or_wait`] waits for the first computation instead (for figures that
//! are quick enough the first time; a computation already running, e.g. one started when the
//! switch started, is waited for rather than run twice). Each cache holds at most
//! [`ENTRIES_MAX`] keys.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::clock::Clock;

/// Keys one cache holds at most; past it the oldest value is dropped.
pub const ENTRIES_MAX: usize = 1_000;
/// How long [`Computed::get_or_wait`] waits for a value: 60 s.
pub const WAIT_MAX: Duration = Duration::from_secs(60);

/// What a page shows of a computed figure.
#[derive(Debug)]
pub enum Shown<V> {
    /// The newest value, computed at `at_ms`.
    Ready {
        /// The value.
        value: Arc<V>,
        /// When it was computed (the switch's clock).
        at_ms: i64,
    },
    /// The first computation runs since `since_ms`.
    Pending {
        /// When it started.
        since_ms: i64,
    },
    /// The last computation failed (and there is no value yet).
    Failed(String),
}

/// A value and when it was computed.
type Kept<V> = Option<(i64, Arc<V>)>;

#[derive(Debug)]
struct Entry<V> {
    value: Kept<V>,
    running_since: Option<i64>,
    error: Option<String>,
}

impl<V> Default for Entry<V> {
    fn default() -> Self {
        Entry {
            value: None,
            running_since: None,
            error: None,
        }
    }
}

/// Values by key, each recomputed once older than the time to live.
#[derive(Debug)]
pub struct Computed<K, V> {
    name: &'static str,
    ttl_ms: i64,
    entries: Mutex<HashMap<K, Entry<V>>>,
    /// Woken whenever a computation ends (any key's).
    stored: tokio::sync::Notify,
}

impl<K, V> Computed<K, V>
where
    K: Eq + Hash + Clone + Send + 'static,
    V: Send + Sync + 'static,
{
    /// A cache of `name` (in its log lines) whose values are recomputed once older than
    /// `ttl_ms`.
    pub fn new(name: &'static str, ttl_ms: i64) -> Computed<K, V> {
        Computed {
            name,
            ttl_ms,
            entries: Mutex::new(HashMap::new()),
            stored: tokio::sync::Notify::new(),
        }
    }

    /// Keeps the outcome of `key`'s computation, then wakes whoever waits for one.
    fn store(&self, key: K, at_ms: i64, result: Result<V, String>) {
        {
            let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
            if entries.len() >= ENTRIES_MAX && !entries.contains_key(&key) {
                let oldest = entries
                    .iter()
                    .min_by_key(|(_, e)| e.value.as_ref().map_or(i64::MIN, |(at, _)| *at))
                    .map(|(k, _)| k.clone());
                if let Some(oldest) = oldest {
                    entries.remove(&oldest);
                }
            }
            let entry = entries.entry(key).or_default();
            entry.running_since = None;
            match result {
                Ok(value) => {
                    entry.value = Some((at_ms, Arc::new(value)));
                    entry.error = None;
                }
                Err(error) => entry.error = Some(error),
            }
        }
        self.stored.notify_waiters();
    }

    /// Marks `key` as computing unless it is computing already or fresh; the kept value.
    fn claim(&self, key: &K, now_ms: i64) -> (Kept<V>, bool, Option<String>) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = entries.entry(key.clone()).or_default();
        let fresh = entry
            .value
            .as_ref()
            .is_some_and(|(at, _)| now_ms - at < self.ttl_ms);
        let start = !fresh && entry.running_since.is_none();
        if start {
            entry.running_since = Some(now_ms);
        }
        let error = if start { None } else { entry.error.clone() };
        (entry.value.clone(), start, error)
    }

    fn running_since(&self, key: &K) -> Option<i64> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.get(key).and_then(|e| e.running_since)
    }

    /// The value of `key` to show now; `compute` runs in a task when there is none or it is
    /// stale (and no computation of it runs already).
    pub fn get<F>(self: &Arc<Self>, key: K, clock: &Arc<dyn Clock>, compute: F) -> Shown<V>
    where
        F: Future<Output = Result<V, String>> + Send + 'static,
    {
        let now = clock.now().get();
        let (kept, start, error) = self.claim(&key, now);
        if start {
            let (cache, clock, key) = (self.clone(), clock.clone(), key.clone());
            tokio::spawn(async move {
                let started = std::time::Instant::now();
                let result = compute.await;
                let elapsed_ms = started.elapsed().as_millis();
                match &result {
                    Ok(_) => tracing::info!(figures = cache.name, elapsed_ms, "console: computed"),
                    Err(cause) => {
                        tracing::warn!(figures = cache.name, %cause, "console: not computed");
                    }
                }
                cache.store(key, clock.now().get(), result);
            });
        }
        match (kept, error) {
            (Some((at_ms, value)), _) => Shown::Ready { value, at_ms },
            (None, Some(error)) if !start => Shown::Failed(error),
            (None, _) => Shown::Pending {
                since_ms: self.running_since(&key).unwrap_or(now),
            },
        }
    }

    /// As [`get`](Self::get), but when there is no value yet this waits for the computation
    /// (the one running already, or the one this call starts), at most [`WAIT_MAX`].
    ///
    /// # Errors
    /// The first computation's error, or that it did not end within [`WAIT_MAX`].
    pub async fn get_or_wait<F>(
        self: &Arc<Self>,
        key: K,
        clock: &Arc<dyn Clock>,
        compute: F,
    ) -> Result<(Arc<V>, i64), String>
    where
        F: Future<Output = Result<V, String>> + Send + 'static,
    {
        // Listening before looking: a value stored between the look and the wait wakes it.
        let stored = self.stored.notified();
        tokio::pin!(stored);
        stored.as_mut().enable();
        match self.get(key.clone(), clock, compute) {
            Shown::Ready { value, at_ms } => return Ok((value, at_ms)),
            Shown::Failed(error) => return Err(error),
            Shown::Pending { .. } => {}
        }
        let deadline = tokio::time::Instant::now() + WAIT_MAX;
        loop {
            if tokio::time::timeout_at(deadline, stored.as_mut())
                .await
                .is_err()
            {
                return Err(format!(
                    "the {} figures were not computed within {} s",
                    self.name,
                    WAIT_MAX.as_secs()
                ));
            }
            stored.set(self.stored.notified());
            stored.as_mut().enable();
            let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
            let Some(entry) = entries.get(&key) else {
                return Err(format!("the {} figures were dropped", self.name));
            };
            if let Some((at_ms, value)) = &entry.value {
                return Ok((value.clone(), *at_ms));
            }
            if entry.running_since.is_none() {
                return Err(entry
                    .error
                    .clone()
                    .unwrap_or_else(|| format!("the {} figures were not computed", self.name)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::domain::UnixMillis;

    #[tokio::test]
    async fn pending_then_ready_then_refreshed_in_the_background() {
        let manual = Arc::new(ManualClock::new(UnixMillis::new(1_000)));
        let clock: Arc<dyn Clock> = manual.clone();
        let cache: Arc<Computed<&str, i64>> = Arc::new(Computed::new("test", 100));
        assert!(matches!(
            cache.get("k", &clock, async { Ok(1) }),
            Shown::Pending { since_ms: 1_000 }
        ));
        tokio::task::yield_now().await;
        for _ in 0..100 {
            if let Shown::Ready { value, .. } = cache.get("k", &clock, async { Ok(9) }) {
                assert_eq!(*value, 1, "fresh: not computed again");
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        manual.advance(200);
        // Stale: the old value is shown while the new one is computed.
        match cache.get("k", &clock, async { Ok(2) }) {
            Shown::Ready { value, .. } => assert_eq!(*value, 1),
            other => unreachable!("{other:?}"),
        }
        let mut seen = 0;
        for _ in 0..100 {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            if let Shown::Ready { value, .. } = cache.get("k", &clock, async { Ok(3) }) {
                seen = *value;
                if seen == 2 {
                    break;
                }
            }
        }
        assert_eq!(seen, 2);
    }

    #[tokio::test]
    async fn waited_for_the_first_time_and_failures_shown() {
        let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(UnixMillis::new(0)));
        let cache: Arc<Computed<u8, i64>> = Arc::new(Computed::new("test", 100));
        let (value, at) = cache
            .get_or_wait(1, &clock, async { Ok(7) })
            .await
            .unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!((*value, at), (7, 0));
        assert!(cache
            .get_or_wait(2, &clock, async { Err("no".to_owned()) })
            .await
            .is_err());
        assert!(matches!(
            cache.get(2, &clock, async { Ok(1) }),
            Shown::Pending { .. }
        ));
    }

    #[tokio::test]
    async fn a_running_computation_is_waited_for_not_run_again() {
        let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(UnixMillis::new(5)));
        let cache: Arc<Computed<(), i64>> = Arc::new(Computed::new("test", 1_000));
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        // Started as the switch starts: still running when the first page asks.
        assert!(matches!(
            cache.get((), &clock, async move {
                released.await.map_err(|e| e.to_string())?;
                Ok(1)
            }),
            Shown::Pending { .. }
        ));
        let runs = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let (cache, clock, runs) = (cache.clone(), clock.clone(), runs.clone());
                tokio::spawn(async move {
                    cache
                        .get_or_wait((), &clock, async move {
                            runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            Ok(2)
                        })
                        .await
                })
            })
            .collect();
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(waiters.iter().all(|w| !w.is_finished()), "they wait");
        release.send(()).unwrap_or_else(|()| unreachable!());
        for waiter in waiters {
            let shown = waiter.await.unwrap_or_else(|e| unreachable!("{e}"));
            let (value, at) = shown.unwrap_or_else(|e| unreachable!("{e}"));
            assert_eq!((*value, at), (1, 5), "the running computation's value");
        }
        assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 0);
    }
}
