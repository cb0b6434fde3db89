//! Shared helpers for lbgw integration tests.
