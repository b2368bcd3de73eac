//! Provided buffers: one pool of receive buffers for every connection,
//! lent to the kernel through a buffer ring (`IORING_REGISTER_PBUF_RING`,
//! 5.19).
//!
//! A receive that names its own buffer pins that buffer for as long as
//! the receive waits, and an idle client's receive waits for ever: 10,000
//! idle clients would pin 10,000 buffers. A receive with a *provided*
//! buffer names only the pool; the kernel takes a buffer out of it when
//! bytes arrive, writes them, and says in the completion which buffer it
//! took (its id). From then the loop owns that buffer: it copies the bytes
//! into the connection's decoder and gives the buffer back at once
//! ([`recycle`](BufRing::recycle)). So the pool is as large as one turn's
//! arrivals, whatever the number of connections.
//!
//! ```text
//!   loop                        shared ring                     kernel
//!   recycle(id) ──► entry at tail, tail += 1 (published) ──► takes from head
//!   bytes(id, n) ◄── completion: "buffer id, n bytes" ◄──── fills it
//! ```

use std::alloc::{self, Layout};
use std::io;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::types::BufRingEntry;

use crate::ring::Ring;

/// The buffer group id the receives name.
pub(crate) const GROUP: u16 = 0;
/// Buffers in the pool (a power of two, as the ring wants). One turn of
/// the loop takes at most one per receive completion, and gives each back
/// before the next wait; a turn with more arrivals than this ends some
/// connections' receives with `ENOBUFS`, and they are submitted again.
const BUFFERS: u16 = 512;
/// The size of each: one read of the decoder ([`zen_utils::protocol::frame::READ_CHUNK`]),
/// some 160 pipelined questions.
pub(crate) const BUFFER_SIZE: usize = zen_utils::protocol::frame::READ_CHUNK;

/// The pool and the ring of entries through which it is lent.
pub(crate) struct BufRing {
    /// `BUFFERS` entries, page-aligned, shared with the kernel: the
    /// kernel reads the entries between its head and our tail.
    entries: *mut BufRingEntry,
    entries_layout: Layout,
    /// The buffers themselves, `BUFFERS * BUFFER_SIZE` bytes.
    memory: *mut u8,
    memory_layout: Layout,
    /// Our tail, published to the kernel by [`publish`](Self::publish).
    tail: u16,
}

impl BufRing {
    /// Allocates the pool and registers it with `ring`, every buffer lent.
    pub(crate) fn new(ring: &Ring) -> io::Result<Self> {
        let entries_layout =
            Layout::from_size_align(usize::from(BUFFERS) * size_of::<BufRingEntry>(), 4096)
                .map_err(io::Error::other)?;
        let memory_layout = Layout::from_size_align(usize::from(BUFFERS) * BUFFER_SIZE, 4096)
            .map_err(io::Error::other)?;
        // SAFETY: both layouts have a non-zero size.
        let (entries, memory) = unsafe {
            (
                alloc::alloc_zeroed(entries_layout).cast::<BufRingEntry>(),
                alloc::alloc(memory_layout),
            )
        };
        if entries.is_null() || memory.is_null() {
            alloc::handle_alloc_error(entries_layout);
        }
        let mut pool = Self {
            entries,
            entries_layout,
            memory,
            memory_layout,
            tail: 0,
        };
        // SAFETY: the entries stay allocated until `drop`, which runs after
        // the ring is gone (the loop drops its ring first), and only the
        // kernel and this struct touch them.
        unsafe {
            ring.submitter()
                .register_buf_ring_with_flags(entries as u64, BUFFERS, GROUP, 0)
        }
        .map_err(|error| {
            io::Error::new(
                error.kind(),
                format!("io_uring: cannot register a buffer ring (needs 5.19): {error}"),
            )
        })?;
        for id in 0..BUFFERS {
            pool.recycle(id);
        }
        pool.publish();
        Ok(pool)
    }

    /// The `len` bytes the kernel wrote into buffer `id`. The loop owns the
    /// buffer from the completion until it gives it back with
    /// [`recycle`](Self::recycle).
    pub(crate) fn bytes(&self, id: u16, len: usize) -> &[u8] {
        assert!(
            id < BUFFERS && len <= BUFFER_SIZE,
            "not a buffer of the pool"
        );
        // SAFETY: in bounds (checked), and the kernel wrote these bytes and
        // will not touch the buffer again until it is recycled.
        unsafe { std::slice::from_raw_parts(self.buffer(id), len) }
    }

    /// Gives buffer `id` back to the pool: an entry at our tail. The
    /// kernel sees it once the tail is published.
    pub(crate) fn recycle(&mut self, id: u16) {
        let mask = BUFFERS - 1;
        // SAFETY: the slot is in bounds, and the kernel reads only entries
        // before the published tail, which this one is not yet.
        let entry = unsafe { &mut *self.entries.add(usize::from(self.tail & mask)) };
        entry.set_addr(self.buffer(id) as u64);
        entry.set_len(BUFFER_SIZE as u32);
        entry.set_bid(id);
        self.tail = self.tail.wrapping_add(1);
    }

    /// Publishes the tail: the entries written since the last publish are
    /// the kernel's. Once per turn, before the wait, is enough: the kernel
    /// takes buffers only while the loop is in the kernel.
    pub(crate) fn publish(&mut self) {
        // SAFETY: the tail field overlays the first entry's reserved field;
        // the release store makes the entries visible before the tail.
        unsafe {
            let tail = BufRingEntry::tail(self.entries).cast::<AtomicU16>();
            (*tail).store(self.tail, Ordering::Release);
        }
    }

    fn buffer(&self, id: u16) -> *mut u8 {
        // SAFETY: `id < BUFFERS` (the callers check or choose it).
        unsafe { self.memory.add(usize::from(id) * BUFFER_SIZE) }
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with these layouts; the ring that
        // could write into them is closed (the loop drops it first).
        unsafe {
            alloc::dealloc(self.entries.cast(), self.entries_layout);
            alloc::dealloc(self.memory, self.memory_layout);
        }
    }
}
