//! The process heap.
//!
//! Transit allocates with jemalloc. Side by side with glibc's malloc on the
//! benchmark (`bench/`), it served about 15 % more requests per second at
//! 32 connections and cut the median at one connection by about 8 %, for
//! the same idle memory; after a burst of load it hands memory back where
//! glibc keeps its arenas grown. (Large short-lived structures, such as a
//! tiktoken encoder read out or a compiler's working buffers, are given back
//! the same way.)

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's settings, read once when it starts (`_RJEM_MALLOC_CONF` in the
/// environment overrides them): one background thread gives freed pages back
/// to the kernel about a second after they were last used, so that neither
/// the idle process nor one past a burst of streams stays grown.
/// (jemalloc reads a `const char *`: a pointer to the first byte.)
#[allow(unsafe_code)]
#[unsafe(export_name = "_rjem_malloc_conf")]
static MALLOC_CONF: Option<&u8> = Some(
    &b"background_thread:true,max_background_threads:1,dirty_decay_ms:1000,muzzy_decay_ms:0\0"[0],
);
