//! Calendar days and months at a fixed UTC offset, for budgets.

use crate::domain::Timestamp;

const DAY_MS: i64 = 86_400_000;

/// One day or month: a name for keys and the instant it ends.
#[derive(Clone, Debug)]
pub struct Window {
    pub id: String,
    pub end: Timestamp,
}

fn local_days(now: Timestamp, offset_hours: i64) -> (i64, i64) {
    let local = now.millis() + offset_hours * 3_600_000;
    (local.div_euclid(DAY_MS), offset_hours * 3_600_000)
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian
/// (Howard Hinnant's `civil_from_days`).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

pub fn day(now: Timestamp, offset_hours: i64) -> Window {
    let (days, offset) = local_days(now, offset_hours);
    let (year, month, day) = civil(days);
    Window {
        id: format!("{year:04}-{month:02}-{day:02}"),
        end: Timestamp::from_millis((days + 1) * DAY_MS - offset),
    }
}

pub fn month(now: Timestamp, offset_hours: i64) -> Window {
    let (days, offset) = local_days(now, offset_hours);
    let (year, month, _) = civil(days);
    let days_left = (1..=31)
        .find(|ahead| civil(days + ahead).2 == 1)
        .unwrap_or(31);
    let end = Timestamp::from_millis((days + days_left) * DAY_MS - offset);
    Window {
        id: format!("{year:04}-{month:02}"),
        end,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_and_months_follow_the_offset() {
        // 2026-11-30T20:00:00Z is 2026-12-01 05:00 in Japan (UTC+9).
        let now = Timestamp::from_millis(1_796_068_800_000);
        assert_eq!(day(now, 0).id, "2026-11-30");
        assert_eq!(day(now, 9).id, "2026-12-01");
        assert_eq!(month(now, 0).id, "2026-11");
        assert_eq!(month(now, 9).id, "2026-12");
        assert_eq!(day(now, 0).end.to_string(), "2026-12-01T00:00:00Z");
        assert_eq!(month(now, 9).end.to_string(), "2026-12-31T15:00:00Z");
        assert_eq!(civil(0), (1970, 1, 1));
        assert_eq!(civil(19_782), (2024, 2, 29));
    }
}
