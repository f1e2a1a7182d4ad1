//! Per-request cost of the limit checks on the in-memory store (criterion). Run:
//!   CARGO_TARGET_DIR=<target dir> cargo bench --bench limits
//! One "request" = what the proxy does for it: the key's checks (a
//! concurrency slot, rpm, tpm reservation; with budgets, two period
//! counters), the gateway's (slot, rpm), one target's (rpm, rph, rpd, tpm),
//! reconciliation with the reported usage, and the slots given back. Windows
//! are 10 ms so the logs stay at a steady, small size.

use aigate::limits::period::{Period, PeriodName};
use aigate::limits::{Estimate, GlobalLimits, Holds, KeyLimits, KeyNames, Limiter, TargetLimits};
use criterion::{Criterion, criterion_group, criterion_main};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let l = Arc::new(Limiter::memory(Duration::from_millis(10)));
    let names = KeyNames::new("team-a");
    let key = |budgets| KeyLimits {
        id: "team-a",
        rpm: Some(u64::MAX / 4),
        tpm: Some(u64::MAX / 4),
        max_concurrent: Some(1_000),
        budgets,
        names: &names,
    };
    let plain = key([None; 2]);
    let budgeted = key([Some(u64::MAX / 4); 2]);
    let global = GlobalLimits {
        rpm: Some(u64::MAX / 4),
        max_concurrent: Some(100_000),
    };
    let target =
        TargetLimits::new("openai/gpt-4o".into(), [Some(u64::MAX / 4); 4]).expect("limits");
    let est = Estimate {
        tokens: 700,
        cost_micro_usd: 900,
    };
    let mut g = c.benchmark_group("limits");
    for (name, k, with_target) in [
        ("key_rpm_tpm_slot", &plain, false),
        ("key_global_target", &plain, true),
        ("key_budgets_global_target", &budgeted, true),
    ] {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let t = Instant::now();
                    for _ in 0..iters {
                        let mut holds = Holds::default();
                        let mut headers = Vec::with_capacity(8);
                        l.admit_key(k, est, &mut headers, &mut holds)
                            .await
                            .expect("admitted");
                        l.admit_global(global, &mut holds).await.expect("admitted");
                        if with_target {
                            let h = l.admit_target(&target, est.tokens).await.expect("admitted");
                            holds.absorb(h);
                        }
                        l.reconcile(&mut holds, Some(300), Some(400), false).await;
                        drop(holds);
                    }
                    t.elapsed()
                })
            })
        });
    }
    // The budget counter name of the current UTC day (built once per day).
    let day = PeriodName::new("key:team-a:usd:day:".into(), Period::Day);
    g.bench_function("period_name", |b| b.iter(|| day.at(1_795_446_245_000)));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
