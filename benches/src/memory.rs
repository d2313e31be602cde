//! The process's resident memory, for the docs/design.md section 9 memory target.

/// `VmRSS` and `VmHWM` (peak resident) of this process, in bytes, from `/proc/self/status`;
/// `None` where that file does not exist (not Linux).
pub fn resident_bytes() -> Option<(u64, u64)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = status.lines().find(|line| line.starts_with(name))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        kib.checked_mul(1024)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// Resident memory in transparent huge pages (`AnonHugePages` of `/proc/self/smaps_rollup`),
/// in bytes; `None` where that file does not exist.
pub fn huge_page_bytes() -> Option<u64> {
    let rollup = std::fs::read_to_string("/proc/self/smaps_rollup").ok()?;
    let line = rollup
        .lines()
        .find(|line| line.starts_with("AnonHugePages:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// One line for a bench's output: resident and peak resident memory in MiB, and how much of
/// it is in huge pages, after `what`.
pub fn report(what: &str) -> String {
    match resident_bytes() {
        Some((resident, peak)) => format!(
            "memory after {what}: VmRSS {} MiB, VmHWM {} MiB, in huge pages {} MiB",
            resident >> 20,
            peak >> 20,
            huge_page_bytes().unwrap_or(0) >> 20
        ),
        None => format!("memory after {what}: /proc/self/status not readable"),
    }
}
