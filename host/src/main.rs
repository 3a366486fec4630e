//! The `kefu` command.

mod cli;

// glibc's malloc spent a fifth of the server's CPU under load, much of it
// on arena locks between threads; mimalloc's thread-local heaps do not.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    cli::main()
}
