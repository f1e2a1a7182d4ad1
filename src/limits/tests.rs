use super::*;

fn key<'a>(names: &'a KeyNames) -> KeyLimits<'a> {
    KeyLimits {
        id: "a",
        rpm: Some(2),
        tpm: Some(100),
        max_concurrent: Some(1),
        budgets: [None; 2],
        names,
    }
}

fn tok(tokens: u64) -> Estimate {
    Estimate {
        tokens,
        cost_micro_usd: 0,
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
}

#[test]
fn key_checks_take_reconcile_and_give_back() {
    rt().block_on(async {
        let l = Arc::new(Limiter::memory(Duration::from_secs(60)));
        let names = KeyNames::new("a");
        let k = key(&names);
        let mut h1 = Holds::default();
        let mut hdr = vec![];
        l.admit_key(&k, tok(80), &mut hdr, &mut h1).await.unwrap();
        assert!(hdr.contains(&("x-ratelimit-remaining-requests", "1".into())));
        assert!(hdr.contains(&("x-ratelimit-remaining-tokens", "20".into())));
        // The slot is held: a second request is refused, and takes nothing.
        let mut h2 = Holds::default();
        let r = l
            .admit_key(&k, tok(10), &mut vec![], &mut h2)
            .await
            .unwrap_err();
        assert!(r.message.contains("in flight"), "{r:?}");
        assert!(h2.is_empty());
        // The first used 30 tokens; its slot comes back when its holds drop.
        l.reconcile(&mut h1, Some(30), None, false).await;
        drop(h1);
        let mut h3 = Holds::default();
        let mut hdr = vec![];
        l.admit_key(&k, tok(60), &mut hdr, &mut h3).await.unwrap();
        assert!(hdr.contains(&("x-ratelimit-remaining-requests", "0".into())));
        assert!(
            hdr.contains(&("x-ratelimit-remaining-tokens", "10".into())),
            "{hdr:?}"
        );
        // A failed request gives its reservation back.
        l.reconcile(&mut h3, None, None, true).await;
        drop(h3);
        // rpm 2 reached: refused, and the tpm window is only read.
        let mut h4 = Holds::default();
        let mut hdr = vec![];
        let r = l
            .admit_key(&k, tok(50), &mut hdr, &mut h4)
            .await
            .unwrap_err();
        assert_eq!(r.status, 429);
        assert!(r.message.contains("2 requests per minute"), "{r:?}");
        assert!(
            hdr.contains(&("x-ratelimit-remaining-tokens", "70".into())),
            "{hdr:?}"
        );
    });
}

#[test]
fn tpm_refusal_gives_the_request_entry_back() {
    rt().block_on(async {
        let l = Arc::new(Limiter::memory(Duration::from_secs(60)));
        let names = KeyNames::new("b");
        let k = KeyLimits {
            id: "b",
            rpm: Some(1),
            tpm: Some(100),
            max_concurrent: None,
            budgets: [None; 2],
            names: &names,
        };
        let mut h = Holds::default();
        let r = l
            .admit_key(&k, tok(500), &mut vec![], &mut h)
            .await
            .unwrap_err();
        assert!(r.message.contains("tokens per minute"), "{r:?}");
        let mut h = Holds::default();
        l.admit_key(&k, tok(50), &mut vec![], &mut h)
            .await
            .expect("the refused request's rpm entry was given back");
    });
}

#[test]
fn store_failure_falls_back_or_refuses() {
    rt().block_on(async {
        let names = KeyNames::new("c");
        let k = KeyLimits {
            id: "c",
            rpm: Some(1),
            tpm: None,
            max_concurrent: Some(1),
            budgets: [None; 2],
            names: &names,
        };
        let open = Arc::new(Limiter::new(
            LimitStore::Failing,
            OnError::Open,
            Duration::from_secs(60),
        ));
        let mut h = Holds::default();
        open.admit_key(&k, tok(0), &mut vec![], &mut h)
            .await
            .unwrap();
        assert!(open.degraded());
        // Local counters still hold the limit.
        let r = open
            .admit_key(&k, tok(0), &mut vec![], &mut Holds::default())
            .await
            .unwrap_err();
        assert_eq!(r.status, 429);
        drop(h);
        assert_eq!(open.fallback.slots_in_use("key:c:concurrent"), 0);

        let closed = Arc::new(Limiter::new(
            LimitStore::Failing,
            OnError::Closed,
            Duration::from_secs(60),
        ));
        let r = closed
            .admit_key(&k, tok(0), &mut vec![], &mut Holds::default())
            .await
            .unwrap_err();
        assert_eq!(r.status, 503);
    });
}

#[test]
fn global_limits_and_giving_back_the_key() {
    rt().block_on(async {
        let l = Arc::new(Limiter::memory(Duration::from_secs(60)));
        let names = KeyNames::new("g");
        let k = KeyLimits {
            id: "g",
            rpm: Some(10),
            tpm: None,
            max_concurrent: None,
            budgets: [None; 2],
            names: &names,
        };
        let g = GlobalLimits {
            rpm: Some(2),
            max_concurrent: Some(1),
        };
        let mut a = Holds::default();
        l.admit_key(&k, tok(0), &mut vec![], &mut a).await.unwrap();
        l.admit_global(g, &mut a).await.unwrap();
        let mut b = Holds::default();
        let mut hdr = vec![];
        l.admit_key(&k, tok(0), &mut hdr, &mut b).await.unwrap();
        assert!(hdr.contains(&("x-ratelimit-remaining-requests", "8".into())));
        let r = l.admit_global(g, &mut b).await.unwrap_err();
        assert!(r.message.contains("1 requests in flight"), "{r:?}");
        drop(a);
        // b's key entry came back with the refusal: still 8 left after this one.
        let mut c = Holds::default();
        let mut hdr = vec![];
        l.admit_key(&k, tok(0), &mut hdr, &mut c).await.unwrap();
        assert!(
            hdr.contains(&("x-ratelimit-remaining-requests", "8".into())),
            "{hdr:?}"
        );
        l.admit_global(g, &mut c).await.unwrap();
        drop(c);
        let r = l.admit_global(g, &mut Holds::default()).await.unwrap_err();
        assert!(r.message.contains("2 requests per minute"), "{r:?}");
        assert!(r.retry_after > Duration::from_secs(59), "{r:?}");
    });
}

#[test]
fn target_windows_scale_with_the_minute() {
    rt().block_on(async {
        // A 1 s "minute": the hour is 60 s, the day 1440 s.
        let l = Limiter::memory(Duration::from_secs(1));
        let t = TargetLimits::new("p/m".into(), [Some(5), Some(2), Some(3), Some(100)]).unwrap();
        let mut a = l.admit_target(&t, 60).await.unwrap();
        let r = l.admit_target(&t, 60).await.unwrap_err();
        assert!(r.message.contains("100 tokens per minute"), "{r:?}");
        // The refused attempt kept nothing: after a's tokens come back, two fit.
        l.reconcile(&mut a, None, None, true).await;
        let _b = l.admit_target(&t, 10).await.unwrap();
        let r = l.admit_target(&t, 10).await.unwrap_err();
        assert_eq!(
            r.message,
            "target 'p/m' reached its limit of 2 requests per hour"
        );
        assert!(
            r.retry_after > Duration::from_secs(59) && r.retry_after <= Duration::from_secs(60),
            "{r:?}"
        );
        assert!(TargetLimits::new("x".into(), [None; 4]).is_none());
        assert_eq!(&*t.names[2], "target:p/m:rpd");
    });
}

#[test]
fn target_left_reads_without_taking() {
    rt().block_on(async {
        let l = Limiter::memory(Duration::from_secs(60));
        let t = TargetLimits::new("p/m".into(), [Some(5), None, Some(3), Some(100)]).unwrap();
        let full = [
            Some((5, Some(5))),
            None,
            Some((3, Some(3))),
            Some((100, Some(100))),
        ];
        assert_eq!(l.target_left(&t).await, full);
        // Reading again took nothing.
        assert_eq!(l.target_left(&t).await, full);
        let _h = l.admit_target(&t, 40).await.unwrap();
        assert_eq!(
            l.target_left(&t).await,
            [
                Some((5, Some(4))),
                None,
                Some((3, Some(2))),
                Some((100, Some(60)))
            ]
        );
        let f = Limiter::new(LimitStore::Failing, OnError::Open, Duration::from_secs(60));
        assert_eq!(f.target_left(&t).await[0], Some((5, None)));
    });
}

#[test]
fn budgets_reserve_reconcile_and_refuse_until_the_period_ends() {
    rt().block_on(async {
        let l = Arc::new(Limiter::memory(Duration::from_secs(60)));
        let names = KeyNames::new("d");
        let k = KeyLimits {
            id: "d",
            rpm: None,
            tpm: None,
            max_concurrent: None,
            budgets: [Some(50_000), Some(1_000_000)],
            names: &names,
        };
        let est = |c| Estimate {
            tokens: 0,
            cost_micro_usd: c,
        };
        // An estimate larger than the budget still gets what is left.
        let mut a = Holds::default();
        l.admit_key(&k, est(80_000), &mut vec![], &mut a)
            .await
            .unwrap();
        // Meanwhile the reservation blocks another request.
        let r = l
            .admit_key(&k, est(1), &mut vec![], &mut Holds::default())
            .await
            .unwrap_err();
        assert!(
            r.message.contains("spent its daily budget of $0.05"),
            "{r:?}"
        );
        // It cost 30_000: 20_000 left; b reserves 15_000 and costs 30_000.
        l.reconcile(&mut a, Some(1), Some(30_000), false).await;
        let mut b = Holds::default();
        l.admit_key(&k, est(15_000), &mut vec![], &mut b)
            .await
            .unwrap();
        l.reconcile(&mut b, Some(1), Some(30_000), false).await;
        let r = l
            .admit_key(&k, est(0), &mut vec![], &mut Holds::default())
            .await
            .unwrap_err();
        let (_, day_end) = names.budgets[0].at(store::unix_ms());
        let left = day_end - store::unix_ms();
        assert!(
            r.retry_after.as_millis() as u64 <= left
                && r.retry_after.as_millis() as u64 + 5_000 >= left,
            "Retry-After {:?} is not until the UTC day ends ({left} ms)",
            r.retry_after
        );
        // The monthly counter holds what was spent, and a refused daily
        // check took nothing from it.
        let (month, _) = names.budgets[1].at(store::unix_ms());
        let m = l.store.as_memory().unwrap();
        assert_eq!(m.counter_total_at(store::unix_ms(), &month), 60_000);
        // A failed request gives its reservation back.
        let names2 = KeyNames::new("e");
        let k2 = KeyLimits {
            names: &names2,
            id: "e",
            ..k
        };
        let mut c = Holds::default();
        l.admit_key(&k2, est(40_000), &mut vec![], &mut c)
            .await
            .unwrap();
        l.reconcile(&mut c, None, None, true).await;
        let (day, _) = names2.budgets[0].at(store::unix_ms());
        assert_eq!(m.counter_total_at(store::unix_ms(), &day), 0);
    });
}

#[test]
fn health_says_how_limits_count() {
    rt().block_on(async {
        let mem = Limiter::memory(Duration::from_secs(60));
        assert_eq!(mem.health(), (true, "memory".into()));
        let names = KeyNames::new("h");
        let k = KeyLimits {
            id: "h",
            rpm: Some(5),
            tpm: None,
            max_concurrent: None,
            budgets: [None; 2],
            names: &names,
        };
        for (on_error, ready, text) in [
            (
                OnError::Open,
                true,
                "degraded: store failing, counting locally",
            ),
            (OnError::Closed, false, "unavailable: store failing"),
        ] {
            let l = Arc::new(Limiter::new(
                LimitStore::Failing,
                on_error,
                Duration::from_secs(60),
            ));
            let _ = l
                .admit_key(&k, tok(0), &mut vec![], &mut Holds::default())
                .await;
            let (ok, said) = l.health();
            assert_eq!(ok, ready);
            assert!(said.starts_with(text), "{said}");
        }
        // Redis: built without I/O; not ready with `closed` until connected.
        let conf: LimitsConf = serde_yaml::from_str(
            "{backend: redis, url: \"redis://:pw@127.0.0.1:1/2\", on_error: closed, timeout_ms: 7}",
        )
        .unwrap();
        let l = Limiter::from_conf(&conf, Duration::from_secs(60)).unwrap();
        assert!(l.is_shared());
        assert_eq!(
            l.describe(),
            "in Redis at 127.0.0.1:1/2 (timeout 7 ms, on_error: closed)"
        );
        let (ok, said) = l.health();
        assert!(!ok && said.contains("not connected yet"), "{said}");
        let mut other = conf.clone();
        other.rpm = Some(3);
        assert!(!store_conf_changed(&conf, &other), "limits follow reloads");
        other.timeout_ms = None;
        assert!(store_conf_changed(&conf, &other));
    });
}

#[test]
fn helpers() {
    assert_eq!(estimate_tokens(4001, Some(100)), 1101);
    assert_eq!(reset_text(Duration::from_millis(61_500)), "1m2s");
    assert_eq!(reset_text(Duration::from_millis(200)), "1s");
}
