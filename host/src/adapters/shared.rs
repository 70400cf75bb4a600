//! Open streams of one user share adapter instances.
//!
//! A stream needs its adapter's stream translator for as long as it lasts,
//! often minutes, while translating one batch of events takes microseconds.
//! An instance held per stream would keep its memory image, stacks and
//! tables resident for each one (about 45 KB with the built-in adapters).
//! Instead, up to `adapters.streams_per_instance` streams of the same user
//! to the same adapter version keep their translators in one instance (the
//! stream-translator resource exists for exactly this) and take turns
//! calling it. Users never share an instance, as with warm ones: whatever
//! an adapter keeps stays with the user it came from.
//!
//! The price: a trap in one translator ends the streams sharing its
//! instance, since their translators lived in the memory that trapped.
//! They end with an `adapter_failure` error that does not count again
//! against the adapter's health.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use super::guest::{GuestFailure, Instance, StreamTranslator};
use super::{AdapterError, Call, ChunkBatch, Event, InFlight, Lease, LoadedAdapter};

/// An instance hosting the translators of several streams of one user.
pub(super) struct SharedInstance {
    /// Taken only when the last stream is gone (see the `Drop`).
    lease: tokio::sync::Mutex<Option<Lease>>,
    owner: i64,
    /// Streams holding a seat; only ever raised under the adapter's list
    /// of shared instances, so a stream joining sees a count that holds.
    seats: AtomicUsize,
    /// No stream may join any more: a call into it failed, it has served
    /// as many streams as an instance may, or its memory grew.
    closed: AtomicBool,
    /// Translators of ended streams, dropped in the guest before its next
    /// call (or when the instance is kept warm and taken again).
    ended: Mutex<Vec<StreamTranslator>>,
}

impl SharedInstance {
    fn new(mut lease: Lease) -> Self {
        // Its streams count in flight, each by its seat.
        lease.in_flight = None;
        let owner = lease.owner;
        Self {
            lease: tokio::sync::Mutex::new(Some(lease)),
            owner,
            seats: AtomicUsize::new(1),
            closed: AtomicBool::new(false),
            ended: Mutex::new(Vec::new()),
        }
    }

    fn ended(&self) -> std::sync::MutexGuard<'_, Vec<StreamTranslator>> {
        self.ended
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The instance, ready for a call: the translators of streams that
    /// ended are dropped first. `Spoiled` if a call of another stream
    /// left it unusable.
    async fn ready<'a>(
        &self,
        lease: &'a mut Option<Lease>,
    ) -> Result<&'a mut Instance, GuestFailure> {
        let Some(lease) = lease.as_mut() else {
            return Err(GuestFailure::Spoiled);
        };
        let ended = std::mem::take(&mut *self.ended());
        for translator in ended {
            lease.instance.close_stream(translator);
        }
        if lease.instance.spoiled() || !lease.instance.reset().await {
            self.closed.store(true, Ordering::SeqCst);
            return Err(GuestFailure::Spoiled);
        }
        Ok(&mut lease.instance)
    }

    /// After a call: an instance that failed, grew, or served its share of
    /// streams takes no new ones.
    fn after_call(&self, instance: &Instance) {
        if instance.spoiled() || !instance.small_enough_to_hold() || !instance.may_serve_more() {
            self.closed.store(true, Ordering::SeqCst);
        }
    }
}

impl Drop for SharedInstance {
    /// The last stream is gone: the instance goes back like any other, to
    /// wait warm for its user's next request if it may serve one.
    fn drop(&mut self) {
        let Some(mut lease) = self.lease.get_mut().take() else {
            return;
        };
        let ended = std::mem::take(
            self.ended
                .get_mut()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        for translator in ended {
            lease.instance.close_stream(translator);
        }
        lease.adapter.hosts.forget_ended(self.owner);
        lease.recycle();
    }
}

/// The shared instances of one adapter version, by the user they serve,
/// for streams to join. An instance leaves when its last stream ends.
#[derive(Default)]
pub(super) struct Hosts(Mutex<HashMap<i64, Vec<Weak<SharedInstance>>>>);

impl Hosts {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i64, Vec<Weak<SharedInstance>>>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A seat in an instance serving `owner` with room for one more stream.
    /// The newest instance is looked at first: the older ones filled up
    /// before it was started.
    fn join(&self, owner: i64, per_instance: usize) -> Option<Arc<SharedInstance>> {
        // Dropped once the list is unlocked: dropping an instance's last
        // reference ends it, which takes it off the list.
        let mut passed = Vec::new();
        let hosts = self.lock();
        let found = hosts.get(&owner)?.iter().rev().find_map(|h| {
            let h = h.upgrade()?;
            if !h.closed.load(Ordering::SeqCst) && h.seats.load(Ordering::SeqCst) < per_instance {
                h.seats.fetch_add(1, Ordering::SeqCst);
                return Some(h);
            }
            passed.push(h);
            None
        });
        drop(hosts);
        drop(passed);
        found
    }

    fn add(&self, host: &Arc<SharedInstance>) {
        self.lock()
            .entry(host.owner)
            .or_default()
            .push(Arc::downgrade(host));
    }

    /// Take `owner`'s ended instances off the list.
    fn forget_ended(&self, owner: i64) {
        let mut hosts = self.lock();
        if let Some(mine) = hosts.get_mut(&owner) {
            mine.retain(|h| h.strong_count() > 0);
            if mine.is_empty() {
                hosts.remove(&owner);
            }
        }
    }

    /// Shared instances on the list: those alive, since an instance leaves
    /// it as it ends.
    pub(super) fn count(&self) -> usize {
        self.lock().values().map(Vec::len).sum()
    }
}

/// One stream's translator, in an instance it may share with other streams
/// of its user. Dropping it ends the stream's part: its translator is
/// dropped in the guest before the instance's next call.
pub struct StreamSeat {
    host: Arc<SharedInstance>,
    translator: Option<StreamTranslator>,
    /// Counts the stream in its adapter's `in_flight`, and names the
    /// adapter.
    in_flight: InFlight,
}

impl StreamSeat {
    /// The adapter version translating the stream.
    pub fn adapter(&self) -> &Arc<LoadedAdapter> {
        &self.in_flight.0
    }

    /// Open a translator for `call`'s stream of user `owner` in an
    /// instance of the user that has room. `None` if none has (or the one
    /// found failed on another stream meanwhile).
    pub(super) async fn join(
        adapter: &Arc<LoadedAdapter>,
        owner: i64,
        call: &Call,
        per_instance: usize,
    ) -> Option<Result<Self, GuestFailure>> {
        if per_instance <= 1 {
            return None;
        }
        let host = adapter.hosts.join(owner, per_instance)?;
        let mut seat = Self::seat(host, adapter);
        match seat.construct(call, true).await {
            Err(GuestFailure::Spoiled) => None,
            opened => Some(opened.map(|()| seat)),
        }
    }

    /// Open a translator for `call`'s stream in `lease`'s instance, which
    /// other streams of its user may then join.
    pub(super) async fn host(
        lease: Lease,
        call: &Call,
        per_instance: usize,
    ) -> Result<Self, GuestFailure> {
        let adapter = lease.adapter.clone();
        let host = Arc::new(SharedInstance::new(lease));
        if per_instance > 1 {
            adapter.hosts.add(&host);
        }
        let mut seat = Self::seat(host, &adapter);
        seat.construct(call, false).await?;
        Ok(seat)
    }

    fn seat(host: Arc<SharedInstance>, adapter: &Arc<LoadedAdapter>) -> Self {
        Self {
            host,
            translator: None,
            in_flight: InFlight::new(adapter),
        }
    }

    /// Construct the stream's translator; one that `joined` an instance
    /// counts as one more stream the instance served.
    async fn construct(&mut self, call: &Call, joined: bool) -> Result<(), GuestFailure> {
        let mut lease = self.host.lease.lock().await;
        let instance = self.host.ready(&mut lease).await?;
        if joined {
            instance.serve();
        }
        let opened = instance.open_stream(call).await;
        self.host.after_call(instance);
        self.translator = Some(opened?);
        Ok(())
    }

    /// Translate a batch of the upstream's events.
    pub async fn push(
        &mut self,
        events: &[Event],
    ) -> Result<Result<ChunkBatch, AdapterError>, GuestFailure> {
        let Some(translator) = &self.translator else {
            return Err(GuestFailure::Spoiled);
        };
        let mut lease = self.host.lease.lock().await;
        let instance = self.host.ready(&mut lease).await?;
        let pushed = instance.push(translator, events).await;
        self.host.after_call(instance);
        pushed
    }

    /// The upstream is done: the translator's last chunks and usage.
    pub async fn finish(&mut self) -> Result<Result<ChunkBatch, AdapterError>, GuestFailure> {
        let Some(translator) = &self.translator else {
            return Err(GuestFailure::Spoiled);
        };
        let mut lease = self.host.lease.lock().await;
        let instance = self.host.ready(&mut lease).await?;
        let finished = instance.finish(translator).await;
        self.host.after_call(instance);
        finished
    }
}

impl Drop for StreamSeat {
    fn drop(&mut self) {
        if let Some(translator) = self.translator.take() {
            self.host.ended().push(translator);
        }
        self.host.seats.fetch_sub(1, Ordering::SeqCst);
    }
}
