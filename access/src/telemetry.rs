//! Metrics of access control, on the global meter (no-ops until the binary installs one):
//! audit records that could not be written, and the age of the JWKS the node verifies tokens
//! with. No identity, claim or token is ever recorded.

use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use opentelemetry::metrics::{Counter, ObservableGauge};

/// When the JWKS was last loaded, in milliseconds since the Unix epoch (0: never).
static JWKS_LOADED_MS: AtomicU64 = AtomicU64::new(0);

struct AccessInstruments {
    audit_failures: Counter<u64>,
    _jwks_age: ObservableGauge<f64>,
}

static ACCESS_INSTRUMENTS: LazyLock<AccessInstruments> = LazyLock::new(|| {
    let meter = polder_flight_sql::telemetry::meter();
    AccessInstruments {
        audit_failures: meter
            .u64_counter("polder.audit.write_failures")
            .with_description(
                "Audit records that could not be written (the query they belong to was refused)",
            )
            .build(),
        _jwks_age: meter
            .f64_observable_gauge("polder.jwks.age")
            .with_unit("s")
            .with_description(
                "Seconds since the JWKS was last loaded or refreshed; grows when refreshes fail",
            )
            .with_callback(|gauge| {
                let loaded = JWKS_LOADED_MS.load(Ordering::Relaxed);
                if loaded > 0 {
                    let age_ms = now_ms().saturating_sub(loaded);
                    gauge.observe(age_ms as f64 / 1000.0, &[]);
                }
            })
            .build(),
    }
});

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The JWKS was loaded or refreshed now.
pub(crate) fn jwks_loaded() {
    JWKS_LOADED_MS.store(now_ms(), Ordering::Relaxed);
    LazyLock::force(&ACCESS_INSTRUMENTS);
}

/// An audit record could not be written.
pub(crate) fn audit_write_failed() {
    ACCESS_INSTRUMENTS.audit_failures.add(1, &[]);
}

/// Registers the access-control instruments, so that they are listed (at zero) before the
/// first event.
pub fn register() {
    LazyLock::force(&ACCESS_INSTRUMENTS);
}
