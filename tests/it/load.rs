//! Client load for the swap tests (database, Redis bus): matchers and a writer that run until
//! stopped, counting what succeeded and what failed, so a test can prove a swap under load
//! dropped no request. `settled_around` makes sure the load really spans the swap: requests
//! succeeded before it began and keep succeeding after it returned.

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicBool, AtomicUsize, Ordering},
};

use tokio::task::JoinHandle;

use crate::helpers::{TestApp, eventually, learn_req, match_req};

/// Running load against one server.
pub struct Load {
    stop: Arc<AtomicBool>,
    counts: Arc<Counts>,
    tasks: Vec<JoinHandle<()>>,
}

/// What the load saw.
#[derive(Default)]
pub struct Counts {
    /// Requests that succeeded.
    pub ok: AtomicUsize,
    /// Requests that failed.
    pub failed: AtomicUsize,
    /// Writes that succeeded but said their bus announcement failed.
    pub publish_errors: AtomicUsize,
    /// The first few errors, for the failure message.
    pub errors: Mutex<Vec<String>>,
}

impl Counts {
    fn record<T>(&self, r: Result<T, tonic::Status>) -> Option<T> {
        match r {
            Ok(v) => {
                self.ok.fetch_add(1, Ordering::Relaxed);
                Some(v)
            }
            Err(e) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                let mut errors = self.errors.lock().unwrap_or_else(|e| e.into_inner());
                if errors.len() < 5 {
                    errors.push(e.to_string());
                }
                None
            }
        }
    }
}

impl Load {
    /// Starts `matchers` tasks matching `query` in a loop, and one writer learning a new
    /// pattern (`<prefix> <n>`) in a loop.
    pub fn start(app: &TestApp, matchers: usize, query: &str, prefix: &str) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let counts = Arc::new(Counts::default());
        let mut tasks = Vec::new();
        for _ in 0..matchers {
            let (mut client, stop, counts) = (app.patterns.clone(), stop.clone(), counts.clone());
            let query = query.to_owned();
            tasks.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    counts.record(client.match_pattern(match_req(&query)).await);
                }
            }));
        }
        let (mut client, stop_w, counts_w) = (app.patterns.clone(), stop.clone(), counts.clone());
        let prefix = prefix.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop_w.load(Ordering::Relaxed) {
                n += 1;
                let learned = client
                    .learn_pattern(learn_req(&format!("{prefix} {n}"), "w", 0.95))
                    .await;
                if let Some(r) = counts_w.record(learned)
                    && !r.into_inner().publish_error.is_empty()
                {
                    counts_w.publish_errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
        Load {
            stop,
            counts,
            tasks,
        }
    }

    /// Requests that succeeded so far.
    pub fn ok(&self) -> usize {
        self.counts.ok.load(Ordering::Relaxed)
    }

    /// Waits until `n` more requests succeeded than now.
    pub async fn more(&self, n: usize) {
        let target = self.ok() + n;
        eventually("the load to make progress", || async {
            (self.ok() >= target).then_some(())
        })
        .await;
    }

    /// Runs `swap` with load before and after it: waits for `n` requests before calling it,
    /// and for `n` more after it returned. Returns what `swap` returned.
    pub async fn around<T>(&self, n: usize, swap: impl Future<Output = T>) -> T {
        self.more(n).await;
        let out = swap.await;
        self.more(n).await;
        out
    }

    /// Stops the load and returns its counts.
    pub async fn stop(self) -> Arc<Counts> {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            task.await.expect("load task");
        }
        self.counts
    }
}

impl Counts {
    /// Asserts that nothing failed and that requests ran.
    #[track_caller]
    pub fn assert_none_failed(&self) {
        let errors = self.errors.lock().unwrap_or_else(|e| e.into_inner());
        assert_eq!(
            self.failed.load(Ordering::Relaxed),
            0,
            "requests failed during the swap: {errors:?}"
        );
        assert!(self.ok.load(Ordering::Relaxed) > 0, "the load ran");
    }
}
