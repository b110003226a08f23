//! Durations on the command line: `30s`, `500ms`, `1.5s`, `2m`, `1h30m`, `1d`; a bare
//! number is seconds.

use std::time::Duration;

pub fn parse(s: &str) -> Result<Duration, String> {
    let bad = || {
        format!("{s:?} is not a duration (examples: 30s, 500ms, 1.5s, 2m, 1h30m; a bare number is seconds)")
    };
    let s = s.trim();
    if s.is_empty() {
        return Err(bad());
    }
    if let Ok(secs) = s.parse::<f64>() {
        return seconds(secs).ok_or_else(bad);
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        if num_len == 0 {
            return Err(bad());
        }
        let value: f64 = rest[..num_len].parse().map_err(|_| bad())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ms" => 0.001,
            "s" => 1.0,
            "m" | "min" => 60.0,
            "h" => 3600.0,
            "d" => 86400.0,
            _ => return Err(bad()),
        };
        total += value * scale;
        rest = &rest[unit_len..];
    }
    seconds(total).ok_or_else(bad)
}

fn seconds(secs: f64) -> Option<Duration> {
    Duration::try_from_secs_f64(secs).ok()
}

/// A lease: at least 1 second, the server's minimum.
pub fn parse_lease(s: &str) -> Result<Duration, String> {
    let d = parse(s)?;
    if d < Duration::from_secs(1) {
        return Err("a lease must be at least 1s".into());
    }
    Ok(d)
}

/// For messages: `30s`, `1.5s`, `250ms`.
pub fn show(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        let secs = format!("{:.3}", d.as_secs_f64());
        format!("{}s", secs.trim_end_matches('0'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let ms = Duration::from_millis;
        assert_eq!(parse("30s"), Ok(ms(30_000)));
        assert_eq!(parse("30"), Ok(ms(30_000)));
        assert_eq!(parse("0"), Ok(ms(0)));
        assert_eq!(parse("500ms"), Ok(ms(500)));
        assert_eq!(parse("1.5s"), Ok(ms(1500)));
        assert_eq!(parse("2m"), Ok(ms(120_000)));
        assert_eq!(parse("1h30m"), Ok(ms(5_400_000)));
        assert_eq!(parse("1m30s"), Ok(ms(90_000)));
        assert_eq!(parse("1d"), Ok(ms(86_400_000)));
        for bad in ["", "s", "-1s", "10x", "1.2.3s", "ms5", "5 s", "-3"] {
            assert!(parse(bad).is_err(), "{bad:?} parsed");
        }
        assert!(parse_lease("500ms").is_err());
        assert_eq!(parse_lease("1s"), Ok(ms(1000)));
    }

    #[test]
    fn shown() {
        assert_eq!(show(Duration::from_millis(250)), "250ms");
        assert_eq!(show(Duration::from_secs(30)), "30s");
        assert_eq!(show(Duration::from_millis(1500)), "1.5s");
    }
}
