//! The event loop: start what is due, wait for the next due time or an event (a
//! trigger, a signal, a finished delivery), act on it, and rescan, refresh the holds and
//! clean tmp/ on their schedules; on TERM, wait for the running deliveries and stop.

use super::*;

/// Run until stopped.
pub(super) fn run(mut s: Scheduler, rx: mpsc::Receiver<Event>) -> Result<()> {
    let mut next_scan = now() + RESCAN_SECS;
    let mut next_cleanup = now() + CLEANUP_SECS;
    loop {
        s.fill();
        if s.stopping && s.running() == 0 {
            break;
        }
        let t = now();
        let wake = if s.stopping {
            t + 1
        } else {
            s.sched
                .iter_mut()
                .filter_map(|sc| sc.next_due())
                .min()
                .unwrap_or(u64::MAX)
                .min(next_scan)
                .min(s.next_holds)
        };
        let timeout = Duration::from_secs(wake.saturating_sub(t)).max(Duration::from_millis(50));
        let ev = match rx.recv_timeout(timeout) {
            Ok(ev) => Some(ev),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => return Err(Error::temp("event channel closed")),
        };
        let mut scan = false;
        let mut pending = ev.into_iter().collect::<Vec<_>>();
        // Take whatever else is waiting, so one scan serves many triggers.
        while let Ok(more) = rx.try_recv() {
            pending.push(more);
        }
        for ev in pending {
            match ev {
                Event::Trigger => scan = true,
                Event::Done { job, results } => s.done(job, results),
                Event::Signal(sig) if sig == libc::SIGALRM => {
                    for sc in &mut s.sched {
                        sc.all_now(now());
                    }
                    scan = true;
                }
                Event::Signal(sig) if sig == libc::SIGHUP => s.reload(),
                Event::Signal(_) => {
                    if !s.stopping {
                        LogLine::event("stopping").kv("running", s.running()).emit();
                    }
                    s.stopping = true;
                }
            }
        }
        let t = now();
        if t >= next_scan {
            scan = true;
            next_scan = t + RESCAN_SECS;
        }
        if t >= s.next_holds {
            s.refresh_holds(t);
        }
        if t >= next_cleanup {
            queue_dirs::clean_tmp(&s.q);
            next_cleanup = t + CLEANUP_SECS;
        }
        if scan && !s.stopping {
            s.scan();
        }
    }
    LogLine::event("stop").emit();
    Ok(())
}
