#!/usr/bin/env python3
"""scripts/bench.d/count.py — callgrind files to instructions per message (scripts/bench --count).

  count.py sum DIR                 one line per program: program=NAME ir=N syscalls=N processes=N
                                   (the sum over every callgrind file in DIR: a process's whole
                                   life, or the part since its counters were last zeroed)
  count.py report MACHINE RESULTS  the Markdown summary of the test=count lines in RESULTS

Standard library only. Callgrind file format: https://valgrind.org/docs/manual/cl-format.html
"""
import os
import statistics
import sys
from collections import defaultdict


def read_profile(path):
    """(program, {event: count}) of one callgrind output file."""
    cmd = ""
    events = []
    total = None
    with open(path, "rb") as f:
        for raw in f:
            if raw.startswith(b"cmd:"):
                cmd = raw[4:].decode("utf-8", "replace").strip()
            elif raw.startswith(b"events:"):
                events = raw[7:].decode().split()
            elif raw.startswith(b"summary:") or (raw.startswith(b"totals:") and total is None):
                # summary: is the grand total; totals: its equivalent in files without it
                total = [int(x) for x in raw.split(b":", 1)[1].split()]
    if not events or total is None:
        return None
    program = os.path.basename(cmd.split()[0]) if cmd else "?"
    return program, dict(zip(events, total))


def cmd_sum(directory):
    ir = defaultdict(int)
    calls = defaultdict(int)
    pids = defaultdict(set)
    for name in sorted(os.listdir(directory)):
        path = os.path.join(directory, name)
        with open(path, "rb") as f:
            if not f.readline().startswith(b"# callgrind format"):
                continue  # valgrind's own log, say
        profile = read_profile(path)
        if profile is None:
            print(f"count.py: {name}: not a complete callgrind file", file=sys.stderr)
            continue
        program, counts = profile
        ir[program] += counts.get("Ir", 0)
        calls[program] += counts.get("sysCount", 0)
        # cg.PID or cg.PID.PART: one process however many dumps it wrote
        pids[program].add(name.split(".")[1] if name.count(".") else name)
    for program in sorted(ir):
        print(f"program={program} ir={ir[program]} syscalls={calls[program]} processes={len(pids[program])}")


def parse_results(path):
    rows = []
    with open(path) as f:
        for line in f:
            kv = dict(w.split("=", 1) for w in line.split() if "=" in w)
            if kv.get("test") == "count":
                rows.append(kv)
    return rows


CHAINS = [  # (sys, chain, column title)
    ("postern", "queue", "postern"),
    ("postern", "scan", "postern + postern-scan"),
    ("postfix", "postfix", "Postfix"),
]
LOADS = [("session", "1 session, N messages"), ("conns", "N sessions, 1 message each")]
LOAD_NAMES = {"session": "all messages over 1 session", "conns": "1 message per session"}
ORDER = {  # rows in the order a message passes through
    "postern": ["postern-tcpserver", "postern-smtpd", "postern-scan", "postern-queue",
                "postern-send", "postern-local", "postern-multilog"],
    "postfix": ["master", "smtpd", "cleanup", "trivial-rewrite", "qmgr", "local", "proxymap",
                "postlogd", "anvil", "pickup"],
}


def kilo(n):
    return f"{n / 1000:,.0f} k"


def cmd_report(machine, results):
    rows = parse_results(results)
    if not rows:
        print("No --count results.")
        return
    n_of = {r["sys"]: int(r["messages"]) for r in rows}  # messages per run, per system
    # per (sys, chain, load, round): {program: (ir, syscalls, processes)}
    runs = defaultdict(dict)
    for r in rows:
        runs[(r["sys"], r["chain"], r["load"], r["round"])][r["program"]] = (
            int(r["ir"]), int(r["syscalls"]), int(r["processes"]))
    rounds = sorted({k[3] for k in runs}, key=int)

    def delta(sysname, chain, load, rnd):
        """{program: (ir, syscalls)} of a run minus the same round's base run (start, warm-up
        and stop without the load), or None."""
        run = runs.get((sysname, chain, load, rnd))
        base = runs.get((sysname, chain, "base", rnd))
        if run is None or base is None:
            return None
        return {p: (run.get(p, (0, 0, 0))[0] - base.get(p, (0, 0, 0))[0],
                    run.get(p, (0, 0, 0))[1] - base.get(p, (0, 0, 0))[1])
                for p in set(run) | set(base)}

    def per_msg(sysname, chain, load):
        """{program: (ir/msg, syscalls/msg)}, the mean over rounds (None if never measured)."""
        got = [d for d in (delta(sysname, chain, load, r) for r in rounds) if d is not None]
        if not got:
            return None
        programs = {p for g in got for p in g}
        n = n_of[sysname]
        return {p: (statistics.mean(g.get(p, (0, 0))[0] for g in got) / n,
                    statistics.mean(g.get(p, (0, 0))[1] for g in got) / n) for p in programs}

    def total(sysname, chain, load, rnd):
        d = delta(sysname, chain, load, rnd)
        return None if d is None else sum(v[0] for v in d.values()) / n_of[sysname]

    print(f"# Instruction counts per message (scripts/bench --count)\n")
    with open(machine) as f:
        for line in f:
            k, _, v = line.rstrip("\n").partition("=")
            if k in ("cpu", "cores", "kernel", "postfix", "rustc", "postern"):
                print(f"- {k}: {v}")
    print(f"- load: smtp-source, messages of 4096 bytes to one local mailbox, one client: "
          + ", ".join(f"{k} {v} per run" for k, v in sorted(n_of.items()))
          + f" (after 10 to warm up); {len(rounds)} round(s), tables give the mean")
    print("- counts: valgrind --tool=callgrind --trace-children=yes, user-space instructions "
          "(Ir) and system calls of every process of each system, from a fresh start through "
          "a warm-up, the load and a full stop, minus the same without the load (base); the "
          "kernel's own work is not in Ir\n")

    for sysname in ("postern", "postfix"):
        chains = [c for c in CHAINS if c[0] == sysname]
        cols = [(c, l) for c in chains for l in LOADS if per_msg(sysname, c[1], l[0])]
        if not cols:
            continue
        data = {(c[1], l[0]): per_msg(sysname, c[1], l[0]) for c, l in cols}
        programs = set().union(*(d.keys() for d in data.values()))
        known = [p for p in ORDER[sysname] if p in programs]
        programs = known + sorted(programs - set(known))
        print(f"## {'postern' if sysname == 'postern' else 'Postfix'}: instructions (system calls) per message\n")
        n = n_of[sysname]
        print("| program | " + " | ".join(f"{c[2]}: {l[1].replace('N', str(n))}" for c, l in cols) + " |")
        print("|---|" + "---:|" * len(cols))
        for p in programs:
            cells = []
            for c, l in cols:
                v = data[(c[1], l[0])].get(p)
                cells.append("" if v is None or abs(v[0]) < 500 else f"{kilo(v[0])} ({v[1]:.1f})")
            print(f"| {p} | " + " | ".join(cells) + " |")
        cells = []
        for c, l in cols:
            d = data[(c[1], l[0])]
            cells.append(f"**{kilo(sum(v[0] for v in d.values()))}** "
                         f"({sum(v[1] for v in d.values()):.1f})")
        print("| **total** | " + " | ".join(cells) + " |\n")

    print("## Totals per message, and the ratios\n")
    print("| load | postern | postern + postern-scan | Postfix | postern / Postfix "
          "| with postern-scan / Postfix | postern-scan's share |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for load, title in LOADS:
        t = {}
        for sysname, chain, _ in CHAINS:
            vals = [v for v in (total(sysname, chain, load, r) for r in rounds) if v is not None]
            t[chain] = statistics.mean(vals) if vals else None
        scan = per_msg("postern", "scan", load)
        scan_own = scan.get("postern-scan", (0, 0))[0] if scan else None

        def ratio(a, b):
            return f"{a / b:.2f}×" if a and b else "—"

        def fmt(v):
            return kilo(v) if v else "—"
        print(f"| {LOAD_NAMES[load]} | {fmt(t['queue'])} | {fmt(t['scan'])} | "
              f"{fmt(t['postfix'])} | {ratio(t['queue'], t['postfix'])} | "
              f"{ratio(t['scan'], t['postfix'])} | {fmt(scan_own)} |")

    print("\n## Repeatability: total instructions per message in each round\n")
    print("| system | load | " + " | ".join(f"round {r}" for r in rounds) + " | spread |")
    print("|---|---|" + "---:|" * (len(rounds) + 1))
    for sysname, chain, title in CHAINS:
        for load, ltitle in LOADS:
            vals = [total(sysname, chain, load, r) for r in rounds]
            if all(v is None for v in vals):
                continue
            have = [v for v in vals if v is not None]
            spread = (max(have) - min(have)) / statistics.mean(have) * 100 if len(have) > 1 else 0
            print(f"| {title} | {ltitle.replace('N', str(n_of[sysname]))} | "
                  + " | ".join(f"{v:,.0f}" if v else "—" for v in vals) + f" | {spread:.2f}% |")


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "sum":
        cmd_sum(sys.argv[2])
    elif len(sys.argv) == 4 and sys.argv[1] == "report":
        cmd_report(sys.argv[2], sys.argv[3])
    else:
        print("usage: count.py sum DIR | count.py report MACHINE RESULTS", file=sys.stderr)
        sys.exit(100)


if __name__ == "__main__":
    main()
