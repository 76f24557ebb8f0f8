//! The store on its own thread, for async callers: the runtime hands it a closure and awaits
//! the answer, so a slow SD card never stalls the scheduler or the HTTP server.

use std::sync::mpsc;
use std::thread;

use tokio::sync::oneshot;

use super::Store;

type Job = Box<dyn FnOnce(&mut Store) + Send>;

#[derive(Clone)]
pub struct StoreHandle {
    jobs: mpsc::Sender<Job>,
}

impl StoreHandle {
    pub fn spawn(mut store: Store) -> StoreHandle {
        let (jobs, queue) = mpsc::channel::<Job>();
        thread::Builder::new()
            .name("store".into())
            .spawn(move || {
                for job in queue {
                    job(&mut store);
                }
            })
            .expect("spawn the store thread");
        StoreHandle { jobs }
    }

    /// Runs `f` on the store thread.
    pub async fn call<R: Send + 'static>(&self, f: impl FnOnce(&mut Store) -> R + Send + 'static) -> R {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Box::new(move |store| {
                let _ = reply.send(f(store));
            }))
            .expect("the store thread outlives its handles");
        answer.await.expect("the store thread answers every job")
    }
}
