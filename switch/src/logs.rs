//! The log filter every binary of the workspace uses: `RUST_LOG`, in the `target=level` list
//! syntax (`info`, `switch=debug,sqlx=warn`), default `info`.
//!
//! It is `tracing_subscriber`'s `Targets`, not its `EnvFilter`: `EnvFilter` adds span and field
//! filters that nobody here uses and pulls in a regex engine, which cost a fresh build several
//! seconds on two cores.

use tracing_subscriber::filter::{LevelFilter, Targets};

/// The variable the filter is read from.
pub const FILTER_VARIABLE: &str = "RUST_LOG";

/// The filter `RUST_LOG` names, or `info` when it is unset. A value that does not parse is
/// reported on stderr (logging is not set up yet) and replaced by `info`, so a typo never
/// silences the logs.
pub fn filter() -> Targets {
    let default = Targets::new().with_default(LevelFilter::INFO);
    match std::env::var(FILTER_VARIABLE) {
        Ok(text) if !text.trim().is_empty() => match text.parse::<Targets>() {
            Ok(targets) => targets,
            Err(error) => {
                eprintln!("{FILTER_VARIABLE} is not a valid filter ({error}); logging at info");
                default
            }
        },
        _ => default,
    }
}
