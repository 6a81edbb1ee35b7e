//! Group commit on SQLite. SQLite has one writer; a transaction holds it for every round trip of
//! its statements, and every commit appends its pages to the WAL, so one transaction per write
//! caps the gateway at what those round trips allow. Here the hot writes go to one task — case
//! changes, new cases, timer releases, a push's "sent" mark before it goes out, events the broker
//! confirmed — which writes whatever has queued up meanwhile in one transaction, each kind of row
//! in one statement (`write_group`). A group holds at most one versioned change or new case per
//! case, at most `GROUP` of them. Nothing waits to fill a group: under load the queue fills while
//! the group before is being written. A group that fails is written again piece by piece, so one
//! bad change never fails the others.

use std::collections::{HashSet, VecDeque};

use tokio::sync::{mpsc, oneshot};

use super::{Batch, Inserted, NewCase, Result, Store, StoreError, Touch, Update, state_json};

/// Versioned changes and new cases written together at most. A group costs a dozen statements
/// whatever its size, each a round trip to SQLite's thread, which on a busy machine waits for a
/// core: under a backlog, groups of at most 64 held the writer 98 % of the time with its threads
/// a third busy. At 256, at 250 cases/s offered, 3 % more cases completed a second on 10 % less
/// of the daemon's CPU; at 1024, no better.
const GROUP: usize = 256;

/// One write handed to the writer task.
pub(super) enum Work {
    /// A change of a stored case (or only releases of timers: no state, no version), with its
    /// state as JSON: serialized by the task that hands the change over, not by the writer.
    Change(Box<Update>, Option<String>),
    Insert(Box<NewCase>),
    Touch(Touch),
    /// Events the broker confirmed, and when.
    Published(Vec<String>, i64),
}

/// What became of a `Work`: whether the change was written (the touch found its claim), whether
/// the case was new.
pub(super) enum Done {
    Written(bool),
    Inserted(Inserted),
}

impl Work {
    /// A change, its state serialized here: on the caller's task, off the writer's path.
    pub(super) fn change(update: Update) -> Result<Work> {
        let json = update.state.as_ref().map(|s| state_json(s)).transpose()?;
        Ok(Work::Change(Box::new(update), json))
    }

    /// The case this work must be alone in its group for: versioned changes and new cases.
    fn exclusive(&self) -> Option<&str> {
        match self {
            Work::Change(u, _) if u.state.is_some() => Some(&u.case_id),
            Work::Insert(n) => Some(&n.state.case_id),
            _ => None,
        }
    }
}

pub(super) struct Job {
    work: Work,
    done: oneshot::Sender<Result<Done>>,
}

pub(super) type Queue = mpsc::UnboundedSender<Job>;

/// Starts the writer task for `store` (a copy without a queue of its own) on a thread of its own.
/// The one writer is what every case change waits for under load; as one task among the
/// runtime's hundreds it waited for a turn after each of its statements.
pub(super) fn start(store: Store) -> Queue {
    let (tx, rx) = mpsc::unbounded_channel();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    match runtime {
        Ok(rt) => {
            let spawned = std::thread::Builder::new()
                .name("onething-writer".into())
                .spawn(move || rt.block_on(run(store, rx)));
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start the writer thread; writes go one by one");
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot start the writer's runtime; writes go one by one")
        }
    }
    tx
}

/// Hands work to the writer task and waits for what became of it; writes it here if the task is
/// gone.
pub(super) async fn write_through(store: &Store, queue: &Queue, work: Work) -> Result<Done> {
    let (done, wait) = oneshot::channel();
    match queue.send(Job { work, done }) {
        Ok(()) => wait.await.unwrap_or_else(|_| {
            Err(StoreError::Db(
                "the group writer stopped during a write".into(),
            ))
        }),
        Err(refused) => Ok(write(store, &[&refused.0.work]).await?.remove(0)),
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
        let began = std::time::Instant::now();
        let written = write(&store, &work).await;
        // What limits the writer under load: writes per group, what waits for the next, how long.
        tracing::debug!(
            writes = work.len(),
            left = waiting.len(),
            ms = began.elapsed().as_secs_f64() * 1e3,
            "group written"
        );
        match written {
            Ok(done) => {
                for (j, d) in group.into_iter().zip(done) {
                    let _ = j.done.send(Ok(d));
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, writes = group.len(), "writes could not be made together; making them one by one");
                for j in group {
                    let r = write(&store, &[&j.work]).await.map(|mut d| d.remove(0));
                    let _ = j.done.send(r);
                }
            }
        }
    }
}

/// Writes a group in one transaction; what became of each piece, in order.
pub(super) async fn write(store: &Store, work: &[&Work]) -> Result<Vec<Done>> {
    let mut batch = Batch::default();
    for w in work {
        match w {
            Work::Change(u, json) => {
                batch.updates.push(&**u);
                batch.states.push(json.as_deref());
            }
            Work::Insert(n) => batch.inserts.push(&**n),
            Work::Touch(t) => batch.touches.push(t),
            Work::Published(ids, at) => batch
                .published
                .extend(ids.iter().map(|id| (id.as_str(), *at))),
        }
    }
    let written = store.save_group(&batch).await?;
    let (mut updated, mut inserted) = (written.updated.into_iter(), written.inserted.into_iter());
    Ok(work
        .iter()
        .map(|w| match w {
            Work::Change(..) => Done::Written(updated.next().expect("one answer per change")),
            Work::Insert(_) => Done::Inserted(inserted.next().expect("one answer per case")),
            Work::Touch(t) => Done::Written(written.touched.contains(&(t.id, t.token.clone()))),
            Work::Published(..) => Done::Written(true),
        })
        .collect())
}

/// The oldest waiting work: versioned changes and new cases one per case and at most `GROUP`,
/// everything else as it comes; the rest keeps its order.
fn take_group(waiting: &mut VecDeque<Job>) -> Vec<Job> {
    let mut group = Vec::new();
    let mut later = VecDeque::new();
    let mut cases = HashSet::new();
    while let Some(j) = waiting.pop_front() {
        let fits = match j.work.exclusive() {
            Some(case_id) => cases.len() < GROUP && cases.insert(case_id.to_string()),
            None => true,
        };
        if fits {
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
    use crate::store::cache::tests::case;

    /// A versioned change of `case_id`, or with `""` a release of no case.
    fn job(case_id: &str) -> Job {
        let state = (!case_id.is_empty()).then(|| case(case_id, false));
        Job {
            work: Work::change(Update {
                case_id: case_id.into(),
                state: state.map(Into::into),
                ..Default::default()
            })
            .expect("serializable"),
            done: oneshot::channel().0,
        }
    }

    fn ids<'a>(jobs: impl Iterator<Item = &'a Job>) -> Vec<&'a str> {
        jobs.map(|j| match &j.work {
            Work::Change(u, _) => u.case_id.as_str(),
            _ => "?",
        })
        .collect()
    }

    #[test]
    fn a_group_takes_one_change_per_case_and_keeps_the_order_of_the_rest() {
        let mut waiting: VecDeque<Job> = ["a", "b", "", "a", "c", "", "b"]
            .into_iter()
            .map(job)
            .collect();
        let group = take_group(&mut waiting);
        assert_eq!(ids(group.iter()), ["a", "b", "", "c", ""]);
        assert_eq!(ids(waiting.iter()), ["a", "b"]);
        let mut many: VecDeque<Job> = (0..GROUP + 3)
            .map(|i| job(&i.to_string()))
            .chain([job("")])
            .collect();
        assert_eq!(take_group(&mut many).len(), GROUP + 1);
        assert_eq!(many.len(), 3);
    }
}
