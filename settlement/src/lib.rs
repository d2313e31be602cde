//! Settlement: will hold cycles, the working-day calendar, payout files and reconciliation
//! (DESIGN.md section 7), run by the `lsw-settle` binary. Not built yet.
