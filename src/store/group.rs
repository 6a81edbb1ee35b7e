//! Group commit on SQLite. SQLite has one writer; a transaction holds it for every round trip of
//! its statements, so one transaction per case change caps the gateway at what those round trips
//! allow. Here every change goes to one task, which writes whatever has queued up meanwhile (one
//! change per case, at most `GROUP`) in one transaction, each kind of row in one statement
//! (`write_updates`). Nothing waits to fill a group: under load the queue fills while the group
//! before is being written. A group that fails is written again change by change, so one bad
//! change never fails the others.

use std::collections::{HashSet, VecDeque};

use tokio::sync::{mpsc, oneshot};

use super::{Result, Store, Update};

/// Changes written together at most.
const GROUP: usize = 64;

pub(super) struct Job {
    update: Update,
    done: oneshot::Sender<Result<bool>>,
}

pub(super) type Queue = mpsc::UnboundedSender<Job>;

/// Starts the writer task for `store` (a copy without a queue of its own).
pub(super) fn start(store: Store) -> Queue {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(run(store, rx));
    tx
}

/// Hands a change to the writer task; `None` if the task is gone (the caller writes it itself).
pub(super) async fn save(queue: &Queue, update: &Update) -> Option<Result<bool>> {
    let (done, wait) = oneshot::channel();
    queue
        .send(Job {
            update: update.clone(),
            done,
        })
        .ok()?;
    wait.await.ok()
}

async fn run(store: Store, mut rx: mpsc::UnboundedReceiver<Job>) {
    let mut waiting: VecDeque<Job> = VecDeque::new();
    loop {
        if waiting.is_empty() {
            match rx.recv().await {
                Some(j) => waiting.push_back(j),
                None => return,
            }
        }
        while let Ok(j) = rx.try_recv() {
            waiting.push_back(j);
        }
        let group = take_group(&mut waiting);
        let updates: Vec<&Update> = group.iter().map(|j| &j.update).collect();
        match store.save_group(&updates).await {
            Ok(written) => {
                for (j, w) in group.into_iter().zip(written) {
                    let _ = j.done.send(Ok(w));
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, changes = group.len(), "changes could not be written together; writing them one by one");
                for j in group {
                    let r = store.save_group(&[&j.update]).await.map(|w| w[0]);
                    let _ = j.done.send(r);
                }
            }
        }
    }
}

/// The oldest waiting changes, one per case, at most `GROUP`; the rest keep their order.
fn take_group(waiting: &mut VecDeque<Job>) -> Vec<Job> {
    let mut group = Vec::new();
    let mut later = VecDeque::new();
    let mut cases = HashSet::new();
    while let Some(j) = waiting.pop_front() {
        if group.len() < GROUP && cases.insert(j.update.case_id.clone()) {
            group.push(j);
        } else {
            later.push_back(j);
        }
    }
    *waiting = later;
    group
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(case_id: &str) -> Job {
        Job {
            update: Update {
                case_id: case_id.into(),
                ..Default::default()
            },
            done: oneshot::channel().0,
        }
    }

    #[test]
    fn a_group_takes_one_change_per_case_and_keeps_the_order_of_the_rest() {
        let mut waiting: VecDeque<Job> = ["a", "b", "a", "c", "b"].into_iter().map(job).collect();
        let ids = |v: &mut dyn Iterator<Item = &Job>| -> Vec<String> {
            v.map(|j| j.update.case_id.clone()).collect()
        };
        let group = take_group(&mut waiting);
        assert_eq!(ids(&mut group.iter()), ["a", "b", "c"]);
        assert_eq!(ids(&mut waiting.iter()), ["a", "b"]);
        let mut many: VecDeque<Job> = (0..GROUP + 3).map(|i| job(&i.to_string())).collect();
        assert_eq!(take_group(&mut many).len(), GROUP);
        assert_eq!(many.len(), 3);
    }
}
