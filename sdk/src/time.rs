//! UTC calendar dates and times of Unix timestamps, in the formats request
//! signatures use. The gateway's WASI clock gives seconds since the epoch
//! (`std::time::SystemTime`); these turn them into text without a date
//! library.

/// A UTC date and time of day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UtcDateTime {
    pub year: u64,
    pub month: u64,
    pub day: u64,
    pub hour: u64,
    pub minute: u64,
    pub second: u64,
}

impl UtcDateTime {
    /// The UTC date and time `secs` seconds after 1970-01-01T00:00:00Z
    /// (leap seconds are not counted, as Unix time does not count them).
    pub fn from_unix(secs: u64) -> Self {
        let (year, month, day) = civil_from_days(secs / 86_400);
        let rem = secs % 86_400;
        Self {
            year,
            month,
            day,
            hour: rem / 3600,
            minute: (rem % 3600) / 60,
            second: rem % 60,
        }
    }
}

/// `YYYY-MM-DD`: the UTC day of a Unix timestamp (Tencent's TC3 scope).
pub fn utc_date(secs: u64) -> String {
    let t = UtcDateTime::from_unix(secs);
    format!("{:04}-{:02}-{:02}", t.year, t.month, t.day)
}

/// `YYYYMMDD`: the UTC day of a Unix timestamp, ISO 8601 basic format (AWS
/// SigV4's credential scope).
pub fn utc_date_basic(secs: u64) -> String {
    let t = UtcDateTime::from_unix(secs);
    format!("{:04}{:02}{:02}", t.year, t.month, t.day)
}

/// `YYYYMMDDTHHMMSSZ`: a Unix timestamp in UTC, ISO 8601 basic format (AWS
/// SigV4's `x-amz-date`).
pub fn utc_datetime_basic(secs: u64) -> String {
    let t = UtcDateTime::from_unix(secs);
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        t.year, t.month, t.day, t.hour, t.minute, t.second
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard
/// Hinnant's `civil_from_days`, for non-negative counts).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_and_known_instants() {
        assert_eq!(utc_datetime_basic(0), "19700101T000000Z");
        assert_eq!(utc_date(0), "1970-01-01");
        // AWS's SigV4 example date, and Tencent's TC3 example timestamp.
        assert_eq!(utc_datetime_basic(1_440_938_160), "20150830T123600Z");
        assert_eq!(utc_date_basic(1_440_938_160), "20150830");
        assert_eq!(utc_date(1_551_113_065), "2019-02-25");
        // 2^31 - 1: the last second of 32-bit Unix time.
        assert_eq!(utc_datetime_basic(2_147_483_647), "20380119T031407Z");
        assert_eq!(
            UtcDateTime::from_unix(1_700_000_000),
            UtcDateTime {
                year: 2023,
                month: 11,
                day: 14,
                hour: 22,
                minute: 13,
                second: 20
            }
        );
    }

    #[test]
    fn leap_years() {
        // 2000 is a leap year (divisible by 400), 2100 is not (by 100).
        assert_eq!(utc_date(951_782_400), "2000-02-29");
        assert_eq!(utc_date(951_868_800), "2000-03-01");
        assert_eq!(utc_date(1_709_251_199), "2024-02-29");
        assert_eq!(utc_date(1_709_251_200), "2024-03-01");
        assert_eq!(utc_date(4_107_456_000), "2100-02-28");
        assert_eq!(utc_date(4_107_542_400), "2100-03-01");
        assert_eq!(utc_datetime_basic(4_102_444_799), "20991231T235959Z");
        assert_eq!(utc_date(1_798_761_599), "2026-12-31");
        // Day 366 of a leap year is 31 December.
        assert_eq!(utc_date(1_735_603_200), "2024-12-31");
    }
}
