//! The process heap.

/// Give freed heap pages back to the kernel. glibc keeps them otherwise,
/// and after a large short-lived structure is dropped (a tiktoken encoder
/// read out, a compiler's working buffers) they would stay resident.
pub fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[allow(unsafe_code)]
    // SAFETY: malloc_trim only releases free memory of the allocator's own
    // arenas; it takes no pointers and is safe to call from any thread.
    unsafe {
        libc::malloc_trim(0);
    }
}
