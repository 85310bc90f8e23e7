//! Work that can wait until a proxy thread has written out what it holds: recording a finished
//! request. hyper ends a response body before it writes the last bytes, so work done at that
//! moment delays them; queued here, it runs in one task per thread right after (a spawned task
//! per request would cost several times the queueing).

use std::cell::RefCell;
use std::future::poll_fn;
use std::task::{Poll, Waker};

type Job = Box<dyn FnOnce() + Send>;

#[derive(Default)]
struct Queue {
    jobs: Vec<Job>,
    runner: Option<Waker>,
}

thread_local! {
    static QUEUE: RefCell<Queue> = RefCell::new(Queue::default());
}

/// Queues `job` for this thread's runner; without one (not a proxy thread), runs it now.
pub fn defer(job: impl FnOnce() + Send + 'static) {
    let job: Job = Box::new(job);
    let queued = QUEUE.with(|q| {
        let Ok(mut q) = q.try_borrow_mut() else {
            return Some(job);
        };
        match q.runner.as_ref() {
            Some(runner) => {
                runner.wake_by_ref();
                q.jobs.push(job);
                None
            }
            None => Some(job),
        }
    });
    if let Some(job) = queued {
        job();
    }
}

/// Runs the queued jobs of this thread, for as long as the thread serves.
pub async fn run() {
    let mut batch = Vec::new();
    poll_fn(|cx| {
        QUEUE.with(|q| {
            if let Ok(mut q) = q.try_borrow_mut() {
                std::mem::swap(&mut q.jobs, &mut batch);
                if q.runner.as_ref().is_none_or(|w| !w.will_wake(cx.waker())) {
                    q.runner = Some(cx.waker().clone());
                }
            }
        });
        // Outside the borrow: a job may queue another.
        for job in batch.drain(..) {
            job();
        }
        Poll::<()>::Pending
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[test]
    fn jobs_run_now_without_a_runner_and_later_with_one() {
        let done = Arc::new(Mutex::new(Vec::new()));
        let d = done.clone();
        defer(move || d.lock().unwrap().push(1));
        assert_eq!(*done.lock().unwrap(), [1]);

        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime");
        runtime.block_on(async move {
            tokio::spawn(run());
            tokio::task::yield_now().await;
            let d = done.clone();
            defer(move || d.lock().unwrap().push(2));
            // Queued, not run in place.
            assert_eq!(*done.lock().unwrap(), [1]);
            tokio::task::yield_now().await;
            assert_eq!(*done.lock().unwrap(), [1, 2]);
        });
    }
}
