//! What the process itself measured about its run: its peak resident memory, for the summaries long commands write
//! and the benches' memory rows.

/// The peak resident set size of this process in MiB (`VmHWM` of `/proc/self/status`); `None` where the kernel does
/// not report it (not Linux).
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_vm_hwm(&status)
}

fn parse_vm_hwm(status: &str) -> Option<f64> {
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.trim_start_matches("VmHWM:").trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kib / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_high_water_mark() {
        assert_eq!(parse_vm_hwm("Name:\tlsn\nVmPeak:\t 9 kB\nVmHWM:\t 3016016 kB\nVmRSS:\t 1 kB\n"), Some(2945.328125));
        assert_eq!(parse_vm_hwm("Name:\tlsn\n"), None);
        // This process has touched memory, so on Linux its own high-water mark is positive.
        if cfg!(target_os = "linux") {
            assert!(peak_rss_mib().is_some_and(|m| m > 0.0));
        }
    }
}
