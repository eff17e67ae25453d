//! Durations as job files write them: integer seconds (Prompter's `timeout = 7200`) or strings
//! such as `"90s"`, `"5m"`, `"1h30m"`, `"250ms"`. Serialised back as the string form.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Dur(pub Duration);

impl Dur {
    pub fn secs(s: u64) -> Self {
        Dur(Duration::from_secs(s))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid duration {input:?}: {why} (write integer seconds or e.g. \"90s\", \"5m\", \"1h30m\")"
)]
pub struct DurationError {
    input: String,
    why: &'static str,
}

/// Longest duration accepted: a year. Keeps arithmetic on deadlines far from overflow.
const MAX: Duration = Duration::from_secs(366 * 24 * 3600);

impl std::str::FromStr for Dur {
    type Err = DurationError;
    fn from_str(input: &str) -> Result<Self, DurationError> {
        let err = |why| DurationError {
            input: input.to_string(),
            why,
        };
        let s = input.trim();
        if s.is_empty() {
            return Err(err("empty"));
        }
        if let Ok(secs) = s.parse::<f64>() {
            return from_secs_f64(secs).ok_or_else(|| err("out of range"));
        }
        let mut total = 0f64;
        let mut rest = s;
        while !rest.is_empty() {
            let digits = rest
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .ok_or_else(|| err("a number needs a unit (ms, s, m, h, d)"))?;
            if digits == 0 {
                return Err(err("expected a number"));
            }
            let value: f64 = rest[..digits].parse().map_err(|_| err("bad number"))?;
            rest = &rest[digits..];
            let unit_len = rest
                .find(|c: char| c.is_ascii_digit() || c == '.')
                .unwrap_or(rest.len());
            let scale = match rest[..unit_len].trim() {
                "ms" => 0.001,
                "s" | "sec" | "secs" => 1.0,
                "m" | "min" | "mins" => 60.0,
                "h" | "hr" | "hours" => 3600.0,
                "d" | "days" => 86400.0,
                _ => return Err(err("unknown unit")),
            };
            total += value * scale;
            rest = &rest[unit_len..];
        }
        from_secs_f64(total).ok_or_else(|| err("out of range"))
    }
}

fn from_secs_f64(secs: f64) -> Option<Dur> {
    if !secs.is_finite() || secs < 0.0 || secs > MAX.as_secs_f64() {
        return None;
    }
    Some(Dur(Duration::from_secs_f64(secs)))
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        if !ms.is_multiple_of(1000) {
            return write!(f, "{ms}ms");
        }
        let mut s = self.0.as_secs();
        if s == 0 {
            return f.write_str("0s");
        }
        for (unit, size) in [("h", 3600), ("m", 60), ("s", 1)] {
            if s >= size {
                write!(f, "{}{unit}", s / size)?;
                s %= size;
            }
        }
        Ok(())
    }
}

impl Serialize for Dur {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Float(f64),
            Str(String),
        }
        match Raw::deserialize(d)? {
            Raw::Int(n) => from_secs_f64(n as f64),
            Raw::Float(x) => from_secs_f64(x),
            Raw::Str(s) => return s.parse().map_err(serde::de::Error::custom),
        }
        .ok_or_else(|| serde::de::Error::custom("duration out of range (0 to 366 days)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form() {
        assert_eq!("90s".parse::<Dur>().unwrap(), Dur::secs(90));
        assert_eq!("5m".parse::<Dur>().unwrap(), Dur::secs(300));
        assert_eq!("1h30m".parse::<Dur>().unwrap(), Dur::secs(5400));
        assert_eq!("7200".parse::<Dur>().unwrap(), Dur::secs(7200));
        assert_eq!(
            "250ms".parse::<Dur>().unwrap(),
            Dur(Duration::from_millis(250))
        );
        assert!("5 parsecs".parse::<Dur>().is_err());
        assert!("-3".parse::<Dur>().is_err());
        assert!("m".parse::<Dur>().is_err());
        assert!("10".repeat(30).parse::<Dur>().is_err());
    }

    #[test]
    fn display_round_trips() {
        for s in ["1h30m", "90s", "250ms", "0s", "2h"] {
            let d: Dur = s.parse().unwrap();
            assert_eq!(d.to_string().parse::<Dur>().unwrap(), d);
        }
        assert_eq!(Dur::secs(5400).to_string(), "1h30m");
    }

    #[test]
    fn deserializes_integers_and_strings() {
        let d: Dur = serde_json::from_str("7200").unwrap();
        assert_eq!(d, Dur::secs(7200));
        let d: Dur = serde_json::from_str("\"5m\"").unwrap();
        assert_eq!(d, Dur::secs(300));
        assert!(serde_json::from_str::<Dur>("-1").is_err());
    }
}
