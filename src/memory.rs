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

/// The spin limit genolens gives candle's CPU worker pool unless the user set one.
pub const CANDLE_SPIN_LIMIT: &str = "1000";

/// Lets candle's idle CPU workers park sooner.
///
/// candle 0.11 runs its own element-wise ops on a barrier pool whose idle workers spin 25 000
/// rounds before parking (`CANDLE_BARRIER_POOL_SPIN_LIMIT`), while genolens's fused ops run on
/// rayon's pool: on two cores the spinning took a core from them (16 % of a training step's perf
/// samples were that spin). With 1 000 rounds, in alternated runs on the 2-core Zen 5 VM: gradient
/// × input at the default shape 0.120 → 0.093 s, a training step 0.220 → 0.199 s; forwards and
/// BERT-base unchanged. A value in the environment is kept. Call at the very start of a binary,
/// before any thread exists (the library never changes process state by itself).
pub fn settle_candle_pool() {
    const VARIABLE: &str = "CANDLE_BARRIER_POOL_SPIN_LIMIT";
    if std::env::var_os(VARIABLE).is_none() {
        // Single-threaded at this point (the caller's contract), so setting the environment is
        // sound; candle reads it when its pool starts, at the first op.
        std::env::set_var(VARIABLE, CANDLE_SPIN_LIMIT);
    }
}
