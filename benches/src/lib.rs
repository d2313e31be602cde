//! Shared fixtures of the criterion benchmarks under `benches/benches/`.
