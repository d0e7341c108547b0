//! qmail's retry schedule: when a message's next attempt on a channel is due after a
//! temporary failure. (The state file that records it is `postern_wire::send_state`.)

use postern_wire::send_state::Channel;

/// Integer square root.
pub fn isqrt(n: u64) -> u64 {
    let mut x = (n as f64).sqrt() as u64;
    while x * x > n {
        x -= 1;
    }
    while (x + 1) * (x + 1) <= n {
        x += 1;
    }
    x
}

/// qmail's retry schedule: `birth + (isqrt(now - birth) + skip)^2`, skip 10 for local
/// and 20 for remote deliveries.
pub fn next_try(birth: u64, now: u64, channel: Channel) -> u64 {
    let skip = match channel {
        Channel::Local => 10,
        Channel::Remote => 20,
    };
    let r = isqrt(now.saturating_sub(birth)) + skip;
    birth + r * r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qmail_schedule() {
        assert_eq!(isqrt(0), 0);
        assert_eq!(isqrt(99), 9);
        assert_eq!(isqrt(100), 10);
        assert_eq!(next_try(1000, 1000, Channel::Local), 1100);
        assert_eq!(next_try(1000, 1100, Channel::Local), 1400);
        assert_eq!(next_try(1000, 1000, Channel::Remote), 1400);
        assert_eq!(next_try(1000, 1400, Channel::Remote), 2600);
    }
}
