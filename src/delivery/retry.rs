//! The retry policy: how long to wait after a failed attempt, and when to stop trying. Pure; the
//! caller supplies the clock and the randomness.
//!
//! Delays grow exponentially, `initial * 2^(failures - 1)` capped at `max`, with *equal jitter*:
//! a delay drawn uniformly from `[d/2, d]`. Full jitter (`[0, d]`) spreads load slightly better,
//! but after ten failures it may still retry a struggling receiver within milliseconds; equal
//! jitter keeps the promise of backing off (at least half the nominal delay) while still
//! scattering the retries of many events that failed together.
//!
//! A server's `Retry-After` is a floor: we never come back sooner than asked. It is capped at
//! [`retry_after_cap`] (the larger of `max` and one hour), because a receiver asking for "come back
//! next week" would otherwise silently park events past their `max_age` with no attempt in
//! between; an hourly probe costs the receiver nothing and notices when it is back.

use std::time::{Duration, SystemTime};

use rand::Rng;

/// The longest `Retry-After` honoured as asked: the larger of `max` and one hour.
pub fn retry_after_cap(max: Duration) -> Duration {
    max.max(Duration::from_secs(3600))
}

/// The wait before the next attempt, after `failures` failed attempts (1 after the first).
///
/// `retry_after` is what the server asked for, if anything.
pub fn backoff_delay(
    failures: u32,
    initial: Duration,
    max: Duration,
    retry_after: Option<Duration>,
    rng: &mut impl Rng,
) -> Duration {
    let nominal = nominal_delay(failures, initial, max);
    let low = nominal / 2;
    let spread = nanos(nominal - low);
    let jittered = low + Duration::from_nanos(rng.random_range(0..=spread));
    match retry_after {
        Some(asked) => jittered.max(asked.min(retry_after_cap(max))),
        None => jittered,
    }
}

/// `initial * 2^(failures - 1)`, capped at `max`, without overflowing at large counts.
fn nominal_delay(failures: u32, initial: Duration, max: Duration) -> Duration {
    let doublings = failures.saturating_sub(1);
    let grown = 2u32
        .checked_pow(doublings)
        .and_then(|factor| initial.checked_mul(factor));
    grown.unwrap_or(max).min(max)
}

/// Whole nanoseconds, saturating: u64 nanoseconds reach 584 years, far past any sane backoff.
fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Whether an event has used up its tries: `attempts` made so far (including the one that just
/// failed) reached `max_attempts`, or it is at least `max_age` past its first attempt. A clock
/// that went backwards counts as no time passed.
pub fn exhausted(
    attempts: u32,
    max_attempts: u32,
    first_attempt_at: SystemTime,
    max_age: Duration,
    now: SystemTime,
) -> bool {
    let age = now.duration_since(first_attempt_at).unwrap_or_default();
    attempts >= max_attempts || age >= max_age
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    const S: Duration = Duration::from_secs(1);

    fn rng() -> StdRng {
        StdRng::seed_from_u64(7)
    }

    #[test]
    fn nominal_doubles_then_caps() {
        let max = Duration::from_secs(600);
        let got: Vec<u64> = (1..=12)
            .map(|n| nominal_delay(n, S, max).as_secs())
            .collect();
        assert_eq!(got, [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 600, 600]);
        // 0 failures is treated as the first.
        assert_eq!(nominal_delay(0, S, max), S);
    }

    #[test]
    fn nominal_does_not_overflow() {
        let max = Duration::from_secs(600);
        for n in [31, 32, 33, 64, 1000, u32::MAX] {
            assert_eq!(nominal_delay(n, S, max), max, "failures = {n}");
        }
        // Duration::MAX as max: the product overflows Duration before 2^32 does.
        assert_eq!(nominal_delay(u32::MAX, S, Duration::MAX), Duration::MAX);
        assert_eq!(
            nominal_delay(31, Duration::MAX / 2, Duration::MAX),
            Duration::MAX
        );
    }

    #[test]
    fn jitter_stays_within_half_to_full() {
        let mut rng = rng();
        let max = Duration::from_secs(600);
        for failures in 1..=40 {
            let nominal = nominal_delay(failures, S, max);
            let mut seen_low_half = false;
            let mut seen_high_half = false;
            for _ in 0..200 {
                let d = backoff_delay(failures, S, max, None, &mut rng);
                assert!(d >= nominal / 2 && d <= nominal, "{failures}: {d:?}");
                seen_low_half |= d < nominal * 3 / 4;
                seen_high_half |= d > nominal * 3 / 4;
            }
            assert!(seen_low_half && seen_high_half, "no spread at {failures}");
        }
    }

    #[test]
    fn huge_values_do_not_panic() {
        let mut rng = rng();
        let d = backoff_delay(u32::MAX, S, Duration::MAX, None, &mut rng);
        assert!(d >= Duration::MAX / 2, "{d:?}");
        let d = backoff_delay(1, Duration::ZERO, Duration::ZERO, None, &mut rng);
        assert_eq!(d, Duration::ZERO);
    }

    #[test]
    fn retry_after_is_a_floor() {
        let mut rng = rng();
        let max = Duration::from_secs(600);
        // Asked for more than the backoff would wait: exactly what was asked.
        let d = backoff_delay(1, S, max, Some(Duration::from_secs(30)), &mut rng);
        assert_eq!(d, Duration::from_secs(30));
        // Asked for less: the backoff wins.
        let d = backoff_delay(10, S, max, Some(Duration::from_secs(2)), &mut rng);
        assert!(d >= Duration::from_secs(256), "{d:?}");
        // Zero (a date in the past) changes nothing.
        let d = backoff_delay(1, S, max, Some(Duration::ZERO), &mut rng);
        assert!(d >= S / 2 && d <= S, "{d:?}");
    }

    #[test]
    fn absurd_retry_after_is_capped() {
        let mut rng = rng();
        let week = Duration::from_secs(7 * 86400);
        let hour = Duration::from_secs(3600);
        let d = backoff_delay(1, S, Duration::from_secs(600), Some(week), &mut rng);
        assert_eq!(d, hour);
        // A configured max above an hour raises the cap to it.
        let day = Duration::from_secs(86400);
        let d = backoff_delay(1, S, day, Some(week), &mut rng);
        assert_eq!(d, day);
        let d = backoff_delay(1, S, day, Some(Duration::MAX), &mut rng);
        assert_eq!(d, day);
    }

    #[test]
    fn exhausted_by_attempts_or_age() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let day = Duration::from_secs(86400);
        assert!(!exhausted(19, 20, t0, day, t0 + day - S));
        assert!(exhausted(20, 20, t0, day, t0));
        assert!(exhausted(21, 20, t0, day, t0));
        assert!(exhausted(1, 20, t0, day, t0 + day));
        assert!(exhausted(1, 20, t0, day, t0 + 2 * day));
        // The clock went backwards: not exhausted by age.
        assert!(!exhausted(1, 20, t0, day, t0 - day));
    }
}
