//! What an early talker gets: `554 5.7.1` instead of the greeting, then, as RFC 5321
//! §3.1 asks of a server that opens with 554, `503 5.5.1` to every command until QUIT
//! (`221`). Bounded: at most [`MAX_COMMANDS`] commands, [`TIMEOUT`] in all, lines cut at
//! [`MAX_LINE`]. The bytes the client sent during the wait are its first commands.

use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

/// Most commands answered before the connection is closed.
pub const MAX_COMMANDS: usize = 20;
/// Longest part of a command line looked at.
pub const MAX_LINE: usize = 512;
/// The whole refusal dialogue ends after this long.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// The opening reply.
pub fn opening(me: &str) -> String {
    format!("554 5.7.1 {me} you talked before the greeting; closing\r\n")
}

/// Answer `first` (already read) and whatever `input` brings, until QUIT, end of
/// input, [`MAX_COMMANDS`] or `ready` returning false (called before each read).
pub fn dialogue(
    me: &str,
    first: &[u8],
    mut input: impl Read,
    mut output: impl Write,
    mut ready: impl FnMut() -> bool,
) -> io::Result<()> {
    output.write_all(opening(me).as_bytes())?;
    output.flush()?;
    let bye = format!("221 2.0.0 {me} closing\r\n");
    let mut line: Vec<u8> = Vec::new();
    let mut commands = 0;
    let mut pending = first.to_vec();
    loop {
        for &b in &pending {
            if b != b'\n' {
                if line.len() < MAX_LINE {
                    line.push(b);
                }
                continue;
            }
            let verb: Vec<u8> = line
                .iter()
                .take_while(|&&b| b != b' ' && b != b'\r')
                .map(u8::to_ascii_lowercase)
                .collect();
            line.clear();
            commands += 1;
            if verb == b"quit" {
                output.write_all(bye.as_bytes())?;
                return output.flush();
            }
            output.write_all(b"503 5.5.1 bad sequence of commands\r\n")?;
            output.flush()?;
            if commands >= MAX_COMMANDS {
                return Ok(());
            }
        }
        if !ready() {
            return Ok(());
        }
        let mut buf = [0u8; 512];
        let n = match input.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => 0,
            Err(e) => return Err(e),
        };
        pending = buf[..n].to_vec();
    }
}

/// Run the dialogue on stdin and stdout. Errors end it quietly: the client has gone.
pub fn refuse(me: &str, first: &[u8]) {
    let deadline = Instant::now() + TIMEOUT;
    let Ok(fd) = std::io::stdin().as_fd().try_clone_to_owned() else {
        return;
    };
    let input = std::fs::File::from(fd);
    let ready = || {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        let stdin = std::io::stdin();
        let mut fds = [PollFd::new(stdin.as_fd(), PollFlags::POLLIN)];
        let wait = PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX);
        matches!(poll(&mut fds, wait), Ok(n) if n > 0)
    };
    let _ = dialogue(me, first, input, std::io::stdout().lock(), ready);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn talk(first: &[u8], rest: &[u8]) -> String {
        let mut out = Vec::new();
        dialogue("mx.test", first, rest, &mut out, || true).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn the_early_bytes_are_the_first_commands() {
        assert_eq!(
            talk(b"EHLO bot\r\nMAIL FROM:<a@b>\r\n", b"QUIT\r\nNOOP\r\n"),
            "554 5.7.1 mx.test you talked before the greeting; closing\r\n\
             503 5.5.1 bad sequence of commands\r\n\
             503 5.5.1 bad sequence of commands\r\n\
             221 2.0.0 mx.test closing\r\n"
        );
    }

    #[test]
    fn a_partial_line_waits_for_its_end_and_input_ending_stops() {
        assert_eq!(
            talk(b"EH", b"LO x\r\nqu"),
            "554 5.7.1 mx.test you talked before the greeting; closing\r\n\
             503 5.5.1 bad sequence of commands\r\n"
        );
    }

    #[test]
    fn bounded_in_commands_and_line_length() {
        let mut flood = Vec::new();
        for _ in 0..100 {
            flood.extend_from_slice(&[b'x'; 2000]);
            flood.extend_from_slice(b"\r\n");
        }
        let out = talk(&flood, b"");
        assert_eq!(out.matches("503").count(), MAX_COMMANDS);
    }

    #[test]
    fn the_deadline_ends_it() {
        let mut out = Vec::new();
        dialogue("mx.test", b"", &b"QUIT\r\n"[..], &mut out, || false).unwrap();
        assert_eq!(
            out.len(),
            opening("mx.test").len(),
            "no read after the deadline"
        );
    }
}
