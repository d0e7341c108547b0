#!/usr/bin/env python3
"""Summary of a scripts/bench run: report.py MACHINE RESULTS CHAIN PARAMS.

MACHINE: key=value lines about the machine. RESULTS: one line per measurement,
`sys=… test=… [round=…] key=value…`. CHAIN: the per-process lines of the chain memory
probe. PARAMS: the sizes used. Prints Markdown tables (medians over the rounds, which
alternated postern and Postfix) and every round's raw figures, so drift is visible."""

import statistics
import sys


def parse(line):
    d = {}
    for word in line.split():
        k, sep, v = word.partition("=")
        if sep:
            d[k] = v
    return d


def num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def main():
    machine_path, results_path, chain_path, params = sys.argv[1:5]
    machine = {}
    with open(machine_path) as f:
        for line in f:
            k, _, v = line.rstrip("\n").partition("=")
            machine[k] = v
    rows = []
    with open(results_path) as f:
        rows = [parse(line) for line in f if line.strip()]
    try:
        with open(chain_path) as f:
            chain = [parse(line) for line in f if line.strip()]
    except OSError:
        chain = []
    p = parse(params)

    def runs(sys_, test):
        return [r for r in rows if r.get("sys") == sys_ and r.get("test") == test]

    def median(sys_, test, key, complete_only=False):
        vals = []
        for r in runs(sys_, test):
            if complete_only and r.get("complete") != "yes":
                continue
            v = num(r.get(key))
            if v is not None:
                vals.append(v)
        return statistics.median(vals) if vals else None

    def fmt(v, digits=1):
        return "n/a" if v is None else f"{v:,.{digits}f}"

    def ratio(a, b):
        # A negative time (below) has no meaningful ratio.
        return None if a is None or b is None or a < 0 or b <= 0 else a / b

    out = []
    w = out.append
    w(f"## Results ({'quick' if p.get('quick') == '1' else 'full'} run)")
    w("")
    w(f"Messages of 4096 bytes to one local mailbox; medians of {p.get('rounds')} rounds, "
      "postern and Postfix alternating (A B A B).")
    w("")
    w("| figure | postern | Postfix | postern / Postfix | target | met |")
    w("|---|---:|---:|---:|---|---|")

    def line(label, test, key, target=None, better="higher", digits=1, complete_only=False):
        a = median("postern", test, key, complete_only)
        b = median("postfix", test, key, complete_only)
        r = ratio(a, b)
        met = ""
        if target is not None and r is not None:
            met = "yes" if (r >= target if better == "higher" else r <= target) else "**no**"
        tgt = "" if target is None else (f"≥ {target}×" if better == "higher" else f"≤ {target}×")
        w(f"| {label} | {fmt(a, digits)} | {fmt(b, digits)} | {fmt(r, 2)} | {tgt} | {met} |")

    n10, n1, nlat = p.get("N10"), p.get("N1"), p.get("NLAT")
    line(f"acceptance, 10 sessions, {n10} msgs (msg/s)", "rate10", "accept_rate", 1.5)
    line(f"end to end into Maildir/new, 10 sessions (msg/s)", "rate10", "e2e_rate", 1.5,
         complete_only=True)
    line(f"acceptance, 1 session, {n1} msgs (msg/s)", "rate1", "accept_rate")
    line(f"end to end, 1 session (msg/s)", "rate1", "e2e_rate", complete_only=True)
    line("CPU s per 1000 msgs, 10 sessions (all processes)", "rate10", "cpu_per_1000", 1.0,
         "lower", 2)
    line("CPU s per 1000 msgs, 1 session", "rate1", "cpu_per_1000", None, "lower", 2)
    line(f"SMTP transaction p50, 10 sessions, {nlat} msgs (ms)", "latency", "p50_ms", None,
         "lower", 2)
    line("SMTP transaction p99 (ms)", "latency", "p99_ms", 1.0, "lower", 2)
    line("250 → Maildir/new p50, one message at a time (ms)", "sched", "p50_ms", None,
         "lower", 2)
    line("250 → Maildir/new p90 (ms)", "sched", "p90_ms", None, "lower", 2)
    w("")
    if any((median(s_, "sched", k) or 0) < 0 for s_ in ("postern", "postfix")
           for k in ("p50_ms", "p90_ms")):
        w("A negative 250 → Maildir time means the message was in `Maildir/new` before "
          "the client had read the `250`: the queue wakes the delivery side as soon as "
          "the message is safe, and the delivery won the race with the reply.")
        w("")

    # Connection rates.
    w("| tcpserver running `/bin/echo ok` | postern-tcpserver | ucspi-tcp tcpserver | ratio | target | met |")
    w("|---|---:|---:|---:|---|---|")
    for par in ("1", "8"):
        a = median("postern-tcpserver", f"conn{par}", "rate")
        b = median("tcpserver", f"conn{par}", "rate")
        r = ratio(a, b)
        met = "" if r is None else ("yes" if r >= 1.0 else "**no**")
        label = "sequential" if par == "1" else f"{par} parallel clients"
        w(f"| connections/s, {label}, {p.get('NCONN')} each | {fmt(a)} | {fmt(b)} | {fmt(r, 2)} | ≥ 1× | {met} |")
    w("")

    # Syscalls per message, per program.
    w(f"Per message, counted with `strace -f` on every process of each system "
      f"({p.get('NPROF')} messages over 1 session, one connection per message):")
    w("")
    w("| per message | program | fsync/fdatasync | execve | fork/clone | rename/link |")
    w("|---|---|---:|---:|---:|---:|")
    for s_ in ("postern", "postfix"):
        progs = runs(s_, "strace")
        if not progs:
            w(f"| {s_} | (no trace) | | | | |")
            continue
        n = num(progs[0].get("messages")) or 1
        tot = {k: 0.0 for k in ("fsync", "execve", "fork", "rename")}
        for r in progs:
            vals = {k: (num(r.get(k)) or 0) / n for k in tot}
            for k in tot:
                tot[k] += vals[k]
            if any(v >= 0.05 for v in vals.values()):
                w(f"| {s_} | {r.get('program')} | " +
                  " | ".join(f"{vals[k]:.2f}" for k in tot) + " |")
        w(f"| **{s_}** | **all** | " + " | ".join(f"**{tot[k]:.2f}**" for k in tot) + " |")
    w("")

    # Chain memory and softlimit.
    ch = (runs("postern", "chain") or [{}])[0]
    w("One postern smtpd connection held open mid-DATA (the tcpserver child exec'd into "
      "smtpd, as the run script starts it without a certificate, and the queue program):")
    w("")
    w("| process | VmHWM (KiB) | VmRSS (KiB) | VmPeak (KiB) |")
    w("|---|---:|---:|---:|")
    for c in chain:
        w(f"| {c.get('process')} | {c.get('vmhwm_kb')} | {c.get('vmrss_kb')} | {c.get('vmpeak_kb')} |")
    w(f"| **sum** | {ch.get('sum_vmhwm_kb', 'n/a')} | {ch.get('sum_vmrss_kb', 'n/a')} | |")
    w("")
    for r in runs("postern", "softlimit"):
        w(f"- `postern-softlimit -m 8000000 postern-tcpserver … postern-smtpd` (the limit on "
          f"the listener and so on every process of the chain), smtpd → {'postern-' + r.get('chain')}: "
          f"4 KB message **{r.get('small')}**, 1 MB message **{r.get('large')}**")
    w("")
    pop = (runs("postern", "pop3") or [{}])[0]
    w(f"POP3 (postern-tcpserver → popup → checkpassword → pop3d, poplib): "
      f"{pop.get('messages', 'n/a')} messages retrieved in {fmt(num(pop.get('retr_s')), 2)} s "
      f"= {fmt(num(pop.get('msg_per_s')))} msg/s; login+STAT {fmt(num(pop.get('login_stat_s')), 3)} s, "
      f"QUIT {fmt(num(pop.get('quit_s')), 3)} s.")
    w("")
    sp = (runs("machine", "spawn") or [{}])[0]
    w(f"Process start: fork+exec of /bin/true {sp.get('true_ms', 'n/a')} ms; "
      f"postern-softlimit → /bin/true (two execs) {sp.get('softlimit_true_ms', 'n/a')} ms.")
    w("")
    w("## Machine")
    w("")
    for k in ("cpu", "cores", "ram", "disk", "fsync_per_s", "commit_per_s", "kernel", "postfix",
              "ucspi_tcp", "rustc", "python", "postern", "cpu_accounting"):
        v = machine.get(k, "?")
        if k in ("fsync_per_s", "commit_per_s") and num(v) is not None:
            v = f"{num(v):,.0f}"
        w(f"- {k}: {v}")
    w("")
    w("## Every run")
    w("")
    w("```")
    for r in rows:
        if r.get("test") in ("rate10", "rate1", "latency", "conn1", "conn8", "sched"):
            keys = [k for k in ("accept_rate", "e2e_rate", "cpu_per_1000", "complete",
                                "generator_errors", "p50_ms", "p99_ms", "p90_ms", "errors",
                                "rate") if k in r]
            vals = " ".join(f"{k}={r[k][:10]}" for k in keys)
            w(f"{r.get('sys'):18} {r.get('test'):8} round={r.get('round', '-'):2} {vals}")
    w("```")
    print("\n".join(out))


if __name__ == "__main__":
    main()
