//! Transparent huge pages for the engine's tables.
//!
//! The engine keeps a million cards, their balances and a day of answers in memory and reads
//! them at random: with 4 KiB pages nearly every read also misses the TLB, and the page walk
//! costs about as much again as the read. glibc's malloc backs its heap with 2 MiB pages when
//! the `glibc.malloc.hugetlb=1` tunable is set (it asks with `madvise`, so the kernel's
//! `transparent_hugepage` setting must be `madvise` or `always`; with `never` nothing
//! changes). A tunable is read when a program starts, so `lsw-switch serve` starts itself
//! again, once, with it added to `GLIBC_TUNABLES` ([`restart_with_huge_pages`]); the engine's
//! benchmark does the same, so it measures the switch as it runs. Resident memory stays the
//! same (the bench prints both).
//!
//! `LSW_HUGE_PAGES=off` (or `0`) keeps the program as it was started; a `GLIBC_TUNABLES` that
//! already names the tunable (either value) is the operator's choice and is kept.

/// The glibc tunable.
pub const TUNABLE: &str = "glibc.malloc.hugetlb";
/// The environment variable glibc reads tunables from.
pub const TUNABLES_VAR: &str = "GLIBC_TUNABLES";
/// The switch's setting: `off` or `0` turns the restart off.
pub const SETTING_VAR: &str = "LSW_HUGE_PAGES";

/// What [`restart_with_huge_pages`] found, when it did not restart the program.
#[derive(Debug)]
pub enum NotRestarted {
    /// The tunable is set already (this is the restarted program, or the operator set it).
    AlreadySet,
    /// `LSW_HUGE_PAGES` turned it off.
    TurnedOff,
    /// Not a Linux glibc build: the tunable does not exist.
    Unsupported,
    /// The restart failed; the program goes on with 4 KiB pages.
    Failed(std::io::Error),
}

/// The value `GLIBC_TUNABLES` (`tunables`) gives the tunable (empty when it names it
/// without one), if it names it.
fn tunable_in(tunables: &str) -> Option<&str> {
    tunables.split(':').find_map(|entry| {
        let entry = entry.trim();
        let (name, value) = entry.split_once('=').unwrap_or((entry, ""));
        (name == TUNABLE).then_some(value)
    })
}

/// The `GLIBC_TUNABLES` value to restart with, given the current value and the switch's
/// setting; `None` to go on as started.
pub fn plan(tunables: Option<&str>, setting: Option<&str>) -> Option<String> {
    if setting.is_some_and(|value| matches!(value.trim(), "off" | "0" | "false")) {
        return None;
    }
    let asked = format!("{TUNABLE}=1");
    match tunables.map(str::trim).filter(|value| !value.is_empty()) {
        None => Some(asked),
        Some(value) if tunable_in(value).is_some() => None,
        Some(value) => Some(format!("{value}:{asked}")),
    }
}

/// Whether this process was started with huge pages asked for.
pub fn asked() -> bool {
    std::env::var(TUNABLES_VAR).is_ok_and(|value| tunable_in(&value) == Some("1"))
}

/// Starts this program again (same executable, arguments, environment and process id) with
/// the tunable added, and does not return when that works. Call it first thing in `main`,
/// before any thread is started. Returns why it did not restart otherwise.
pub fn restart_with_huge_pages() -> NotRestarted {
    let tunables = std::env::var(TUNABLES_VAR).ok();
    let setting = std::env::var(SETTING_VAR).ok();
    let Some(value) = plan(tunables.as_deref(), setting.as_deref()) else {
        return if tunables.as_deref().and_then(tunable_in).is_some() {
            NotRestarted::AlreadySet
        } else {
            NotRestarted::TurnedOff
        };
    };
    restart(&value)
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn restart(value: &str) -> NotRestarted {
    use std::os::unix::process::CommandExt;
    let program = match std::env::current_exe() {
        Ok(program) => program,
        Err(error) => return NotRestarted::Failed(error),
    };
    // `exec` replaces this process; it returns only on failure.
    let error = std::process::Command::new(program)
        .args(std::env::args_os().skip(1))
        .env(TUNABLES_VAR, value)
        .exec();
    NotRestarted::Failed(error)
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn restart(_value: &str) -> NotRestarted {
    NotRestarted::Unsupported
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tunable_is_added_to_what_is_set() {
        assert_eq!(plan(None, None).as_deref(), Some("glibc.malloc.hugetlb=1"));
        assert_eq!(
            plan(Some(" "), None).as_deref(),
            Some("glibc.malloc.hugetlb=1")
        );
        assert_eq!(
            plan(Some("glibc.malloc.arena_max=2"), Some("on")).as_deref(),
            Some("glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1")
        );
    }

    #[test]
    fn a_tunable_already_set_or_the_setting_off_keeps_the_program_as_started() {
        assert_eq!(plan(Some("glibc.malloc.hugetlb=1"), None), None);
        assert_eq!(
            plan(
                Some("glibc.malloc.arena_max=2:glibc.malloc.hugetlb=0"),
                None
            ),
            None
        );
        for off in ["off", "0", "false", " off "] {
            assert_eq!(plan(None, Some(off)), None);
        }
    }

    #[test]
    fn the_tunable_is_read_from_its_own_entry() {
        assert_eq!(tunable_in("glibc.malloc.hugetlb=1"), Some("1"));
        assert_eq!(
            tunable_in("glibc.malloc.arena_max=2:glibc.malloc.hugetlb=0"),
            Some("0")
        );
        assert_eq!(tunable_in("glibc.malloc.hugetlbx=1"), None);
        assert_eq!(tunable_in("glibc.malloc.arena_max=2"), None);
    }
}
