//! Integration tests of polder-sample-data: one binary, one module per concern.

mod files;
mod tables;
