#!/usr/bin/env python3
"""The load of `scripts/bench --scan` (standard library only; shares load.py's SMTP
client, Maildir watcher and CPU accounting).

smtp-source cannot send attachments, so this client makes the messages itself: every
message is unique (a fresh token in the text, fresh random bytes in the attachment), so
no cache on any side (clamd's cache of clean files, say) can answer for a message it saw
before. Traffic goes to 127.0.0.1 only; every wait has a deadline.

  run    N messages over C parallel sessions, one message per connection (as smtp-source
         sends by default): acceptance rate, end-to-end rate (arrivals in Maildir/new),
         p50/p99 of each transaction (MAIL FROM to the 250 after the final dot), and the
         CPU of every cgroup named with --cpu NAME=FILE
  probe  one message with a test virus in an attachment: prints the reply to the final dot
"""

import argparse
import base64
import importlib.util
import os
import sys
import threading
import time

here = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location("benchload", os.path.join(here, "load.py"))
load = importlib.util.module_from_spec(spec)
spec.loader.exec_module(load)

SENDER = "sender@bench.test"
# The EICAR test file: clamd is given one signature for it (scripts/bench.d/scan.sh).
EICAR = (b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*")


def header(rcpt, n, subject, extra=""):
    return (f"From: Bench Sender <{SENDER}>\r\nTo: <{rcpt}>\r\nSubject: {subject} {n}\r\n"
            f"Date: {time.strftime('%a, %d %b %Y %H:%M:%S +0000', time.gmtime())}\r\n"
            f"Message-Id: <{time.time_ns()}.{n}.{os.getpid()}@load.bench.test>\r\n"
            f"MIME-Version: 1.0\r\n{extra}")


def text_message(rcpt, size, n):
    """A plain text message of `size` bytes whose first body line is unique."""
    head = header(rcpt, n, "bench text", "Content-Type: text/plain; charset=us-ascii\r\n\r\n")
    body = bytearray(head.encode())
    body += f"Token {os.urandom(12).hex()} for message {n}.\r\n".encode()
    line = b"The quarterly figures are attached to the next mail, as agreed on Monday.\r\n"
    while len(body) < size:
        body += line
    return bytes(body[:size]).rstrip(b"\r\n.") + b"\r\n"


def b64_lines(data):
    enc = base64.b64encode(data)
    return b"".join(enc[i:i + 76] + b"\r\n" for i in range(0, len(enc), 76))


def attachment_message(rcpt, size, n, payload=None, name="report.pdf",
                       ctype="application/pdf"):
    """multipart/mixed: a short text part and one base64 attachment, `size` bytes in all
    (an attachment of random bytes behind a PDF header unless `payload` is given)."""
    boundary = f"=_bench_{os.urandom(8).hex()}"
    head = header(rcpt, n, "bench attachment",
                  f'Content-Type: multipart/mixed; boundary="{boundary}"\r\n\r\n').encode()
    text = (f"--{boundary}\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
            f"Please find the report attached ({n}).\r\n\r\n").encode()
    part = (f"--{boundary}\r\nContent-Type: {ctype}; name=\"{name}\"\r\n"
            f"Content-Disposition: attachment; filename=\"{name}\"\r\n"
            f"Content-Transfer-Encoding: base64\r\n\r\n").encode()
    end = f"\r\n--{boundary}--\r\n".encode()
    if payload is None:
        room = size - len(head) - len(text) - len(part) - len(end)
        raw = max(0, room * 57 // 78 - 9)
        payload = b"%PDF-1.4\n" + os.urandom(raw)
    return head + text + part + b64_lines(payload) + end


def make(kind, rcpt, size, n):
    if kind == "text":
        return text_message(rcpt, size, n)
    if kind == "attach":
        return attachment_message(rcpt, size, n)
    fail(f"unknown kind {kind}")


def fail(msg):
    print(f"scan-load.py: fatal: {msg}", file=sys.stderr)
    sys.exit(111)


def cpu_files(specs):
    out = []
    for s in specs:
        name, _, path = s.partition("=")
        if not path:
            fail(f"--cpu {s}: NAME=FILE")
        out.append((name, path))
    return out


def cmd_run(a):
    arrivals = load.Arrivals(a.maildir)
    dirs = [d for d in a.queue_dirs.split(",") if d]
    cpus = cpu_files(a.cpu)
    # Messages are made before the clock starts: the client's own work stays out of the
    # figures as far as it can (it still shares the two cores with the systems).
    bodies = [make(a.kind, a.rcpt, a.size, n) for n in range(a.n)]
    next_index = [0]
    lat, errs = [], []
    lock = threading.Lock()

    def worker():
        mine = []
        while True:
            with lock:
                i = next_index[0]
                if i >= a.n:
                    break
                next_index[0] += 1
            try:
                s = load.Smtp(a.port)
                s.greet()
                mine.append(s.message(SENDER, a.rcpt, bodies[i]))
                s.quit()
            except (OSError, ConnectionError) as e:
                with lock:
                    errs.append(str(e))
        with lock:
            lat.extend(mine)

    cpu0 = [load.cpu_seconds(p) for _, p in cpus]
    t0 = time.monotonic()
    deadline = t0 + a.timeout
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(a.conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    t1 = time.monotonic()
    accepted = len(lat)
    delivered = arrivals.wait_for(accepted, deadline) if accepted else False
    t2 = arrivals.last if arrivals.last is not None else time.monotonic()
    arrivals.close()
    # CPU is read once the queue is empty, so the work after the last delivery counts.
    drained = load.wait_drained(dirs, time.monotonic() + 30)
    time.sleep(0.3)
    cpu = [load.cpu_seconds(p) - c0 for (_, p), c0 in zip(cpus, cpu0)]
    if errs:
        sys.stderr.write(f"scan-load: {len(errs)} errors, first: {errs[0]}\n")
    total = sum(cpu)
    load.out(messages=a.n, accepted=accepted, errors=len(errs), delivered=arrivals.count,
             complete="yes" if delivered and accepted == a.n else "no",
             drained="yes" if drained else "no",
             accept_s=t1 - t0, accept_rate=accepted / (t1 - t0),
             e2e_s=t2 - t0, e2e_rate=accepted / (t2 - t0) if delivered else 0.0,
             p50_ms=load.percentile(lat, 50) * 1000, p99_ms=load.percentile(lat, 99) * 1000,
             cpu_s=total, cpu_ms_per_msg=total * 1000 / max(1, accepted))
    for (name, _), c in zip(cpus, cpu):
        print(f"cpu_ms_{name}={c * 1000 / max(1, accepted):.3f}")


def cmd_probe(a):
    body = attachment_message(a.rcpt, 0, 0, payload=EICAR, name="sample.bin",
                              ctype="application/octet-stream")
    try:
        s = load.Smtp(a.port, timeout=60)
        s.greet()
        s.cmd(f"MAIL FROM:<{SENDER}>", 2)
        s.cmd(f"RCPT TO:<{a.rcpt}>", 2)
        s.cmd("DATA", 3)
        s.sock.sendall(body + b".\r\n")
        code, raw = s.reply()
        s.quit()
        load.out(reply=code, text=raw.decode(errors="replace").strip().replace("\r\n", " | "))
    except (OSError, ConnectionError) as e:
        load.out(reply="fail", text=str(e))


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="mode", required=True)
    r = sub.add_parser("run")
    r.add_argument("--port", type=int, required=True)
    r.add_argument("--rcpt", required=True)
    r.add_argument("--maildir", required=True, help="the Maildir's new/ to watch")
    r.add_argument("--kind", choices=["text", "attach"], required=True)
    r.add_argument("--size", type=int, required=True)
    r.add_argument("--n", type=int, required=True)
    r.add_argument("--conns", type=int, default=10)
    r.add_argument("--cpu", action="append", default=[], help="NAME=cpu.stat (repeatable)")
    r.add_argument("--queue-dirs", default="")
    r.add_argument("--timeout", type=float, default=600)
    q = sub.add_parser("probe")
    q.add_argument("--port", type=int, required=True)
    q.add_argument("--rcpt", required=True)
    a = p.parse_args()
    {"run": cmd_run, "probe": cmd_probe}[a.mode](a)


if __name__ == "__main__":
    main()
