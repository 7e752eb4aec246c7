//! Testing utilities for zlink-core.
//!
//! This module provides mock implementations and testing utilities that are shared
//! across different test modules in the crate.

pub mod mock_socket;
