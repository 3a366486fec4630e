//! The `kefu` command.

mod cli;

// glibc's malloc spent a fifth of the server's CPU under load, much of it
// on arena locks between threads; mimalloc's thread-local heaps do not.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    opt_out_of_huge_pages();
    cli::main()
}

/// Keep this process on 4 KiB pages. On hosts with transparent huge pages
/// set to `always` (a common default), the first touch of fresh heap
/// memory (sled allocates a new log buffer for every group commit)
/// faulted in and zeroed a whole 2 MiB page on a request's thread,
/// sometimes with compaction first: it was the greeting step's p99 tail
/// (docs/perf-history.md, "The tail").
fn opt_out_of_huge_pages() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: a plain prctl on this process; it only changes how later
        // page faults are served.
        let rc = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
        if rc != 0 {
            eprintln!(
                "kefu: cannot opt out of transparent huge pages: {}",
                std::io::Error::last_os_error()
            );
        }
    }
}
