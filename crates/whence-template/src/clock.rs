//! `strftime_now(format)`: transformers' `datetime.now().strftime(format)`.

use std::fmt::Write as _;

use chrono::{NaiveDate, NaiveDateTime, Timelike};
use minijinja::Error;

/// Where `strftime_now` takes the time from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Clock {
    /// The local wall-clock time at each call, like Python's naive `datetime.now()`.
    Local,
    /// A fixed time (tests).
    Fixed(NaiveDateTime),
}

impl Clock {
    pub fn fixed((year, month, day, hour, minute, second): (i32, u32, u32, u32, u32, u32)) -> Option<Clock> {
        NaiveDate::from_ymd_opt(year, month, day).and_then(|d| d.and_hms_opt(hour, minute, second)).map(Clock::Fixed)
    }

    fn now(&self) -> NaiveDateTime {
        match *self {
            Clock::Fixed(t) => t,
            Clock::Local => {
                let t = chrono::Local::now().naive_local();
                // Python's datetime has microsecond resolution.
                let micros = t.nanosecond() / 1000 * 1000;
                t.with_nanosecond(micros).unwrap_or(t)
            }
        }
    }

    pub fn strftime_now(&self, format: &str) -> Result<String, Error> {
        strftime(&self.now(), format)
    }
}

/// `datetime.strftime` of a naive datetime, as CPython on glibc does it, through
/// chrono one specifier at a time: `%z`/`%Z` are empty (naive time), `%f` is six
/// digits (microseconds), and a specifier chrono does not know (`%Q`, a lone
/// trailing `%`) is written as it is, like glibc; the `E`/`O` modifiers are
/// ignored, as in the C locale. (`%s` is taken as UTC, not the local zone.)
pub(crate) fn strftime(t: &NaiveDateTime, format: &str) -> Result<String, Error> {
    let mut out = String::with_capacity(format.len() + 16);
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut spec = String::from('%');
        if let Some(&flag) = chars.peek() {
            if matches!(flag, '-' | '_' | '0') {
                spec.push(flag);
                chars.next();
            }
        }
        // glibc ignores the E and O modifiers in the C locale.
        if matches!(chars.peek(), Some('E' | 'O')) {
            let mut ahead = chars.clone();
            ahead.next();
            if ahead.peek().is_some_and(|c| c.is_ascii_alphabetic()) {
                chars.next();
            }
        }
        let Some(conv) = chars.next() else {
            out.push_str(&spec);
            break;
        };
        match conv {
            '%' if spec.len() == 1 => out.push('%'),
            'z' | 'Z' => {}
            'f' => {
                let _ = write!(out, "{:06}", t.nanosecond() / 1000 % 1_000_000);
            }
            _ => {
                spec.push(conv);
                let mut piece = String::new();
                if write!(piece, "{}", t.format(&spec)).is_ok() {
                    out.push_str(&piece);
                } else {
                    out.push_str(&spec);
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_like_formats() {
        let t = Clock::fixed((2026, 11, 26, 12, 0, 0)).unwrap();
        let f = |fmt: &str| t.strftime_now(fmt).unwrap();
        assert_eq!(f("%d %b %Y"), "26 Nov 2026");
        assert_eq!(f("%B %-d, %Y"), "November 26, 2026");
        assert_eq!(f("%Y-%m-%d %H:%M:%S"), "2026-11-26 12:00:00");
        assert_eq!(f("%A %j %p %%"), "Thursday 330 PM %");
        assert_eq!(f("%f|%z|%Z|"), "000000|||");
        assert_eq!(f("%Q|%Ey|100%"), "%Q|26|100%");
        assert_eq!(f("%-d|%_d|%0d|%e"), "26|26|26|26");
        // Python 3.11 on glibc, for datetime(2026, 11, 26, 12, 0, 0).
        assert_eq!(
            f("%c|%x|%X|%D|%T|%R|%r|%h|%n|%t|%C|%g|%G|%u|%V|%U|%W|%w|%k|%l|%P|%I|%y|%a"),
            "Thu Nov 26 12:00:00 2026|11/26/26|12:00:00|11/26/26|12:00:00|12:00|12:00:00 PM|Nov|\n|\t|20|26|2026|4|48|47|47|4|12|12|pm|12|26|Thu"
        );
    }
}
