//! Process-wide allocator settings for tensor work.

/// Keeps freed memory in the heap for reuse instead of returning it to the OS.
///
/// glibc serves allocations above its mmap threshold (at most 32 MiB) with fresh `mmap`s and
/// unmaps them on free, and trims the heap top. A BERT step allocates and frees many large
/// tensors (attention maps of a 32 × 253-token batch are 65 MB each), so each one came back as
/// fresh pages the kernel had to fault in and zero: 28 of 45 s of a 3-step MLM run was system
/// time. With mmap off and trimming effectively disabled the same run took 30 s (4.5 s system).
/// Call once at the start of a binary (the library never changes process state by itself).
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes glibc's allocation policy; it is called before any threads start.
    unsafe {
        libc::mallopt(libc::M_MMAP_MAX, 0);
        // −1 disables trimming (mallopt(3)); i32::MAX (2 GiB) still trimmed after any pass
        // whose tensors outgrew it, and the next pass faulted 1.5 M fresh pages back in.
        libc::mallopt(libc::M_TRIM_THRESHOLD, -1);
    }
}
