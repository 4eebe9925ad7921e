//! Checkpoint reading and writing.
