//! Work that must not compete with requests: reading and packing a full load, building a
//! snapshot. It runs on a thread of its own at a lower CPU priority (nice +[`NICE`]), so on a
//! busy machine the threads that answer requests are scheduled first and a reload takes the
//! CPU they leave; on an idle one it runs at full speed. Threads it starts (e.g. a second
//! reader) inherit the priority.
//!
//! Linux sets the nice value per thread (through `rustix`); elsewhere the priority is left as
//! it is.

/// How much lower than the process the background threads run: CFS gives a nice-10 thread
/// about a tenth of the CPU weight of a nice-0 one. Measured with `hotplane-bench
/// reload-under-load` (BENCHMARKS.md): +10 hurt match p99 least of 0, +5 and +10, and made a
/// 100 k reload on a saturated machine take ~1.5x as long.
pub const NICE: i32 = 10;

/// Starts `f` at once on a new thread named `name` at the lower priority; the returned future
/// gives its result. `Err` when the thread could not start or `f` panicked.
pub fn run<T: Send + 'static>(
    name: &'static str,
    f: impl FnOnce() -> T + Send + 'static,
) -> impl std::future::Future<Output = Result<T, String>> {
    let (done, result) = tokio::sync::oneshot::channel();
    let started = std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            lower_priority();
            let _ = done.send(f());
        })
        .map_err(|e| format!("starting the {name} thread: {e}"));
    async move {
        started?;
        result
            .await
            .map_err(|_| format!("the {name} thread panicked"))
    }
}

/// Lowers the calling thread's priority by [`NICE`] (best effort).
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        use rustix::process::{getpriority_process, setpriority_process};
        // On Linux, the nice value of a thread id is that thread's alone.
        let me = Some(rustix::thread::gettid());
        if let Ok(now) = getpriority_process(me) {
            let _ = setpriority_process(me, now + NICE);
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    /// The nice value of the calling thread.
    fn nice() -> i32 {
        rustix::process::getpriority_process(Some(rustix::thread::gettid())).expect("nice")
    }

    /// The work runs, on another thread, at a nice value NICE above the caller's.
    #[tokio::test]
    async fn work_runs_on_its_own_thread_at_a_lower_priority() {
        let here = (std::thread::current().id(), nice());
        let there = super::run("hotplane-test", move || {
            (std::thread::current().id(), nice())
        })
        .await
        .expect("ran");
        assert_ne!(there.0, here.0);
        assert_eq!(there.1, (here.1 + super::NICE).min(19));
        // It starts before its result is awaited (a caller may feed it through a channel
        // first): this waits for the work to run, and hangs if it only starts when awaited.
        let (ran, running) = std::sync::mpsc::channel();
        let work = super::run("hotplane-test", move || ran.send(()).expect("sent"));
        running.recv().expect("ran before it was awaited");
        assert_eq!(work.await, Ok(()));
        let panicked = super::run("hotplane-test", || panic!("on purpose")).await;
        assert!(panicked.is_err());
    }
}
