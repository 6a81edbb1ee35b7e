//! Group commit on SQLite. SQLite has one writer; a transaction holds it for every round trip of
//! its statements, so one transaction per case change caps the gateway at what those round trips
//! allow. Here every change goes to one task, which writes whatever has queued up meanwhile (one
//! change or new case per case, at most `GROUP`) in one transaction, each kind of row in one
//! statement (`write_group`). Nothing waits to fill a group: under load the queue fills while the
//! group before is being written. A group that fails is written again change by change, so one
//! bad change never fails the others.

use std::collections::{HashSet, VecDeque};

use tokio::sync::{mpsc, oneshot};

use super::{Inserted, NewCase, Result, Store, Update};

/// Changes written together at most.
const GROUP: usize = 64;

/// A change of a stored case, or a new case.
pub(super) enum Work {
    Change(Box<Update>),
    Insert(Box<NewCase>),
}

/// What became of a `Work`: whether the change was written, whether the case was new.
enum Done {
    Written(bool),
    Inserted(Inserted),
}

impl Work {
    fn case_id(&self) -> &str {
        match self {
            Work::Change(u) => &u.case_id,
            Work::Insert(n) => &n.state.case_id,
        }
    }
}

pub(super) struct Job {
    work: Work,
    done: oneshot::Sender<Result<Done>>,
}

pub(super) type Queue = mpsc::UnboundedSender<Job>;

/// Starts the writer task for `store` (a copy without a queue of its own).
pub(super) fn start(store: Store) -> Queue {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(run(store, rx));
    tx
}

/// Hands work to the writer task; `None` if the task is gone (the caller writes it itself).
async fn hand(queue: &Queue, work: Work) -> Option<Result<Done>> {
    let (done, wait) = oneshot::channel();
    queue.send(Job { work, done }).ok()?;
    wait.await.ok()
}

/// A change through the writer task: whether it was written.
pub(super) async fn save(queue: &Queue, update: &Update) -> Option<Result<bool>> {
    Some(
        hand(queue, Work::Change(Box::new(update.clone())))
            .await?
            .map(|d| matches!(d, Done::Written(true))),
    )
}

/// A new case through the writer task.
pub(super) async fn insert(queue: &Queue, new: NewCase) -> Option<Result<Inserted>> {
    match hand(queue, Work::Insert(Box::new(new))).await? {
        Ok(Done::Inserted(i)) => Some(Ok(i)),
        Ok(Done::Written(_)) => None,
        Err(e) => Some(Err(e)),
    }
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
        let work: Vec<&Work> = group.iter().map(|j| &j.work).collect();
        match write(&store, &work).await {
            Ok(done) => {
                for (j, d) in group.into_iter().zip(done) {
                    let _ = j.done.send(Ok(d));
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, changes = group.len(), "changes could not be written together; writing them one by one");
                for j in group {
                    let r = write(&store, &[&j.work]).await.map(|mut d| d.remove(0));
                    let _ = j.done.send(r);
                }
            }
        }
    }
}

/// Writes work of distinct cases in one transaction; what became of each, in order.
async fn write(store: &Store, work: &[&Work]) -> Result<Vec<Done>> {
    let updates: Vec<&Update> = work
        .iter()
        .filter_map(|w| match w {
            Work::Change(u) => Some(&**u),
            Work::Insert(_) => None,
        })
        .collect();
    let inserts: Vec<&NewCase> = work
        .iter()
        .filter_map(|w| match w {
            Work::Insert(n) => Some(&**n),
            Work::Change(_) => None,
        })
        .collect();
    let (written, inserted) = store.save_group(&updates, &inserts).await?;
    let (mut written, mut inserted) = (written.into_iter(), inserted.into_iter());
    Ok(work
        .iter()
        .map(|w| match w {
            Work::Change(_) => Done::Written(written.next().expect("one answer per change")),
            Work::Insert(_) => Done::Inserted(inserted.next().expect("one answer per case")),
        })
        .collect())
}

/// The oldest waiting changes, one per case, at most `GROUP`; the rest keep their order.
fn take_group(waiting: &mut VecDeque<Job>) -> Vec<Job> {
    let mut group = Vec::new();
    let mut later = VecDeque::new();
    let mut cases = HashSet::new();
    while let Some(j) = waiting.pop_front() {
        if group.len() < GROUP && cases.insert(j.work.case_id().to_string()) {
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
            work: Work::Change(Box::new(Update {
                case_id: case_id.into(),
                ..Default::default()
            })),
            done: oneshot::channel().0,
        }
    }

    #[test]
    fn a_group_takes_one_change_per_case_and_keeps_the_order_of_the_rest() {
        let mut waiting: VecDeque<Job> = ["a", "b", "a", "c", "b"].into_iter().map(job).collect();
        let ids = |v: &mut dyn Iterator<Item = &Job>| -> Vec<String> {
            v.map(|j| j.work.case_id().to_string()).collect()
        };
        let group = take_group(&mut waiting);
        assert_eq!(ids(&mut group.iter()), ["a", "b", "c"]);
        assert_eq!(ids(&mut waiting.iter()), ["a", "b"]);
        let mut many: VecDeque<Job> = (0..GROUP + 3).map(|i| job(&i.to_string())).collect();
        assert_eq!(take_group(&mut many).len(), GROUP);
        assert_eq!(many.len(), 3);
    }
}
