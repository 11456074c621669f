//! `vision-coordinator`: the Vision pool server.
//!
//! Pool hosts run it to serve jobs over HTTP, verify every share by
//! recomputing VisionX on the CPU, and pay out. Today it holds the share
//! verifier that everything else will build on; the HTTP server, the
//! devnet chain, vardiff and payouts come next (see docs/ARCHITECTURE.md).
//!
//! # Layout
//! - [`share_verifier`]: recomputes submitted shares' digests in lockstep
//!   batches and judges them against the share and network difficulty.
//!
//! **Architecture invariant:** the coordinator never trusts a digest a
//! worker sends; every verdict comes from its own recomputation.

pub mod share_verifier;
