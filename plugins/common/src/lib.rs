//! Helpers shared by the default plugins. Nothing here knows the WIT
//! types: each plugin binds its own world.

mod arena;

pub use arena::Arena;
use serde::Deserialize;
use std::borrow::Cow;
use std::collections::BTreeMap;

/// Where a default plugin's memory comes from: a 64 KiB arena first (see
/// [`Arena`]), which suits the fresh instance kefu gives each call.
/// Only on wasm32 without threads (wasm32-wasip2); natively, as in the
/// benchmarks' floor, the program's own allocator is used.
#[cfg(all(target_arch = "wasm32", not(target_feature = "atomics")))]
#[global_allocator]
static ALLOC: Arena<{ 64 * 1024 }> = Arena::new();

/// A config text: borrowed from the config JSON (or a static default) when
/// it can be, owned only when the JSON escapes something in it.
pub type Text<'a> = Cow<'a, str>;

pub const SECS_PER_DAY: i64 = 86_400;
pub const SECS_PER_HOUR: i64 = 3_600;

/// Parse a plugin's config JSON into `T`, which may borrow from it (see
/// [`Text`]); serde's `default` attributes fill the gaps. The error names
/// the field.
pub fn load_config<'a, T: Deserialize<'a>>(json: &'a str) -> Result<T, String> {
    let json = if json.trim().is_empty() { "{}" } else { json };
    serde_json::from_str(json).map_err(|e| format!("invalid plugin config: {e}"))
}

/// A shop's clock: unix seconds seen in the shop's time zone.
#[derive(Clone, Copy, Debug)]
pub struct ShopTime {
    /// Offset of the shop's time zone from UTC, in minutes (China: 480).
    pub offset_minutes: i32,
}

impl ShopTime {
    fn offset(self) -> i64 {
        i64::from(self.offset_minutes) * 60
    }

    /// Minutes since local midnight (0..1440).
    pub fn minute_of_day(self, ts: i64) -> u32 {
        (ts.saturating_add(self.offset()).rem_euclid(SECS_PER_DAY) / 60) as u32
    }

    /// Unix time of local midnight of the day `ts` falls in. Arithmetic
    /// here and below saturates: a time near i64's ends stays there
    /// instead of wrapping to the other end.
    pub fn day_start(self, ts: i64) -> i64 {
        let local = ts.saturating_add(self.offset());
        local
            .saturating_sub(local.rem_euclid(SECS_PER_DAY))
            .saturating_sub(self.offset())
    }

    /// Unix time of `hour:minute` local, `days` days after the day of `ts`.
    pub fn at(self, ts: i64, days: i64, hour: u32, minute: u32) -> i64 {
        self.day_start(ts)
            .saturating_add(days.saturating_mul(SECS_PER_DAY))
            .saturating_add(i64::from(hour) * SECS_PER_HOUR + i64::from(minute) * 60)
    }

    /// The first moment at or after `ts` inside the daily window
    /// `[from, until)` (minutes since local midnight, `from < until`):
    /// `ts` itself when it is inside, else the window's next start.
    pub fn next_in_window(self, ts: i64, from: u32, until: u32) -> i64 {
        let minute = self.minute_of_day(ts);
        if (from..until).contains(&minute) {
            ts
        } else if minute < from {
            self.at(ts, 0, from / 60, from % 60)
        } else {
            self.at(ts, 1, from / 60, from % 60)
        }
    }
}

/// Parse "HH:MM" (00:00 to 24:00) into minutes since midnight.
pub fn parse_hhmm(text: &str) -> Result<u32, String> {
    let bad = || format!("invalid time `{text}`: expected HH:MM");
    let (h, m) = text.trim().split_once(':').ok_or_else(bad)?;
    let h: u32 = h.parse().map_err(|_| bad())?;
    let m: u32 = m.parse().map_err(|_| bad())?;
    if m >= 60 || h > 24 || (h == 24 && m != 0) {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

/// Format minutes since midnight as "HH:MM".
pub fn format_hhmm(minutes: u32) -> String {
    format!("{:02}:{:02}", (minutes / 60) % 24, minutes % 60)
}

/// Fill `{name}` placeholders from `vars`; unknown placeholders stay as-is.
pub fn fill<V: AsRef<str>>(template: &str, vars: &BTreeMap<&str, V>) -> String {
    let mut out = String::with_capacity(template.len() + 32);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let known = after
            .find('}')
            .and_then(|close| Some((close, vars.get(&after[..close])?)));
        match known {
            Some((close, value)) => {
                out.push_str(value.as_ref());
                rest = &after[close + 1..];
            }
            _ => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Format fen as yuan, e.g. 12950 -> "129.50".
pub fn yuan(fen: u64) -> String {
    format!("{}.{:02}", fen / 100, fen % 100)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CST: ShopTime = ShopTime {
        offset_minutes: 480,
    };

    #[test]
    fn times_near_the_ends_saturate_instead_of_wrapping() {
        assert_eq!(CST.at(i64::MAX, 7, 10, 0), i64::MAX);
        assert!(CST.day_start(i64::MAX) > i64::MAX - 2 * SECS_PER_DAY);
        assert!(CST.day_start(i64::MIN) < 0);
        assert!(CST.next_in_window(i64::MAX, 600, 1260) > 0);
        assert!(CST.minute_of_day(i64::MAX) < 1440);
    }

    #[test]
    fn the_contact_window_at_its_edges() {
        // 2026-11-26 00:00 in China (UTC+8) is 2026-11-25T16:00Z.
        let midnight = 1_795_622_400;
        assert_eq!(CST.minute_of_day(midnight), 0);
        let (from, until) = (19 * 60, 21 * 60);
        let at = |h: i64, m: i64| midnight + h * SECS_PER_HOUR + m * 60;
        // Before the window: its start today; inside: as is; at or after
        // its end, and at midnight: tomorrow's start.
        assert_eq!(CST.next_in_window(at(4, 52), from, until), at(19, 0));
        assert_eq!(CST.next_in_window(at(0, 0), from, until), at(19, 0));
        assert_eq!(CST.next_in_window(at(18, 59), from, until), at(19, 0));
        assert_eq!(CST.next_in_window(at(19, 0), from, until), at(19, 0));
        assert_eq!(CST.next_in_window(at(20, 59), from, until), at(20, 59));
        assert_eq!(CST.next_in_window(at(21, 0), from, until), at(24 + 19, 0));
        assert_eq!(CST.next_in_window(at(23, 59), from, until), at(24 + 19, 0));
        // The UTC day boundary (08:00 in China) is nothing special.
        assert_eq!(CST.next_in_window(at(8, 0), 480, 600), at(8, 0));
        assert_eq!(CST.next_in_window(at(7, 59), 480, 600), at(8, 0));
    }

    #[test]
    fn shop_time_in_china() {
        // 2026-11-22T01:30:00Z is 09:30 in Beijing.
        let ts = 1_795_311_000;
        assert_eq!(CST.minute_of_day(ts), 9 * 60 + 30);
        assert_eq!(
            CST.at(ts, 7, 10, 0) - CST.day_start(ts),
            7 * SECS_PER_DAY + 10 * SECS_PER_HOUR
        );
        assert_eq!(CST.minute_of_day(CST.day_start(ts)), 0);
    }

    #[test]
    fn hhmm_round_trip_and_errors() {
        assert_eq!(parse_hhmm("08:30"), Ok(510));
        assert_eq!(parse_hhmm("24:00"), Ok(1440));
        assert!(parse_hhmm("24:30").is_err());
        assert!(parse_hhmm("8h").is_err());
        assert_eq!(format_hhmm(510), "08:30");
    }

    #[test]
    fn fill_keeps_unknown_placeholders() {
        let vars = BTreeMap::from([("shop", "茶油铺".to_string())]);
        assert_eq!(fill("欢迎光临{shop}{x} :)", &vars), "欢迎光临茶油铺{x} :)");
        assert_eq!(yuan(12950), "129.50");
    }
}
