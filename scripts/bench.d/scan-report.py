#!/usr/bin/env python3
"""The Markdown summary of `scripts/bench --scan`: MACHINE RESULTS PARAMS.

RESULTS has one line per run, `sys=… test=scan-text|scan-attach round=N key=value…`, and
one per test-virus probe (`test=scan-eicar`). Figures are medians over the rounds; ratios
are postern's variant over the other system (rates: higher is better for postern; CPU
and p99: lower is)."""

import statistics
import sys

NAMES = {
    "pn-clamd": "postern: postern-scan + clamd",
    "pn-spamd": "postern: postern-scan + clamd + spamd",
    "pn-rspamd": "postern: postern-scan + clamd + rspamd",
    "pf-amavisd": "Postfix + amavisd-new + clamd",
    "pf-amavisd-sa": "Postfix + amavisd-new + clamd + SpamAssassin",
    "pf-rspamd": "Postfix + rspamd (milter) + clamd",
}
ORDER = list(NAMES)
# (postern, other, the target on end to end or None)
PAIRS = [
    ("pn-clamd", "pf-amavisd", None),
    ("pn-spamd", "pf-amavisd-sa", 8.0),
    ("pn-rspamd", "pf-amavisd-sa", 8.0),
    ("pn-clamd", "pf-rspamd", 1.5),
    ("pn-rspamd", "pf-rspamd", 1.5),
]
KINDS = [("scan-text", "4 KB text"), ("scan-attach", "~100 KB with an attachment")]


def parse(line):
    kv = {}
    for tok in line.split():
        k, sep, v = tok.partition("=")
        if sep:
            kv[k] = v
    return kv


def num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def med(runs, key):
    vals = [num(r.get(key)) for r in runs]
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def fmt(v, digits=1):
    return "—" if v is None else f"{v:.{digits}f}"


def main():
    machine_file, results_file, params = sys.argv[1], sys.argv[2], sys.argv[3]
    machine = dict(line.rstrip("\n").split("=", 1) for line in open(machine_file) if "=" in line)
    lines = [parse(line) for line in open(results_file)]
    runs = {}
    probes = []
    for kv in lines:
        t = kv.get("test", "")
        if t == "scan-eicar":
            probes.append(kv)
        elif t.startswith("scan-"):
            runs.setdefault((kv["sys"], t), []).append(kv)

    print("# scripts/bench --scan\n")
    print(f"postern `{machine.get('postern', '?')}`; {params}")
    for k in ["cpu", "cores", "ram", "disk", "fsync_per_s", "kernel", "postfix", "clamav",
              "amavisd", "spamassassin", "rspamd", "rspamd_normal_workers", "amavisd_sa_scored",
              "amavisd_nosa_scored", "spamd_results", "postern_scored_spamd", "postern_scored_rspamd",
              "postern_spam_skipped", "cpu_accounting"]:
        if k in machine:
            print(f"- {k}: {machine[k]}")
    print("\nTest virus (one message with the EICAR file as an attachment):\n")
    for p in probes:
        print(f"- {NAMES.get(p['sys'], p['sys'])}: reply {p.get('reply')}, {p.get('verdict')}")

    medians = {}
    for kind, label in KINDS:
        print(f"\n## {label}\n")
        print("| system | acceptance msg/s | end to end msg/s | CPU ms/msg | of which | p99 ms | runs complete |")
        print("|---|---:|---:|---:|---|---:|---|")
        for s in ORDER:
            rs = runs.get((s, kind), [])
            if not rs:
                continue
            m = {k: med(rs, k) for k in ["accept_rate", "e2e_rate", "cpu_ms_per_msg", "p99_ms"]}
            parts = sorted({k for r in rs for k in r if k.startswith("cpu_ms_") and k != "cpu_ms_per_msg"})
            split = ", ".join(f"{k[len('cpu_ms_'):]} {fmt(med(rs, k), 2)}" for k in parts)
            done = sum(1 for r in rs if r.get("complete") == "yes")
            medians[(s, kind)] = m
            print(f"| {NAMES[s]} | {fmt(m['accept_rate'])} | {fmt(m['e2e_rate'])} | "
                  f"{fmt(m['cpu_ms_per_msg'], 2)} | {split} | {fmt(m['p99_ms'])} | {done}/{len(rs)} |")

    print("\n## Ratios, postern / the other (medians)\n")
    print("| load | postern | against | acceptance | end to end | CPU/msg | p99 | end-to-end target |")
    print("|---|---|---|---:|---:|---:|---:|---|")
    for kind, label in KINDS:
        for a, b, target in PAIRS:
            ma, mb = medians.get((a, kind)), medians.get((b, kind))
            if not ma or not mb:
                continue

            def ratio(k):
                x, y = ma[k], mb[k]
                return None if not x or not y else x / y

            e2e = ratio("e2e_rate")
            verdict = "" if target is None or e2e is None else (
                f"≥ {target:g}×: {'met' if e2e >= target else 'not met'}")
            print(f"| {label} | {a} | {b} | {fmt(ratio('accept_rate'), 2)}× | {fmt(e2e, 2)}× | "
                  f"{fmt(ratio('cpu_ms_per_msg'), 2)}× | {fmt(ratio('p99_ms'), 2)}× | {verdict} |")

    print("\n## Every run\n")
    print("```")
    for (s, kind), rs in sorted(runs.items(), key=lambda x: (x[0][1], ORDER.index(x[0][0]))):
        for r in rs:
            print(f"{s:14} {kind:12} round={r.get('round')} accept_rate={fmt(num(r.get('accept_rate')))} "
                  f"e2e_rate={fmt(num(r.get('e2e_rate')))} cpu_ms={fmt(num(r.get('cpu_ms_per_msg')), 2)} "
                  f"p99_ms={fmt(num(r.get('p99_ms')))} n={r.get('messages')} errors={r.get('errors')} "
                  f"complete={r.get('complete')}")
    print("```")


if __name__ == "__main__":
    main()
