//! Runs: an endpoint's fresh outbox entries written together, as one sled value.
//!
//! sled's cost is per key: one key per event made its inserts the top of capture's profile and
//! its removes the top of delivery's (BENCHMARKS.md). So capture writes the entries one write
//! gathers for an endpoint as runs of up to [`RUN_ENTRIES`] (`run/` + endpoint + first id), and
//! delivery records what it has taken out of runs in small `done/` records (the ids), one per
//! [`RECORD_IDS`] deliveries or [`RECORD_AGE`], whichever comes first. A run is removed when
//! every entry in it is done, together with the records that only mention finished runs.
//!
//! An entry leaves its run (is marked done) when it is delivered, dead-lettered, or has a first
//! failed attempt: from then on it lives as an ordinary `out/` entry with its delivery state.
//! So an id inside a live run's range and not done is owed from that run, and nowhere else:
//! `out/` entries that fall in a run's range are the ones marked done there (older entries,
//! from before runs, precede every run).
//!
//! [`RunIndex`] keeps, in memory, every live run's range, size and done ids: it is rebuilt at
//! open from the keys and the records, and is all delivery needs to tell a run entry from an
//! `out/` one without reading either.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use super::{keys, StoreError};
use crate::event::EventId;

/// Entries in one run at most. Also bounded by [`RUN_BYTES`]: sled writes a value larger than a
/// quarter of its 512 KiB I/O buffer as a separate file, and a leaf holds up to 17 values.
pub(super) const RUN_ENTRIES: usize = 64;
pub(super) const RUN_BYTES: usize = 6 * 1024;

/// First byte of a run value: its format.
const RUN_FORMAT: u8 = 2;
/// Format byte and entry count.
const HEADER: usize = 5;

/// One entry of a run, read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct RunEntry {
    pub id: EventId,
    pub key: String,
    pub payload: Vec<u8>,
}

/// A run being filled.
pub(super) struct RunBuilder {
    value: Vec<u8>,
    meta: RunMeta,
}

/// What the index needs of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct RunMeta {
    pub first: EventId,
    pub last: EventId,
    pub len: u32,
}

impl RunBuilder {
    fn new(first: EventId) -> RunBuilder {
        let mut value = Vec::with_capacity(RUN_BYTES);
        value.push(RUN_FORMAT);
        value.extend_from_slice(&0u32.to_be_bytes());
        RunBuilder {
            value,
            meta: RunMeta {
                first,
                last: first,
                len: 0,
            },
        }
    }

    /// Appends an entry; `key` must fit a u16 length (the caller stores longer ones alone).
    fn push(&mut self, id: EventId, key: &str, payload: &[u8]) {
        self.value.extend_from_slice(&keys::id_bytes(id));
        self.value
            .extend_from_slice(&(key.len() as u16).to_be_bytes());
        self.value.extend_from_slice(key.as_bytes());
        self.value
            .extend_from_slice(&(payload.len() as u32).to_be_bytes());
        self.value.extend_from_slice(payload);
        self.meta.last = id;
        self.meta.len += 1;
    }

    fn is_full(&self) -> bool {
        self.meta.len as usize >= RUN_ENTRIES || self.value.len() >= RUN_BYTES
    }

    fn finish(mut self) -> (RunMeta, Vec<u8>) {
        self.value[1..HEADER].copy_from_slice(&self.meta.len.to_be_bytes());
        (self.meta, self.value)
    }
}

/// Every entry of a run value (tests read runs whole).
#[cfg(test)]
pub(super) fn decode_run(value: &[u8]) -> Result<Vec<RunEntry>, StoreError> {
    decode_run_where(value, |_| true)
}

/// Reads the entries of a run value whose id `keep` accepts; the others cost no allocation (a
/// dispatcher reads on from the middle of a run) but are still checked. Damage is an error
/// naming what is wrong, never a panic.
pub(super) fn decode_run_where(
    value: &[u8],
    mut keep: impl FnMut(EventId) -> bool,
) -> Result<Vec<RunEntry>, StoreError> {
    let mut entries = Vec::new();
    walk(value, |id, key, payload| {
        if !keep(id) {
            return Ok(());
        }
        let key = std::str::from_utf8(key).map_err(|_| corrupt("an ordering key is not UTF-8"))?;
        entries.push(RunEntry {
            id,
            key: key.to_string(),
            payload: payload.to_vec(),
        });
        Ok(())
    })?;
    Ok(entries)
}

/// The ids of a run value, in order.
pub(super) fn run_ids(value: &[u8]) -> Result<Vec<EventId>, StoreError> {
    let mut ids = Vec::new();
    walk(value, |id, _, _| {
        ids.push(id);
        Ok(())
    })?;
    Ok(ids)
}

fn walk(
    value: &[u8],
    mut each: impl FnMut(EventId, &[u8], &[u8]) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    if value.first() != Some(&RUN_FORMAT) {
        return Err(corrupt("unknown run format"));
    }
    let count = value
        .get(1..HEADER)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or_else(|| corrupt("truncated run header"))?;
    let mut rest = &value[HEADER..];
    for _ in 0..count {
        let truncated = || corrupt("truncated run entry");
        let id = rest
            .get(..keys::ID_LEN)
            .and_then(keys::parse_id)
            .ok_or_else(truncated)?;
        rest = &rest[keys::ID_LEN..];
        let key_len = rest
            .get(..2)
            .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
            .ok_or_else(truncated)?;
        let key = rest.get(2..2 + key_len).ok_or_else(truncated)?;
        rest = &rest[2 + key_len..];
        let payload_len = rest
            .get(..4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
            .ok_or_else(truncated)?;
        let payload = rest.get(4..4 + payload_len).ok_or_else(truncated)?;
        rest = &rest[4 + payload_len..];
        each(id, key, payload)?;
    }
    if !rest.is_empty() {
        return Err(corrupt("bytes after the last run entry"));
    }
    Ok(())
}

fn corrupt(detail: &str) -> StoreError {
    StoreError::Corrupt {
        what: "outbox run",
        detail: detail.to_string(),
    }
}

/// Gathers the entries of one sled batch into runs, per endpoint.
#[derive(Default)]
pub(super) struct RunWriter {
    open: HashMap<String, RunBuilder>,
    /// Runs put in the batch, to register once it is applied.
    written: Vec<(String, RunMeta)>,
}

impl RunWriter {
    /// Adds an entry for `endpoint` (ids must come in commit order per endpoint).
    pub fn push(
        &mut self,
        batch: &mut sled::Batch,
        endpoint: &str,
        id: EventId,
        key: &str,
        payload: &[u8],
    ) {
        let builder = match self.open.get_mut(endpoint) {
            Some(builder) => builder,
            None => self
                .open
                .entry(endpoint.to_string())
                .or_insert_with(|| RunBuilder::new(id)),
        };
        builder.push(id, key, payload);
        if builder.is_full() {
            if let Some(full) = self.open.remove(endpoint) {
                self.close(batch, endpoint.to_string(), full);
            }
        }
    }

    fn close(&mut self, batch: &mut sled::Batch, endpoint: String, builder: RunBuilder) {
        let (meta, value) = builder.finish();
        batch.insert(keys::run(&endpoint, meta.first), value);
        self.written.push((endpoint, meta));
    }

    /// Puts the runs still open in `batch`; returns every run the batch holds.
    pub fn finish(mut self, batch: &mut sled::Batch) -> Vec<(String, RunMeta)> {
        let open: Vec<_> = self.open.drain().collect();
        for (endpoint, builder) in open {
            self.close(batch, endpoint, builder);
        }
        self.written
    }
}

/// Done ids gathered before they are written as one record, or for at most [`RECORD_AGE`]: a
/// crash loses at most these (per endpoint), and their events are sent again, same ids. The
/// count bounds the cost under load (a record and its removal per 64 deliveries), the age the
/// re-sends at low rates (a kill -9 test: 378 duplicates in 20 kills with a record per settle,
/// 1 362 with 64 ids and no age limit).
pub(super) const RECORD_IDS: usize = 64;
pub(super) const RECORD_AGE: Duration = Duration::from_millis(20);

/// A live run, as the index knows it.
#[derive(Debug)]
struct Run {
    last: EventId,
    len: u32,
    done: HashSet<EventId>,
    /// Done records that mention this run.
    records: Vec<u64>,
}

/// Every live run and done record, in memory (see the module doc).
#[derive(Debug, Default)]
pub(super) struct RunIndex {
    runs: HashMap<String, BTreeMap<EventId, Run>>,
    /// Per done record: how many live runs it mentions.
    records: BTreeMap<u64, usize>,
    /// Per endpoint, ids done in memory but in no record yet.
    dirty: HashMap<String, Dirty>,
    next_seq: u64,
}

/// Done ids in no record yet, and since when the oldest has waited.
#[derive(Debug, Default)]
struct Dirty {
    ids: Vec<EventId>,
    since: Option<Instant>,
}

/// What marking entries done did: how many were owed, and the run keys and done record keys
/// the runs it finished leave to delete.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Finished {
    pub done: u64,
    pub runs: Vec<Vec<u8>>,
    pub records: Vec<Vec<u8>>,
}

impl RunIndex {
    pub fn add(&mut self, endpoint: &str, meta: RunMeta) {
        let runs = match self.runs.get_mut(endpoint) {
            Some(runs) => runs,
            None => self.runs.entry(endpoint.to_string()).or_default(),
        };
        runs.insert(
            meta.first,
            Run {
                last: meta.last,
                len: meta.len,
                done: HashSet::new(),
                records: Vec::new(),
            },
        );
    }

    /// The first id of the run `id` is owed from, if it is.
    pub fn owed_from(&self, endpoint: &str, id: EventId) -> Option<EventId> {
        let (first, run) = self.runs.get(endpoint)?.range(..=id).next_back()?;
        (id <= run.last && !run.done.contains(&id)).then_some(*first)
    }

    /// Whether `id` is done in the run starting at `first` (or the run is gone).
    pub fn is_done(&self, endpoint: &str, first: EventId, id: EventId) -> bool {
        self.runs
            .get(endpoint)
            .and_then(|runs| runs.get(&first))
            .is_none_or(|run| run.done.contains(&id))
    }

    /// First ids of `endpoint`'s runs that hold ids after `after`, in order.
    pub fn runs_after(&self, endpoint: &str, after: Option<EventId>) -> Vec<EventId> {
        let Some(runs) = self.runs.get(endpoint) else {
            return Vec::new();
        };
        // The run holding `after` (if any) and every later one.
        let from = after
            .and_then(|a| runs.range(..=a).next_back().map(|(first, _)| *first))
            .or_else(|| runs.keys().next().copied());
        let Some(from) = from else {
            return Vec::new();
        };
        runs.range(from..)
            .filter(|(_, run)| after.is_none_or(|a| run.last > a))
            .map(|(first, _)| *first)
            .collect()
    }

    /// Entries still owed from runs, per endpoint.
    pub fn owed(&self) -> BTreeMap<String, u64> {
        self.runs
            .iter()
            .map(|(endpoint, runs)| {
                let n = runs
                    .values()
                    .map(|r| u64::from(r.len) - r.done.len() as u64)
                    .sum();
                (endpoint.clone(), n)
            })
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    /// A sequence number for a new done record.
    pub fn next_seq(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }

    /// Takes `ids` out of their runs, in memory; ids not owed from a run are ignored. They
    /// wait in [`RunIndex::take_dirty`] for a record, unless their run finishes first.
    pub fn mark_done(&mut self, endpoint: &str, ids: &[EventId]) -> Finished {
        let mut finished = Vec::new();
        let mut done = 0;
        if let Some(runs) = self.runs.get_mut(endpoint) {
            let dirty = self.dirty.entry(endpoint.to_string()).or_default();
            for &id in ids {
                let Some((first, run)) = runs.range_mut(..=id).next_back() else {
                    continue;
                };
                if id > run.last || !run.done.insert(id) {
                    continue;
                }
                done += 1;
                dirty.ids.push(id);
                dirty.since.get_or_insert_with(Instant::now);
                if run.done.len() as u64 >= u64::from(run.len) {
                    finished.push(*first);
                }
            }
        }
        let mut out = Finished {
            done,
            ..Finished::default()
        };
        for first in finished {
            self.remove_run(endpoint, first, &mut out);
        }
        out
    }

    /// Ids done and in no record yet, once there are at least `at_least` of them.
    pub fn take_dirty(
        &mut self,
        endpoint: &str,
        at_least: usize,
        or_older_than: Duration,
    ) -> Vec<EventId> {
        let Some(dirty) = self.dirty.get_mut(endpoint) else {
            return Vec::new();
        };
        let due = dirty.ids.len() >= at_least
            || dirty.since.is_some_and(|t| t.elapsed() >= or_older_than);
        if dirty.ids.is_empty() || !due {
            return Vec::new();
        }
        dirty.since = None;
        std::mem::take(&mut dirty.ids)
    }

    /// Record `seq`, holding `ids`, is written: the live runs it mentions keep it. Also how a
    /// stored record is replayed at open, after [`RunIndex::mark_done`] of its ids.
    pub fn recorded(&mut self, endpoint: &str, seq: u64, ids: &[EventId]) {
        self.next_seq = self.next_seq.max(seq.saturating_add(1));
        if let Some(dirty) = self.dirty.get_mut(endpoint).filter(|d| !d.ids.is_empty()) {
            let recorded: HashSet<&EventId> = ids.iter().collect();
            dirty.ids.retain(|id| !recorded.contains(id));
            if dirty.ids.is_empty() {
                dirty.since = None;
            }
        }
        let Some(runs) = self.runs.get_mut(endpoint) else {
            return;
        };
        let mut mentions = 0;
        for &id in ids {
            let Some((_, run)) = runs.range_mut(..=id).next_back() else {
                continue;
            };
            if id <= run.last && run.records.last() != Some(&seq) {
                run.records.push(seq);
                mentions += 1;
            }
        }
        if mentions > 0 {
            self.records.insert(seq, mentions);
        }
    }

    /// Forgets a run, its ids waiting for a record, and the records that mention no live run
    /// without it.
    fn remove_run(&mut self, endpoint: &str, first: EventId, out: &mut Finished) {
        let Some(run) = self.runs.get_mut(endpoint).and_then(|r| r.remove(&first)) else {
            return;
        };
        if self.runs.get(endpoint).is_some_and(BTreeMap::is_empty) {
            self.runs.remove(endpoint);
        }
        if let Some(dirty) = self.dirty.get_mut(endpoint) {
            dirty.ids.retain(|id| *id < first || *id > run.last);
            if dirty.ids.is_empty() {
                dirty.since = None;
            }
        }
        out.runs.push(keys::run(endpoint, first));
        for seq in run.records {
            if let Some(mentions) = self.records.get_mut(&seq) {
                *mentions -= 1;
                if *mentions == 0 {
                    self.records.remove(&seq);
                    out.records.push(keys::done(endpoint, seq));
                }
            }
        }
    }

    /// Whether record `seq` mentions a live run (one that mentions none is left over).
    pub fn has_record(&self, seq: u64) -> bool {
        self.records.contains_key(&seq)
    }
}

/// A done record's value: the ids, back to back.
pub(super) fn record_value(ids: &[EventId]) -> Vec<u8> {
    let mut value = Vec::with_capacity(ids.len() * keys::ID_LEN);
    for &id in ids {
        value.extend_from_slice(&keys::id_bytes(id));
    }
    value
}

pub(super) fn record_ids(value: &[u8]) -> Result<Vec<EventId>, StoreError> {
    if value.len() % keys::ID_LEN != 0 {
        return Err(StoreError::Corrupt {
            what: "outbox done record",
            detail: format!("{} bytes", value.len()),
        });
    }
    Ok(value
        .chunks_exact(keys::ID_LEN)
        .filter_map(keys::parse_id)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lsn::Lsn;

    fn id(lsn: u64, ordinal: u32) -> EventId {
        EventId {
            commit_lsn: Lsn(lsn),
            ordinal,
        }
    }

    fn built(entries: &[(EventId, &str, &[u8])]) -> (RunMeta, Vec<u8>) {
        let mut b = RunBuilder::new(entries[0].0);
        for (id, key, payload) in entries {
            b.push(*id, key, payload);
        }
        b.finish()
    }

    #[test]
    fn a_run_reads_back_and_damage_is_an_error() {
        let (meta, value) = built(&[
            (id(10, 0), "user_id=1", b"one"),
            (id(10, 1), "user_id=2", b""),
            (id(11, 0), "", b"three"),
        ]);
        assert_eq!(
            meta,
            RunMeta {
                first: id(10, 0),
                last: id(11, 0),
                len: 3
            }
        );
        let entries = decode_run(&value).unwrap();
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[0].key, "user_id=1");
        assert_eq!(entries[0].payload, b"one");
        assert_eq!(entries[1].payload, b"");
        assert_eq!(entries[2].id, id(11, 0));
        assert_eq!(
            run_ids(&value).unwrap(),
            vec![id(10, 0), id(10, 1), id(11, 0)]
        );
        let later = decode_run_where(&value, |i| i > id(10, 0)).unwrap();
        assert_eq!(later, entries[1..].to_vec());
        for cut in 0..value.len() {
            assert!(decode_run(&value[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = value.clone();
        longer.push(0);
        assert!(decode_run(&longer).is_err());
        let mut bad_key = value.clone();
        bad_key[HEADER + keys::ID_LEN + 2] = 0xFF;
        assert!(decode_run(&bad_key).is_err());
    }

    #[test]
    fn the_writer_cuts_runs_by_count_and_size() {
        let mut batch = sled::Batch::default();
        let mut w = RunWriter::default();
        for n in 0..(RUN_ENTRIES as u32 + 1) {
            w.push(&mut batch, "hr", id(1, n), "k", b"p");
            w.push(&mut batch, "lms", id(1, n), "k", &[0; RUN_BYTES / 4]);
        }
        let mut written = w.finish(&mut batch);
        written.sort_by_key(|(e, m)| (e.clone(), m.first));
        let hr: Vec<u32> = written
            .iter()
            .filter(|(e, _)| e == "hr")
            .map(|(_, m)| m.len)
            .collect();
        assert_eq!(hr, vec![RUN_ENTRIES as u32, 1]);
        let lms: Vec<u32> = written
            .iter()
            .filter(|(e, _)| e == "lms")
            .map(|(_, m)| m.len)
            .collect();
        assert_eq!(lms.iter().sum::<u32>(), RUN_ENTRIES as u32 + 1);
        assert!(lms.iter().all(|n| *n <= 4), "{lms:?}");
    }

    #[test]
    fn runs_finish_when_every_entry_is_done_and_take_their_records_along() {
        let mut index = RunIndex::default();
        let a = RunMeta {
            first: id(1, 0),
            last: id(1, 2),
            len: 3,
        };
        let b = RunMeta {
            first: id(2, 0),
            last: id(2, 1),
            len: 2,
        };
        index.add("hr", a);
        index.add("hr", b);
        assert_eq!(index.owed_from("hr", id(1, 1)), Some(id(1, 0)));
        assert_eq!(index.owed_from("hr", id(1, 3)), None);
        assert_eq!(index.owed_from("lms", id(1, 1)), None);
        assert_eq!(index.runs_after("hr", None), vec![id(1, 0), id(2, 0)]);
        assert_eq!(
            index.runs_after("hr", Some(id(1, 1))),
            vec![id(1, 0), id(2, 0)]
        );
        assert_eq!(index.runs_after("hr", Some(id(1, 2))), vec![id(2, 0)]);
        assert_eq!(index.owed()["hr"], 5);

        // Done in memory, then one record spanning both runs.
        let f = index.mark_done("hr", &[id(1, 0), id(2, 0)]);
        assert_eq!(
            f,
            Finished {
                done: 2,
                ..Finished::default()
            }
        );
        assert_eq!(index.owed_from("hr", id(1, 0)), None);
        assert!(index.is_done("hr", id(1, 0), id(1, 0)));
        assert!(index.take_dirty("hr", 3, Duration::MAX).is_empty());
        let dirty = index.take_dirty("hr", 2, Duration::MAX);
        assert_eq!(dirty, vec![id(1, 0), id(2, 0)]);
        let s0 = index.next_seq();
        index.recorded("hr", s0, &dirty);
        assert!(index.has_record(s0));

        // The rest of run a: it goes, its pending ids need no record; s0 still mentions b.
        let f = index.mark_done("hr", &[id(1, 1), id(1, 2)]);
        assert_eq!(f.done, 2);
        assert_eq!(f.runs, vec![keys::run("hr", id(1, 0))]);
        assert!(f.records.is_empty());
        assert!(index.take_dirty("hr", 1, Duration::MAX).is_empty());
        // Run b's last entry, with a duplicate and an id of no run.
        let f = index.mark_done("hr", &[id(2, 1), id(2, 1), id(3, 0)]);
        assert_eq!(f.done, 1);
        assert_eq!(f.runs, vec![keys::run("hr", id(2, 0))]);
        assert_eq!(f.records, vec![keys::done("hr", s0)]);
        assert!(!index.has_record(s0));
        assert!(index.owed().is_empty());
        assert!(index.runs_after("hr", None).is_empty());
        assert!(index.take_dirty("hr", 1, Duration::MAX).is_empty());
        assert_eq!(index.next_seq(), s0 + 1);
    }

    #[test]
    fn done_ids_wait_for_a_count_or_an_age() {
        let mut index = RunIndex::default();
        index.add(
            "hr",
            RunMeta {
                first: id(1, 0),
                last: id(1, 9),
                len: 10,
            },
        );
        index.mark_done("hr", &[id(1, 0)]);
        assert!(index
            .take_dirty("hr", 2, Duration::from_secs(60))
            .is_empty());
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(
            index.take_dirty("hr", 2, Duration::from_millis(5)),
            vec![id(1, 0)]
        );
        // Taking them starts the clock again.
        index.mark_done("hr", &[id(1, 1)]);
        assert!(index
            .take_dirty("hr", 2, Duration::from_secs(60))
            .is_empty());
        assert_eq!(index.take_dirty("hr", 1, Duration::MAX), vec![id(1, 1)]);
    }

    #[test]
    fn records_read_back() {
        let ids = [id(1, 2), id(u64::MAX, u32::MAX)];
        assert_eq!(record_ids(&record_value(&ids)).unwrap(), ids);
        assert!(record_ids(&[0; 13]).is_err());
    }
}
