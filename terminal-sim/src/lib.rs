//! The terminal simulator: will speak LSTI-1 as a real terminal does (demo, load, scenario, check). Not built yet.
