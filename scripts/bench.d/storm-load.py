#!/usr/bin/env python3
"""The spam storm of `scripts/bench --storm` (standard library only).

Every mode prints `key=value` lines on stdout; every wait has a deadline; traffic goes to
127.0.0.1 only, from loopback source addresses (Linux routes all of 127/8 to lo).

  bots    N concurrent "spammer" sessions from a range of loopback addresses, until
          SIGTERM or --seconds. A bot connects (one in --pregreet-every sends EHLO before
          the greeting), says EHLO, and tries MAIL/RCPT/DATA of a message --tries times
          (RSET between), then QUIT; it reconnects at once, or after --retry-pause when
          the server refused the connection itself (421/554 instead of 220, or a close).
  legit   one legitimate sender from an address the blocklist does not list: one message
          per connection, one after another (at most one per --interval), each timed from
          MAIL FROM to its file in Maildir/new (and to the 250), plus connect → 220
          including refused attempts.
  probe   one transaction from an address: the reply codes (is the blocklist in force?).
  dnsq    one DNS query (UDP) to a server: the answer's rcode and records.
  spam    count the files in a Maildir directory that carry the bots' header.
  report  the Markdown summary of the records scripts/bench.d/storm.sh wrote.
"""

import argparse
import asyncio
import ctypes
import ipaddress
import os
import random
import resource
import select
import signal
import socket
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from load import make_body, out, percentile  # noqa: E402  (the bench's own helpers)

HOST = "127.0.0.1"
IP_BIND_ADDRESS_NO_PORT = 24  # linux/in.h: the port is chosen at connect, per 4-tuple
SPAM_HEADER = b"X-Bench-Storm: spam"
LEGIT_HEADER = b"X-Bench-Storm-Legit: "
REPLY_TIMEOUT = 60.0
IN_CREATE = 0x100
IN_MOVED_TO = 0x80


def spam_addresses(net):
    """The usable source addresses of a loopback network (no .0 or .255 of any /24)."""
    hosts = [str(a) for a in ipaddress.ip_network(net).hosts()]
    return [a for a in hosts if not a.endswith((".0", ".255"))]


def bound_socket(src):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_IP, IP_BIND_ADDRESS_NO_PORT, 1)
    s.bind((src, 0))
    return s


# --- the bots ------------------------------------------------------------------------------


class BotStats:
    def __init__(self):
        self.c = dict.fromkeys(
            ["connects", "connect_errors", "refused_at_connect", "sessions", "pregreets",
             "ehlo_refused", "mail_refused", "rcpt_refused", "data_refused", "dot_refused",
             "accepted", "closed_by_server", "timeouts"], 0)
        self.open = 0       # TCP connections open now
        self.samples = []   # open connections, sampled every 0.1 s

    def inc(self, k):
        self.c[k] += 1


async def reply(reader, timeout=REPLY_TIMEOUT):
    """One SMTP reply's code; None when the server closed the connection."""
    while True:
        line = await asyncio.wait_for(reader.readline(), timeout)
        if not line:
            return None
        if len(line) < 4 or line[3:4] != b"-":
            try:
                return int(line[:3])
            except ValueError:
                return 0


async def bot(i, a, addrs, stats, stop):
    pregreeter = a.pregreet_every > 0 and i % a.pregreet_every == 0
    body = SPAM_HEADER + f" {i}\r\n".encode() + make_body(
        f"bot{i}@botnet.test", a.rcpt, a.size, i)
    k = 0
    while not stop.is_set():
        src = addrs[(i + k * a.sessions) % len(addrs)]
        k += 1
        if not await session(i, a, src, pregreeter, body, stats):
            # Refused before a session: jittered so the bots do not come back in lockstep.
            await asyncio.sleep(a.retry_pause * random.uniform(0.5, 1.5))


async def session(i, a, src, pregreeter, body, stats):
    """One connection; False when the server refused it before a session began."""
    stats.inc("connects")
    s = None
    try:
        s = bound_socket(src)
        s.setblocking(False)
        await asyncio.wait_for(asyncio.get_running_loop().sock_connect(s, (HOST, a.port)), 10)
        reader, writer = await asyncio.open_connection(sock=s)
    except (OSError, asyncio.TimeoutError):
        stats.inc("connect_errors")
        if s is not None:
            s.close()
        return False
    stats.open += 1
    try:
        if pregreeter:
            writer.write(b"EHLO bot.botnet.test\r\n")
            stats.inc("pregreets")
        code = await reply(reader)
        if code != 220:
            stats.inc("refused_at_connect")
            return False
        stats.inc("sessions")
        if not pregreeter:
            writer.write(b"EHLO bot.botnet.test\r\n")
        code = await reply(reader)
        if code is None:
            stats.inc("closed_by_server")
            return True
        if code // 100 != 2:
            stats.inc("ehlo_refused")
        for t in range(a.tries):
            if t:
                writer.write(b"RSET\r\n")
                if await reply(reader) is None:
                    stats.inc("closed_by_server")
                    return True
            for cmd, ok, refused in ((f"MAIL FROM:<bot{i}@botnet.test>", 250, "mail_refused"),
                                     (f"RCPT TO:<{a.rcpt}>", 250, "rcpt_refused"),
                                     ("DATA", 354, "data_refused")):
                writer.write(cmd.encode() + b"\r\n")
                code = await reply(reader)
                if code is None:
                    stats.inc("closed_by_server")
                    return True
                if code != ok:
                    stats.inc(refused)
                    break
            else:
                writer.write(body + b".\r\n")
                code = await reply(reader)
                if code is None:
                    stats.inc("closed_by_server")
                    return True
                stats.inc("accepted" if code == 250 else "dot_refused")
        writer.write(b"QUIT\r\n")
        await asyncio.wait_for(reader.read(4096), 5)
        return True
    except asyncio.TimeoutError:
        stats.inc("timeouts")
        return True
    except (OSError, ConnectionError):
        stats.inc("closed_by_server")
        return True
    finally:
        stats.open -= 1
        writer.close()


async def bots_main(a):
    addrs = spam_addresses(a.net)
    stats = BotStats()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    tasks = [asyncio.create_task(bot(i, a, addrs, stats, stop)) for i in range(a.sessions)]
    t0 = time.monotonic()
    while not stop.is_set() and time.monotonic() - t0 < a.seconds:
        try:
            await asyncio.wait_for(stop.wait(), 0.1)
        except asyncio.TimeoutError:
            pass
        stats.samples.append(stats.open)
    stop.set()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return stats, time.monotonic() - t0


def cmd_bots(a):
    stats, wall = asyncio.run(bots_main(a))
    ru = resource.getrusage(resource.RUSAGE_SELF)
    s = sorted(stats.samples) or [0]
    out(bots=a.sessions, addresses=len(spam_addresses(a.net)), wall_s=wall,
        **stats.c, connects_per_s=stats.c["connects"] / wall if wall else 0.0,
        open_mean=sum(s) / len(s), open_min=s[0], open_max=s[-1],
        client_cpu_s=ru.ru_utime + ru.ru_stime)


# --- the legitimate sender ----------------------------------------------------------------


class NewFiles:
    """Names arriving in a Maildir's new/ (inotify), with the time each arrived."""

    def __init__(self, path):
        self.path = path
        self.seen = []  # (monotonic time, name)
        self.cond = threading.Condition()
        self.stop = False
        libc = ctypes.CDLL(None, use_errno=True)
        self.fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0 or libc.inotify_add_watch(self.fd, path.encode(), IN_CREATE | IN_MOVED_TO) < 0:
            raise OSError(ctypes.get_errno(), f"inotify on {path}")
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop:
            r, _, _ = select.select([self.fd], [], [], 0.1)
            if not r:
                continue
            now = time.monotonic()
            try:
                buf = os.read(self.fd, 1 << 16)
            except BlockingIOError:
                continue
            names, i = [], 0
            while i + 16 <= len(buf):
                _wd, mask, _cookie, length = struct.unpack_from("iIII", buf, i)
                name = buf[i + 16: i + 16 + length].rstrip(b"\0").decode(errors="replace")
                i += 16 + length
                if mask & (IN_CREATE | IN_MOVED_TO) and not name.startswith("."):
                    names.append(name)
            if names:
                with self.cond:
                    self.seen.extend((now, n) for n in names)
                    self.cond.notify_all()

    def wait_token(self, start, token, deadline):
        """The arrival time of the first file from index `start` on holding `token`."""
        i = start
        while True:
            with self.cond:
                while i >= len(self.seen):
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return None, i
                    self.cond.wait(left)
                t, name = self.seen[i]
            i += 1
            try:
                with open(os.path.join(self.path, name), "rb") as f:
                    if token in f.read(65536):
                        return t, i
            except FileNotFoundError:
                pass  # moved to cur/ already: not ours to read

    def close(self):
        self.stop = True
        self.thread.join(1)
        os.close(self.fd)


class Session:
    def __init__(self, sock):
        self.sock = sock
        self.rfile = sock.makefile("rb")

    def reply(self):
        while True:
            line = self.rfile.readline(4096)
            if not line:
                return None
            if len(line) < 4 or line[3:4] != b"-":
                return int(line[:3])

    def cmd(self, text):
        self.sock.sendall(text.encode() + b"\r\n")
        return self.reply()

    def close(self):
        try:
            self.rfile.close()
        finally:
            self.sock.close()


def legit_connect(a, c):
    """Connect until a 220; returns (session, seconds from the first attempt)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < 120:
        c["connects"] += 1
        s = bound_socket(a.src)
        s.settimeout(REPLY_TIMEOUT)
        try:
            s.connect((HOST, a.port))
            sess = Session(s)
            code = sess.reply()
        except OSError:
            s.close()
            c["connect_errors"] += 1
            time.sleep(a.retry_pause)
            continue
        if code == 220:
            return sess, time.monotonic() - t0
        c["refused_at_connect"] += 1
        sess.close()
        time.sleep(a.retry_pause)
    return None, time.monotonic() - t0


def cmd_legit(a):
    files = NewFiles(a.maildir)
    c = dict.fromkeys(["connects", "connect_errors", "refused_at_connect", "refused",
                       "lost", "gave_up"], 0)
    e2e, smtp, greet = [], [], []
    t_end = time.monotonic() + a.seconds
    n = 0
    idx = 0
    next_start = time.monotonic()
    while time.monotonic() < t_end:
        # Paced: the sender's own load is the same whatever the system's speed.
        wait = next_start - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        next_start = max(next_start + a.interval, time.monotonic())
        n += 1
        token = f"{os.getpid()}.{n}.{random.getrandbits(32)}".encode()
        body = LEGIT_HEADER + token + b"\r\n" + make_body(a.sender, a.rcpt, a.size, n)
        sess, g = legit_connect(a, c)
        if sess is None:
            c["gave_up"] += 1
            continue
        greet.append(g)
        try:
            if sess.cmd("EHLO mail.legit.test") != 250:
                c["refused"] += 1
                continue
            t0 = time.monotonic()
            if sess.cmd(f"MAIL FROM:<{a.sender}>") != 250 or sess.cmd(f"RCPT TO:<{a.rcpt}>") // 100 != 2 \
                    or sess.cmd("DATA") != 354:
                c["refused"] += 1
                continue
            sess.sock.sendall(body + b".\r\n")
            if sess.reply() != 250:
                c["refused"] += 1
                continue
            t250 = time.monotonic()
            try:
                sess.cmd("QUIT")
            except OSError:
                pass
            arrived, idx = files.wait_token(idx, token, time.monotonic() + 60)
            if arrived is None:
                c["lost"] += 1
                continue
            smtp.append(t250 - t0)
            e2e.append(arrived - t0)
        except (OSError, TypeError):  # TypeError: a reply of None (connection closed)
            c["refused"] += 1
        finally:
            sess.close()
    files.close()
    ms = lambda v, p: percentile(v, p) * 1000  # noqa: E731
    ru = resource.getrusage(resource.RUSAGE_SELF)
    out(messages=len(e2e), **c, client_cpu_s=ru.ru_utime + ru.ru_stime,
        e2e_p50_ms=ms(e2e, 50), e2e_p90_ms=ms(e2e, 90), e2e_p99_ms=ms(e2e, 99),
        e2e_max_ms=max(e2e, default=0) * 1000,
        smtp_p50_ms=ms(smtp, 50), smtp_p99_ms=ms(smtp, 99),
        greet_p50_ms=ms(greet, 50), greet_p99_ms=ms(greet, 99),
        greet_max_ms=max(greet, default=0) * 1000)


# --- checks ----------------------------------------------------------------------------------


def cmd_probe(a):
    """One transaction from --src: the greeting, MAIL and RCPT codes (0 = not reached)."""
    s = bound_socket(a.src)
    s.settimeout(REPLY_TIMEOUT)
    s.connect((HOST, a.port))
    sess = Session(s)
    codes = {"greeting": sess.reply() or 0, "mail": 0, "rcpt": 0}
    if codes["greeting"] == 220 and sess.cmd("EHLO probe.bench.test") == 250:
        codes["mail"] = sess.cmd(f"MAIL FROM:<{a.sender}>") or 0
        if codes["mail"] == 250:
            codes["rcpt"] = sess.cmd(f"RCPT TO:<{a.rcpt}>") or 0
        try:
            sess.cmd("QUIT")
        except OSError:
            pass
    sess.close()
    out(**codes)


def cmd_dnsq(a):
    host, port = a.server.rsplit(":", 1)
    qtype = {"A": 1, "TXT": 16}[a.type]
    qid = random.getrandbits(16)
    q = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    for label in a.name.rstrip(".").split("."):
        q += bytes([len(label)]) + label.encode()
    q += b"\0" + struct.pack(">HH", qtype, 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(3)
    try:
        s.sendto(q, (host, int(port)))
        data, _ = s.recvfrom(4096)
    except OSError as e:
        out(rcode="none", error=str(e).replace(" ", "_"), answers=0)
        return
    rid, flags, _qd, an, _ns, _ar = struct.unpack_from(">HHHHHH", data)
    rcode = {0: "NOERROR", 2: "SERVFAIL", 3: "NXDOMAIN", 5: "REFUSED"}.get(flags & 15, str(flags & 15))
    out(rcode=rcode if rid == qid else "badid", answers=an)


def cmd_spam(a):
    n = 0
    for d in a.dirs:
        for e in os.scandir(d):
            if e.name.startswith("."):
                continue
            with open(e.path, "rb") as f:
                if SPAM_HEADER in f.read(65536):
                    n += 1
    out(spam=n)


# --- the report ------------------------------------------------------------------------------


def median(v):
    s = sorted(v)
    if not s:
        return 0.0
    m = len(s) // 2
    return s[m] if len(s) % 2 else (s[m - 1] + s[m]) / 2


def cmd_report(a):
    rows = []  # (test, record)
    with open(a.results) as f:
        for line in f:
            kv = dict(x.split("=", 1) for x in line.split() if "=" in x)
            if kv.get("test") not in ("storm", "quiet"):
                continue
            num = lambda k: float(kv.get(k, 0) or 0)  # noqa: E731
            window = num("window_s") or 1.0
            kv["cpu_cores"] = num("cpu_s") / window
            kv["dns_cores"] = num("dns_cpu_s") / window
            if "machine_cpu_s" in kv:
                kv["machine_cores"] = num("machine_cpu_s") / window
            kv["client_cores"] = num("client_cpu_s") / (num("wall_s") or 1.0) \
                + num("l_client_cpu_s") / window
            kv["l_lost_or_refused"] = num("l_lost") + num("l_refused") + num("l_gave_up")
            rows.append(kv)
    systems = []
    for r in rows:
        if r["sys"] not in systems:
            systems.append(r["sys"])

    def pick(test, sys_, key):
        return [float(r[key]) for r in rows if r["test"] == test and r["sys"] == sys_ and key in r]

    print(f"## Spam storm ({a.info})\n")
    ratio = len(systems) == 2
    print("| figure | " + " | ".join(systems) + (f" | {systems[0]} / {systems[1]}" if ratio else "") + " |")
    print("|---|" + "---:|" * (len(systems) + ratio))
    S, Q = "storm", "quiet"
    figures = [
        (S, "legitimate: MAIL FROM → Maildir/new p50 (ms)", "l_e2e_p50_ms", "{:.1f}", True),
        (S, "legitimate: MAIL FROM → Maildir/new p99 (ms)", "l_e2e_p99_ms", "{:.1f}", True),
        (S, "legitimate: MAIL FROM → 250 p50 (ms)", "l_smtp_p50_ms", "{:.1f}", True),
        (S, "legitimate: MAIL FROM → 250 p99 (ms)", "l_smtp_p99_ms", "{:.1f}", True),
        (S, "legitimate: connect → 220 p50 (ms)", "l_greet_p50_ms", "{:.1f}", True),
        (S, "legitimate: connect → 220 p99 (ms)", "l_greet_p99_ms", "{:.1f}", True),
        (S, "legitimate: messages per run", "l_messages", "{:.0f}", False),
        (S, "legitimate: refused connection attempts per run", "l_refused_at_connect", "{:.0f}", False),
        (Q, "no storm: MAIL FROM → Maildir/new p50 (ms)", "l_e2e_p50_ms", "{:.1f}", True),
        (Q, "no storm: MAIL FROM → Maildir/new p99 (ms)", "l_e2e_p99_ms", "{:.1f}", True),
        (S, "bots: connections per second", "connects_per_s", "{:.0f}", True),
        (S, "bots: refused at connect per run (421/554/close)", "refused_at_connect", "{:.0f}", False),
        (S, "bots: sessions that got a 220, per run", "sessions", "{:.0f}", False),
        (S, "bots: connections open (mean of 0.1 s samples)", "open_mean", "{:.0f}", False),
        (S, "connections the kernel dropped (listen queue full; SYN retried after 1 s)",
         "listen_drops", "{:.0f}", False),
        (S, "CPU of the system, cores (its cgroup)", "cpu_cores", "{:.2f}", True),
        (Q, "no storm: CPU of the system, cores", "cpu_cores", "{:.2f}", True),
        (S, "CPU of dnsmasq, cores", "dns_cores", "{:.3f}", False),
        (S, "CPU of the load client (bots + legitimate), cores", "client_cores", "{:.2f}", False),
        (S, "CPU of the whole machine, cores (2 at most; other work included)", "machine_cores",
         "{:.2f}", False),
    ]
    for test, label, key, fmt, show_ratio in figures:
        vals = [median(pick(test, s, key)) for s in systems]
        cell = ""
        if ratio:
            cell = f" | {vals[0] / vals[1]:.2f}" if show_ratio and vals[1] else " | "
        print(f"| {label} | " + " | ".join(fmt.format(v) for v in vals) + cell + " |")
    for label, key in [("spam messages accepted (250 after DATA), all runs", "accepted"),
                       ("spam messages in the Maildir, all runs", "spam_in_maildir"),
                       ("legitimate messages refused or lost, all runs", "l_lost_or_refused")]:
        print(f"| {label} | " + " | ".join(str(int(sum(pick(S, s, key)) + sum(pick(Q, s, key))))
                                          for s in systems) + (" | " if ratio else "") + " |")
    print("\nMedians over the runs; every run:\n\n```")
    keys = ["l_e2e_p50_ms", "l_e2e_p99_ms", "l_smtp_p99_ms", "l_greet_p99_ms", "l_messages",
            "l_refused_at_connect", "connects_per_s", "refused_at_connect", "open_mean", "listen_drops",
            "cpu_cores", "machine_cores", "mail_refused", "rcpt_refused", "timeouts", "closed_by_server",
            "accepted", "spam_in_maildir"]
    for r in rows:
        cells = []
        for k in keys:
            if k not in r:
                continue
            v = r[k]
            if isinstance(v, float) or "." in v:
                v = f"{float(v):.2f}"
            cells.append(f"{k}={v}")
        print(f"{r['sys']:<8} {r['test']:<5} round={r['round']} " + " ".join(cells))
    print("```")


def main():
    ap = argparse.ArgumentParser(prog="storm-load.py")
    sub = ap.add_subparsers(dest="mode", required=True)

    p = sub.add_parser("bots")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--net", default="127.0.2.0/23", help="the spammers' source addresses")
    p.add_argument("--sessions", type=int, default=200)
    p.add_argument("--pregreet-every", type=int, default=4, help="1 bot in N talks first")
    p.add_argument("--tries", type=int, default=3, help="transactions tried per session")
    p.add_argument("--retry-pause", type=float, default=0.1,
                   help="seconds (±50%%) before reconnecting after a refused connection")
    p.add_argument("--rcpt", required=True)
    p.add_argument("--size", type=int, default=4096)
    p.add_argument("--seconds", type=float, default=900, help="stop by then at the latest")
    p.set_defaults(fn=cmd_bots)

    p = sub.add_parser("legit")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--src", required=True)
    p.add_argument("--sender", default="sender@legit.test")
    p.add_argument("--rcpt", required=True)
    p.add_argument("--size", type=int, default=4096)
    p.add_argument("--maildir", required=True, help="the Maildir's new/ directory")
    p.add_argument("--seconds", type=float, required=True)
    p.add_argument("--retry-pause", type=float, default=0.1)
    p.add_argument("--interval", type=float, default=0.1,
                   help="seconds from one message's start to the next (at most 1/interval a second)")
    p.set_defaults(fn=cmd_legit)

    p = sub.add_parser("probe")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--src", required=True)
    p.add_argument("--sender", default="probe@legit.test")
    p.add_argument("--rcpt", required=True)
    p.set_defaults(fn=cmd_probe)

    p = sub.add_parser("dnsq")
    p.add_argument("--server", required=True, help="IP:PORT")
    p.add_argument("--name", required=True)
    p.add_argument("--type", choices=["A", "TXT"], default="TXT")
    p.set_defaults(fn=cmd_dnsq)

    p = sub.add_parser("spam")
    p.add_argument("dirs", nargs="+")
    p.set_defaults(fn=cmd_spam)

    p = sub.add_parser("report")
    p.add_argument("results")
    p.add_argument("info")
    p.set_defaults(fn=cmd_report)

    a = ap.parse_args()
    a.fn(a)


if __name__ == "__main__":
    main()
