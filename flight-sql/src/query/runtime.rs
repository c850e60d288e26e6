//! The runtime statements are parsed, planned and executed on, with thread stacks sized for
//! the longest statement the limits accept.

use super::QueryLimits;

/// Stack each thread of the [`QueryRuntime`] gets per byte of the longest SQL text accepted.
///
/// A statement deeper than the depth limit is refused, but the parser has already built its
/// tree, and dropping that tree recurses once per level; a chain of binary operators costs two
/// bytes of SQL per level. 256 bytes of stack per byte of SQL leaves room for the deepest tree
/// the longest statement can build, and for planning statements within the depth limit.
const STACK_PER_QUERY_BYTE: usize = 256;
/// Least and most stack of a query runtime thread (only the pages a thread touches are used).
const STACK_BYTES: std::ops::RangeInclusive<usize> = (16 << 20)..=(1 << 30);

/// The runtime statements are parsed and planned on and plans execute on (see
/// [`QueryEngine::with_executor`](super::QueryEngine::with_executor)), one worker thread per core, each with a stack sized for
/// the longest statement the limits accept. It shuts down without waiting when dropped, which
/// may happen inside another runtime (where dropping a plain `Runtime` panics).
#[derive(Debug)]
pub struct QueryRuntime(Option<tokio::runtime::Runtime>);

impl QueryRuntime {
    /// Starts the runtime for statements within `limits`; its threads are named
    /// `polder-query`.
    pub fn new(limits: &QueryLimits) -> std::io::Result<Self> {
        let stack = limits
            .max_query_bytes
            .saturating_mul(STACK_PER_QUERY_BYTE)
            .clamp(*STACK_BYTES.start(), *STACK_BYTES.end());
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .thread_name("polder-query")
            .thread_stack_size(stack)
            .enable_all()
            .build()?;
        Ok(Self(Some(runtime)))
    }

    /// A handle to spawn on it.
    pub fn handle(&self) -> tokio::runtime::Handle {
        self.0
            .as_ref()
            .expect("present until dropped")
            .handle()
            .clone()
    }
}

impl Drop for QueryRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}
