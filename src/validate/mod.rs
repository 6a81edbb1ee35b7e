//! Submission validation (placeholder being written).
