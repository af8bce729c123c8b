//! Memory a hostile push can make one request take. A counting allocator records the peak of
//! live heap bytes while a parser runs; this file holds one test so nothing else allocates
//! meanwhile.

use auren_core::ingest::IngestLimits;
use auren_core::vendors::{health_auto_export as hae, healthkit};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwards the caller's layout unchanged to the system allocator.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let live = LIVE.fetch_add(layout.size(), Relaxed) + layout.size();
            PEAK.fetch_max(live, Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `alloc` above with this layout.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Relaxed);
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Peak heap bytes above what was live before `f` ran.
fn peak_during(f: impl FnOnce()) -> usize {
    let base = LIVE.load(Relaxed);
    PEAK.store(base, Relaxed);
    f();
    PEAK.load(Relaxed) - base
}

#[test]
fn a_mebibyte_push_takes_a_bounded_multiple_of_its_size() {
    let now = "2025-01-28T00:00:00Z".parse().unwrap();
    let limits = IngestLimits::default();
    let mib = 1 << 20;
    let zeros = vec!["0"; 500_000].join(",");
    let worst_sample =
        r#"{"type":"heartRate","value":70,"unit":"x","timestamp":"2025-01-27T10:30:00Z"}"#;
    let at_cap = vec![worst_sample; mib / (worst_sample.len() + 1)].join(",");
    let bodies = [
        format!(r#"{{"user_id":"u1","samples":[{zeros}]}}"#),
        format!(r#"{{"user_id":"u1","samples":[{at_cap}]}}"#),
        format!(r#"{{"data":{{"metrics":[{{"name":"heart_rate","data":[{zeros}]}}]}}}}"#),
    ];
    let mut peaks = Vec::new();
    for body in &bodies {
        assert!(body.len() <= mib + 100, "{}", body.len());
        let tree = peak_during(|| {
            let _ = serde_json::from_slice::<serde_json::Value>(body.as_bytes());
        });
        let hk = peak_during(|| {
            let _ = healthkit::parse(body.as_bytes(), &limits, now);
        });
        let hae = peak_during(|| {
            let _ = hae::parse(body.as_bytes(), &limits, now);
        });
        peaks.push((tree, hk, hae));
    }
    println!("peak heap bytes (JSON tree alone, healthkit, health auto export): {peaks:?}");
    // The JSON tree is built before any limit can be checked: about 70 bytes per element with
    // serde_json's order-preserving maps, and a 1 MiB body holds up to 500,000 elements. What the
    // old parser added on top, a formatted refusal per sample (2.6 MB for the full push of
    // invalid samples here), is gone: refusals beyond the listed hundred cost nothing.
    for (body, (tree, hk, hae)) in bodies.iter().zip(&peaks) {
        assert!(*tree <= 64 * body.len(), "{peaks:?}");
        assert!(
            *hk <= tree + 256 * 1024 && *hae <= tree + 256 * 1024,
            "{peaks:?}"
        );
    }
}
