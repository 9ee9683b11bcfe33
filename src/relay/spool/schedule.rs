//! When each spooled message is tried: the in-memory schedule the delivery workers take from
//! (the files are the truth; this is rebuilt from them at start and on each rescan), and the
//! retry backoff.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Notify;

/// The delay after the `attempts`-th failed attempt (1-based): the schedule's entry for it,
/// its last entry repeating (SES's advice: 5 s, 10 s, 30 s, then every 20 minutes).
pub fn backoff(schedule: &[Duration], attempts: u32) -> Duration {
    let index = (attempts.max(1) - 1) as usize;
    schedule
        .get(index.min(schedule.len().saturating_sub(1)))
        .copied()
        .unwrap_or(Duration::from_secs(1200))
}

#[derive(Debug)]
struct Entry {
    due_ms: u64,
    /// When the message was written, Unix seconds (for the oldest-age metric).
    written_at: i64,
    in_flight: bool,
    /// Insertion order, so a rescan forgets only entries older than its listing.
    seq: u64,
}

#[derive(Debug, Default)]
struct Inner {
    /// (due, id); entries whose due changed stay behind and are skipped when popped.
    heap: BinaryHeap<Reverse<(u64, String)>>,
    entries: HashMap<String, Entry>,
    next_seq: u64,
}

/// The messages waiting for a delivery worker.
#[derive(Debug, Default)]
pub struct Queue {
    inner: Mutex<Inner>,
    /// Wakes one waiting worker each time a message is (re)scheduled.
    pub wake: Notify,
}

/// What `take` found when nothing is due.
pub enum Next {
    /// A message to deliver now; it is in flight until `finish`.
    Deliver(String),
    /// Nothing due before this time (Unix ms); `None`: nothing at all.
    Wait(Option<u64>),
}

impl Queue {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Schedules `id` at `due_ms` (a known message not in flight moves to the new time) and
    /// wakes the workers.
    pub fn schedule(&self, id: &str, due_ms: u64, written_at: i64) {
        {
            let mut inner = self.lock();
            let seq = inner.next_seq;
            inner.next_seq += 1;
            match inner.entries.get_mut(id) {
                Some(entry) if entry.in_flight => return,
                Some(entry) if entry.due_ms == due_ms => return,
                Some(entry) => entry.due_ms = due_ms,
                None => {
                    inner.entries.insert(
                        id.to_owned(),
                        Entry {
                            due_ms,
                            written_at,
                            in_flight: false,
                            seq,
                        },
                    );
                }
            }
            inner.heap.push(Reverse((due_ms, id.to_owned())));
        }
        // One worker per message: a busy worker looks at the queue again when it is done, so
        // waking every idle one for each message would only make them race for it.
        self.wake.notify_one();
    }

    /// The next message due at `now_ms`, marked in flight; else when the next one is due.
    pub fn take(&self, now_ms: u64) -> Next {
        let mut inner = self.lock();
        while let Some(Reverse((due, id))) = inner.heap.peek().cloned() {
            let current = inner
                .entries
                .get(&id)
                .is_some_and(|e| !e.in_flight && e.due_ms == due);
            if !current {
                inner.heap.pop();
                continue;
            }
            if due > now_ms {
                return Next::Wait(Some(due));
            }
            inner.heap.pop();
            if let Some(entry) = inner.entries.get_mut(&id) {
                entry.in_flight = true;
            }
            return Next::Deliver(id);
        }
        Next::Wait(None)
    }

    /// A delivery of `id` ended: tried again at `due_ms`, or forgotten (`None`: done).
    pub fn finish(&self, id: &str, again_at: Option<u64>) {
        let mut inner = self.lock();
        match again_at {
            None => {
                inner.entries.remove(id);
            }
            Some(due_ms) => {
                if let Some(entry) = inner.entries.get_mut(id) {
                    entry.in_flight = false;
                    entry.due_ms = due_ms;
                    inner.heap.push(Reverse((due_ms, id.to_owned())));
                }
                drop(inner);
                self.wake.notify_one();
            }
        }
    }

    /// The insertion counter now: entries added from here on are newer than a listing
    /// started now.
    pub fn mark(&self) -> u64 {
        self.lock().next_seq
    }

    /// After a rescan: forgets entries not found on disk (held or deleted by an operator)
    /// that are older than `mark` and not in flight.
    pub fn forget_absent(&self, present: &HashSet<String>, mark: u64) {
        self.lock()
            .entries
            .retain(|id, e| e.in_flight || e.seq >= mark || present.contains(id));
    }

    /// Messages scheduled or in flight, and the oldest one's write time.
    pub fn depth(&self) -> (usize, Option<i64>) {
        let inner = self.lock();
        let oldest = inner.entries.values().map(|e| e.written_at).min();
        (inner.entries.len(), oldest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_repeats_its_last_step() {
        let ses: Vec<Duration> = [5, 10, 30, 1200]
            .into_iter()
            .map(Duration::from_secs)
            .collect();
        let steps: Vec<u64> = (1..=6).map(|n| backoff(&ses, n).as_secs()).collect();
        assert_eq!(steps, [5, 10, 30, 1200, 1200, 1200]);
        assert_eq!(backoff(&ses, 0).as_secs(), 5);
        assert_eq!(backoff(&[], 3).as_secs(), 1200);
    }

    #[test]
    fn due_order_in_flight_and_rescheduling() {
        let queue = Queue::default();
        queue.schedule("2.2", 200, 0);
        queue.schedule("1.1", 100, 0);
        assert!(matches!(queue.take(50), Next::Wait(Some(100))));
        let Next::Deliver(first) = queue.take(150) else {
            panic!()
        };
        assert_eq!(first, "1.1");
        // In flight: a rescan's schedule does not move it, and it is not taken twice.
        queue.schedule("1.1", 0, 0);
        assert!(matches!(queue.take(150), Next::Wait(Some(200))));
        queue.finish("1.1", Some(300));
        // Moved earlier (a flush): the stale heap entry is skipped.
        queue.schedule("2.2", 10, 0);
        let Next::Deliver(second) = queue.take(150) else {
            panic!()
        };
        assert_eq!(second, "2.2");
        queue.finish("2.2", None);
        assert_eq!(queue.depth().0, 1);
        let mark = queue.mark();
        queue.schedule("3.3", 0, 0);
        queue.forget_absent(&HashSet::new(), mark);
        // 1.1 is older than the listing and absent: forgotten; 3.3 is newer: kept.
        let Next::Deliver(third) = queue.take(1000) else {
            panic!()
        };
        assert_eq!(third, "3.3");
        assert!(matches!(queue.take(1000), Next::Wait(None)));
    }
}
