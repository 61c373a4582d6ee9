//! Signal dispositions that keep I/O failures errors rather than deaths. The only `unsafe` in
//! grokit besides the input maps (`mmap.rs`) and the GEMM kernel.

/// Make an exceeded file-size limit (`ulimit -f`, RLIMIT_FSIZE) an error instead of a signal.
///
/// By default the kernel kills a process with SIGXFSZ when a write crosses the limit, which
/// would skip the cleanup of [`super::AtomicFile`] temporaries. With the signal ignored, the write
/// fails with EFBIG and grokit reports it like a full disk: an error naming the file, the
/// temporary removed. Called once by the binary at startup; ignoring a signal is inherited by
/// nothing grokit runs (it runs no other programs).
pub fn ignore_file_size_signal() {
    #[cfg(unix)]
    {
        // SAFETY: setting the disposition of SIGXFSZ to SIG_IGN installs no handler (no code
        // runs in signal context) and touches no memory of this process; it only changes what
        // the kernel does when a write exceeds RLIMIT_FSIZE (return EFBIG instead of killing).
        unsafe {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
        }
    }
}
