//! Integration tests of the node library, in one test binary: nodes started in-process on
//! loopback and queried as `polder sql` queries them. (SQL behaviour is in the sqllogictest
//! files, `tests/sqllogictests.rs`.)

mod runtime_filter;
