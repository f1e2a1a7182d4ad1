//! UTC calendar periods for budgets, and per-key counter names that follow
//! them (built once per period, not per request).

use std::sync::{Arc, Mutex};

const DAY_MS: u64 = 86_400_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    Day,
    Month,
}

/// (year, month 1-12, day 1-31) of a day count since 1970-01-01
/// (Howard Hinnant's `civil_from_days`).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Days since 1970-01-01 of a civil date (`days_from_civil`).
fn days(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

impl Period {
    /// (start, end) in Unix ms of the period holding `unix_ms`.
    pub fn bounds(self, unix_ms: u64) -> (u64, u64) {
        let day = unix_ms / DAY_MS;
        match self {
            Period::Day => (day * DAY_MS, (day + 1) * DAY_MS),
            Period::Month => {
                let (y, m, _) = civil(day as i64);
                let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
                (
                    days(y, m, 1) as u64 * DAY_MS,
                    days(ny, nm, 1) as u64 * DAY_MS,
                )
            }
        }
    }

    /// `2026-11-23` or `2026-11`.
    pub fn label(self, start_ms: u64) -> String {
        let (y, m, d) = civil((start_ms / DAY_MS) as i64);
        match self {
            Period::Day => format!("{y:04}-{m:02}-{d:02}"),
            Period::Month => format!("{y:04}-{m:02}"),
        }
    }

    pub fn word(self) -> &'static str {
        match self {
            Period::Day => "daily",
            Period::Month => "monthly",
        }
    }
}

/// The counter name of the current period (`key:team-a:usd:day:2026-11-23`),
/// rebuilt only when the period changes.
#[derive(Debug)]
pub struct PeriodName {
    prefix: String,
    period: Period,
    /// (period start, name, period end).
    cur: Mutex<(u64, Arc<str>, u64)>,
}

impl PeriodName {
    pub fn new(prefix: String, period: Period) -> Self {
        PeriodName {
            prefix,
            period,
            cur: Mutex::new((u64::MAX, Arc::from(""), 0)),
        }
    }

    pub fn period(&self) -> Period {
        self.period
    }

    /// (name, period end in Unix ms) for the period holding `unix_ms`.
    pub fn at(&self, unix_ms: u64) -> (Arc<str>, u64) {
        let mut cur = self.cur.lock().unwrap_or_else(|e| e.into_inner());
        if !(cur.0..cur.2).contains(&unix_ms) {
            let (start, end) = self.period.bounds(unix_ms);
            let name = format!("{}{}", self.prefix, self.period.label(start));
            *cur = (start, Arc::from(name), end);
        }
        (cur.1.clone(), cur.2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_days_and_months() {
        // 2026-11-23T15:04:05Z
        let t = 1_795_446_245_000;
        assert_eq!(Period::Day.label(Period::Day.bounds(t).0), "2026-11-23");
        assert_eq!(
            Period::Day.bounds(t),
            (1_795_392_000_000, 1_795_478_400_000)
        );
        let (s, e) = Period::Month.bounds(t);
        assert_eq!(Period::Month.label(s), "2026-11");
        assert_eq!(Period::Day.label(s), "2026-11-01");
        assert_eq!(Period::Day.label(e), "2026-12-01");
        // December rolls into the next year; February of a leap year has 29 days.
        let dec = Period::Month.bounds(days(2026, 12, 31) as u64 * DAY_MS + 1);
        assert_eq!(Period::Day.label(dec.1), "2027-01-01");
        let feb = Period::Month.bounds(days(2028, 2, 10) as u64 * DAY_MS);
        assert_eq!((feb.1 - feb.0) / DAY_MS, 29);
        assert_eq!(civil(0), (1970, 1, 1));
        assert_eq!(days(2000, 3, 1), 11_017);
    }

    #[test]
    fn names_follow_the_period() {
        let n = PeriodName::new("key:a:usd:day:".into(), Period::Day);
        let t = 1_795_446_245_000;
        let (a, end) = n.at(t);
        assert_eq!(&*a, "key:a:usd:day:2026-11-23");
        assert_eq!(end, 1_795_478_400_000);
        let (b, _) = n.at(t + 1000);
        assert!(Arc::ptr_eq(&a, &b), "same period: the name is reused");
        assert_eq!(&*n.at(end).0, "key:a:usd:day:2026-11-24");
    }
}
