//! The process' peak resident memory, as Linux keeps it (`VmHWM`), for `predictor check`'s
//! measure of the largest request a bundle takes.

/// Starts the peak over from the memory resident now (`/proc/self/clear_refs`, Linux 4.0 and
/// later); where that is refused, the peak keeps counting from the start of the process.
pub fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// The peak resident memory since the process started or [`reset_peak`], in MiB (rounded up).
pub fn peak_mib() -> Option<u64> {
    status_mib("VmHWM:")
}

/// The resident memory now, in MiB (rounded up).
pub fn resident_mib() -> Option<u64> {
    status_mib("VmRSS:")
}

fn status_mib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix(field))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kib.div_ceil(1024))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_peak_follows_a_large_allocation_and_starts_over() {
        reset_peak();
        let before = peak_mib().unwrap();
        // Written page by page and passed through black_box, so that an optimised build (the
        // Nix checks' release profile) cannot leave the allocation out.
        let mut held = vec![0u8; 256 << 20];
        for page in held.chunks_mut(4096) {
            page[0] = 1;
        }
        let held = std::hint::black_box(held);
        let during = peak_mib().unwrap();
        assert!(during >= before + 200, "{before} MiB, then {during} MiB");
        drop(held);
        reset_peak();
        assert!(peak_mib().unwrap() < during);
    }
}
