#!/usr/bin/env python3
"""Load and measurement helper for scripts/bench (standard library only).

Every mode prints `key=value` lines on stdout for the shell to read; every wait has a
deadline. Traffic goes to 127.0.0.1 only.

  rate      run a load generator (smtp-source), time acceptance and delivery into
            Maildir/new, and the CPU a cgroup used
  latency   N SMTP transactions over C parallel sessions, each timed from MAIL FROM to
            the 250 after the final dot (p50/p99)
  sched     one message at a time: time from the 250 to the file in Maildir/new
  connrate  connections per second against a server that writes a line and closes
  hold      hold one SMTP session mid-DATA, sum the memory of the server's chain
  send      send one message, print the reply code
  pop3      log in with poplib and retrieve every message
  fill      write N messages into a Maildir's new/ (for the POP3 test)
  fsync     the disk's rate of write+fsync and of directory fsyncs
  wait      wait until directories hold no files (queues drained)
"""

import argparse
import ctypes
import os
import select
import socket
import struct
import subprocess
import sys
import threading
import time

HOST = "127.0.0.1"
IN_CREATE = 0x100
IN_MOVED_TO = 0x80
CONNECT_TIMEOUT = 10.0
REPLY_TIMEOUT = 120.0


def out(**kv):
    for k, v in kv.items():
        if isinstance(v, float):
            v = f"{v:.6f}"
        print(f"{k}={v}")
    sys.stdout.flush()


def fail(msg):
    print(f"load.py: fatal: {msg}", file=sys.stderr)
    sys.exit(111)


# --- arrivals in Maildir/new -----------------------------------------------------------


class Arrivals:
    """Counts files arriving in a directory (link or rename into it) with inotify, and
    remembers when the last one came. Falls back to polling when inotify is missing."""

    def __init__(self, path):
        self.path = path
        self.count = 0
        self.last = None
        self.times = []
        self.lock = threading.Lock()
        self.stop = False
        self.fd = -1
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
            if fd >= 0 and libc.inotify_add_watch(fd, path.encode(), IN_CREATE | IN_MOVED_TO) >= 0:
                self.fd = fd
        except (OSError, AttributeError):
            self.fd = -1
        self.base = self._listcount()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _listcount(self):
        return sum(1 for e in os.scandir(self.path) if not e.name.startswith("."))

    def _note(self, n, now):
        with self.lock:
            self.count += n
            self.last = now
            self.times.extend([now] * n)

    def _run(self):
        if self.fd < 0:
            seen = self.base
            while not self.stop:
                time.sleep(0.02)
                c = self._listcount()
                if c > seen:
                    self._note(c - seen, time.monotonic())
                    seen = c
            return
        while not self.stop:
            r, _, _ = select.select([self.fd], [], [], 0.1)
            if not r:
                continue
            now = time.monotonic()
            try:
                buf = os.read(self.fd, 1 << 16)
            except BlockingIOError:
                continue
            n, i = 0, 0
            while i + 16 <= len(buf):
                _wd, mask, _cookie, length = struct.unpack_from("iIII", buf, i)
                name = buf[i + 16 : i + 16 + length].rstrip(b"\0")
                i += 16 + length
                if mask & (IN_CREATE | IN_MOVED_TO) and not name.startswith(b"."):
                    n += 1
            if n:
                self._note(n, now)

    def wait_for(self, n, deadline):
        while time.monotonic() < deadline:
            with self.lock:
                if self.count >= n:
                    return True
            time.sleep(0.005)
        return False

    def close(self):
        self.stop = True
        self.thread.join(1)
        if self.fd >= 0:
            os.close(self.fd)


# --- CPU of a cgroup --------------------------------------------------------------------


def cpu_seconds(path):
    """CPU seconds (user+system) so far: a cgroup v2 cpu.stat, a cgroup v1
    cpuacct.usage, or /proc/stat (the whole machine, minus this helper and its children:
    the load generator)."""
    if path.endswith("cpu.stat"):
        with open(path) as f:
            for line in f:
                k, v = line.split()
                if k == "usage_usec":
                    return int(v) / 1e6
        fail(f"{path}: no usage_usec")
    if path.endswith("cpuacct.usage"):
        with open(path) as f:
            return int(f.read()) / 1e9
    if path == "/proc/stat":
        with open(path) as f:
            fields = f.readline().split()[1:]
        user, nice, system, _idle, _iowait, irq, softirq = (int(x) for x in fields[:7])
        busy = (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")
        me = os.times()
        return busy - (me.user + me.system + me.children_user + me.children_system)
    fail(f"{path}: not a CPU accounting file")


def files_under(dirs):
    n = 0
    for d in dirs:
        for _root, _dirs, files in os.walk(d):
            n += sum(1 for f in files if not f.startswith("."))
    return n


def wait_drained(dirs, deadline):
    while time.monotonic() < deadline:
        if files_under(dirs) == 0:
            return True
        time.sleep(0.05)
    return False


def cmd_wait(a):
    ok = wait_drained(a.dirs, time.monotonic() + a.timeout)
    out(drained="yes" if ok else "no", left=files_under(a.dirs))


# --- rate: smtp-source, acceptance and end to end ---------------------------------------


def cmd_rate(a):
    arrivals = Arrivals(a.maildir)
    dirs = [d for d in a.queue_dirs.split(",") if d]
    cpu0 = cpu_seconds(a.cpu)
    t0 = time.monotonic()
    deadline = t0 + a.timeout
    try:
        gen = subprocess.run(a.command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             timeout=a.timeout)
    except subprocess.TimeoutExpired:
        fail(f"{a.command[0]}: no end within {a.timeout}s")
    t1 = time.monotonic()
    if gen.returncode != 0:
        sys.stderr.write(gen.stderr.decode(errors="replace")[-2000:])
        fail(f"{a.command[0]} exited {gen.returncode}")
    errors = gen.stderr.decode(errors="replace").strip()
    delivered = arrivals.wait_for(a.expect, deadline)
    t2 = arrivals.last if arrivals.last is not None else time.monotonic()
    arrivals.close()
    # CPU is read once the queue is empty, so the clean-up after the last delivery counts.
    drained = wait_drained(dirs, time.monotonic() + 30)
    time.sleep(0.2)
    cpu = cpu_seconds(a.cpu) - cpu0
    accept = t1 - t0
    e2e = t2 - t0
    out(messages=a.expect, delivered=arrivals.count, complete="yes" if delivered else "no",
        drained="yes" if drained else "no",
        accept_s=accept, accept_rate=a.expect / accept,
        e2e_s=e2e, e2e_rate=a.expect / e2e if delivered else 0.0,
        cpu_s=cpu, cpu_per_1000=cpu * 1000 / a.expect,
        generator_errors=len(errors.splitlines()) if errors else 0)
    if errors:
        sys.stderr.write(errors[-1000:] + "\n")


# --- an SMTP client over a raw socket --------------------------------------------------


class Smtp:
    def __init__(self, port, timeout=REPLY_TIMEOUT):
        self.sock = socket.create_connection((HOST, port), timeout=CONNECT_TIMEOUT)
        self.sock.settimeout(timeout)
        self.rfile = self.sock.makefile("rb")

    def reply(self):
        lines = []
        while True:
            line = self.rfile.readline(4096)
            if not line:
                raise ConnectionError("connection closed: " + repr(b"".join(lines)))
            lines.append(line)
            if len(line) < 4 or line[3:4] != b"-":
                return int(line[:3]), b"".join(lines)

    def cmd(self, text, expect):
        self.sock.sendall(text.encode() + b"\r\n")
        code, raw = self.reply()
        if code // 100 != expect:
            raise ConnectionError(f"{text!r}: {raw!r}")
        return code

    def greet(self):
        code, raw = self.reply()
        if code != 220:
            raise ConnectionError(f"greeting {raw!r}")
        self.cmd("EHLO load.bench.test", 2)

    def message(self, sender, rcpt, body):
        """One transaction; returns the seconds from MAIL FROM to the final 250."""
        t = time.monotonic()
        self.cmd(f"MAIL FROM:<{sender}>", 2)
        self.cmd(f"RCPT TO:<{rcpt}>", 2)
        self.cmd("DATA", 3)
        self.sock.sendall(body + b".\r\n")
        code, raw = self.reply()
        if code != 250:
            raise ConnectionError(f"after DATA: {raw!r}")
        return time.monotonic() - t

    def quit(self):
        try:
            self.cmd("QUIT", 2)
        finally:
            self.sock.close()


def make_body(sender, rcpt, size, n=0):
    head = (f"From: <{sender}>\r\nTo: <{rcpt}>\r\nSubject: bench {n}\r\n"
            f"Message-Id: <{time.time_ns()}.{n}@load.bench.test>\r\n\r\n").encode()
    line = b"La de da de da 1. La de da de da 2. La de da de da 3. La de da de da 4.\r\n"
    body = bytearray(head)
    while len(body) < size:
        body += line
    return bytes(body[:size]).rstrip(b"\r\n.") + b"\r\n"


def percentile(values, p):
    s = sorted(values)
    if not s:
        return 0.0
    k = min(len(s) - 1, max(0, int(round(p / 100.0 * len(s) + 0.5)) - 1))
    return s[k]


def cmd_latency(a):
    arrivals = Arrivals(a.maildir)
    per = [a.n // a.conns + (1 if i < a.n % a.conns else 0) for i in range(a.conns)]
    lat, errs = [], []
    lock = threading.Lock()

    def worker(i, count):
        try:
            s = Smtp(a.port)
            s.greet()
            mine = []
            for k in range(count):
                mine.append(s.message(a.sender, a.rcpt, make_body(a.sender, a.rcpt, a.size, k)))
            s.quit()
            with lock:
                lat.extend(mine)
        except (OSError, ConnectionError) as e:
            with lock:
                errs.append(str(e))

    t0 = time.monotonic()
    threads = [threading.Thread(target=worker, args=(i, c)) for i, c in enumerate(per)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(a.timeout)
    t1 = time.monotonic()
    ok = arrivals.wait_for(len(lat), t0 + a.timeout)
    arrivals.close()
    if errs:
        sys.stderr.write("latency: " + errs[0] + "\n")
    out(transactions=len(lat), errors=len(errs), complete="yes" if ok else "no",
        p50_ms=percentile(lat, 50) * 1000, p99_ms=percentile(lat, 99) * 1000,
        max_ms=max(lat, default=0) * 1000, wall_s=t1 - t0)


def cmd_sched(a):
    """250 → Maildir/new, one message at a time on an idle system."""
    arrivals = Arrivals(a.maildir)
    samples = []
    s = Smtp(a.port)
    s.greet()
    for k in range(a.n):
        before = arrivals.count
        s.message(a.sender, a.rcpt, make_body(a.sender, a.rcpt, a.size, k))
        t250 = time.monotonic()
        if not arrivals.wait_for(before + 1, t250 + 30):
            fail("a message did not arrive in Maildir/new within 30s")
        with arrivals.lock:
            samples.append(arrivals.times[before] - t250)
        time.sleep(0.05)
    s.quit()
    arrivals.close()
    out(samples=len(samples), p50_ms=percentile(samples, 50) * 1000,
        p90_ms=percentile(samples, 90) * 1000, max_ms=max(samples) * 1000)


# --- connection rate -------------------------------------------------------------------


def cmd_connrate(a):
    errs = [0]
    lock = threading.Lock()

    def worker(count):
        bad = 0
        for _ in range(count):
            try:
                s = socket.create_connection((HOST, a.port), timeout=CONNECT_TIMEOUT)
                s.settimeout(CONNECT_TIMEOUT)
                got = b""
                while True:
                    b = s.recv(256)
                    if not b:
                        break
                    got += b
                s.close()
                if got != b"ok\n":
                    bad += 1
            except OSError:
                bad += 1
        with lock:
            errs[0] += bad

    per = [a.n // a.parallel + (1 if i < a.n % a.parallel else 0) for i in range(a.parallel)]
    t0 = time.monotonic()
    threads = [threading.Thread(target=worker, args=(c,)) for c in per]
    for t in threads:
        t.start()
    for t in threads:
        t.join(a.timeout)
    dt = time.monotonic() - t0
    out(connections=a.n, errors=errs[0], seconds=dt, rate=a.n / dt)


# --- memory of one connection's chain --------------------------------------------------


def children_of(pid):
    kids = []
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open(f"/proc/{p}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid:
            kids.append(int(p))
    return kids


def status(pid):
    fields = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                fields[k] = v.strip()
    except OSError:
        pass
    return fields


def kb(v):
    return int(v.split()[0]) if v else 0


def cmd_hold(a):
    s = Smtp(a.port)
    s.greet()
    s.cmd(f"MAIL FROM:<{a.sender}>", 2)
    s.cmd(f"RCPT TO:<{a.rcpt}>", 2)
    s.cmd("DATA", 3)
    body = make_body(a.sender, a.rcpt, a.size)
    s.sock.sendall(body)
    # Let the chain read what was sent and the queue program start and copy it.
    time.sleep(1.0)
    chain, todo = [], list(children_of(a.server_pid))
    while todo:
        p = todo.pop()
        chain.append(p)
        todo.extend(children_of(p))
    total_hwm = total_rss = 0
    for p in sorted(chain):
        st = status(p)
        hwm, rss = kb(st.get("VmHWM")), kb(st.get("VmRSS"))
        total_hwm += hwm
        total_rss += rss
        print(f"process={st.get('Name', '?')} pid={p} vmhwm_kb={hwm} vmrss_kb={rss} "
              f"vmpeak_kb={kb(st.get('VmPeak'))}")
    s.sock.sendall(b".\r\n")
    code, _ = s.reply()
    s.quit()
    out(processes=len(chain), sum_vmhwm_kb=total_hwm, sum_vmrss_kb=total_rss, reply=code)


def cmd_send(a):
    try:
        s = Smtp(a.port, timeout=60)
        s.greet()
        s.message(a.sender, a.rcpt, make_body(a.sender, a.rcpt, a.size))
        s.quit()
        out(reply=250)
    except (OSError, ConnectionError) as e:
        sys.stderr.write(f"send: {e}\n")
        out(reply="fail")


# --- POP3 ------------------------------------------------------------------------------


def cmd_pop3(a):
    import poplib

    t0 = time.monotonic()
    p = poplib.POP3(HOST, a.port, timeout=60)
    p.user(a.user)
    p.pass_(a.password)
    count, size = p.stat()
    t1 = time.monotonic()
    got = 0
    for i in range(1, count + 1):
        got += sum(len(line) + 2 for line in p.retr(i)[1])
    t2 = time.monotonic()
    p.quit()
    t3 = time.monotonic()
    out(messages=count, octets=size, retrieved_octets=got, login_stat_s=t1 - t0,
        retr_s=t2 - t1, quit_s=t3 - t2, total_s=t3 - t0, msg_per_s=count / (t2 - t1))


def cmd_fill(a):
    new = os.path.join(a.maildir, "new")
    body = make_body("sender@bench.test", "pop@bench.test", a.size).replace(b"\r\n", b"\n")
    now = int(time.time())
    for i in range(a.n):
        name = os.path.join(new, f"{now}.M{i}P{os.getpid()}.bench,S={len(body)}")
        with open(name, "wb") as f:
            f.write(body)
        os.chown(name, a.uid, a.gid)
    out(filled=a.n)


# --- the disk --------------------------------------------------------------------------


def cmd_fsync(a):
    path = os.path.join(a.dir, "fsync-probe")
    block = os.urandom(4096)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    n, t0 = 0, time.monotonic()
    while time.monotonic() - t0 < a.seconds:
        os.write(fd, block)
        os.fsync(fd)
        n += 1
    file_rate = n / (time.monotonic() - t0)
    os.close(fd)
    os.unlink(path)
    # The pattern of a commit: create, write, fsync, rename, fsync the directory.
    dfd = os.open(a.dir, os.O_RDONLY)
    n, t0 = 0, time.monotonic()
    while time.monotonic() - t0 < a.seconds:
        tmp = os.path.join(a.dir, f"c{n}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, block)
        os.fsync(fd)
        os.close(fd)
        os.rename(tmp, os.path.join(a.dir, f"c{n}"))
        os.fsync(dfd)
        n += 1
    commit_rate = n / (time.monotonic() - t0)
    os.close(dfd)
    for i in range(n):
        os.unlink(os.path.join(a.dir, f"c{i}"))
    out(fsync_per_s=file_rate, commit_per_s=commit_rate)


def cmd_strace(a):
    """Summarise `strace -f -o FILE` output per program: a pid is named by its last
    successful execve, else by PID=NAME given for the processes traced from the start; a
    child takes its parent's name until it execs. Calls are counted where they start."""
    import collections
    import re

    names = dict(item.partition("=")[::2] for item in a.names)
    groups = {"fsync": "fsync", "fdatasync": "fsync", "sync_file_range": "fsync",
              "execve": "execve", "fork": "fork", "vfork": "fork", "clone": "fork",
              "clone3": "fork", "rename": "rename", "renameat": "rename",
              "renameat2": "rename", "link": "rename", "linkat": "rename"}
    counts = collections.defaultdict(collections.Counter)
    pending = {}  # pid -> (call, exec path) of an unfinished call
    start_re = re.compile(r"^(\d+)\s+(\w+)\((.*)$")
    resumed_re = re.compile(r"^(\d+)\s+<\.\.\. (\w+) resumed>(.*)$")
    result_re = re.compile(r"=\s+(-?\d+)")

    def finish(pid, call, path, rest):
        r = result_re.search(rest)
        if not r:
            return
        value = int(r.group(1))
        if call == "execve":
            if value == 0:
                names[pid] = os.path.basename(path)
                counts[names[pid]]["execve"] += 1
        elif groups.get(call) == "fork":
            if value > 0:
                names[str(value)] = names.get(pid, "?")
                counts[names.get(pid, "?")]["fork"] += 1
        elif value >= 0:
            counts[names.get(pid, "?")][groups[call]] += 1

    with open(a.file, errors="replace") as f:
        for line in f:
            m = resumed_re.match(line)
            if m:
                pid, call, rest = m.groups()
                if pid in pending and call in groups:
                    finish(pid, call, pending.pop(pid)[1], rest)
                continue
            m = start_re.match(line)
            if not m or m.group(2) not in groups:
                continue
            pid, call, rest = m.groups()
            path = rest.split('"')[1] if call == "execve" and rest.startswith('"') else ""
            if "<unfinished ...>" in rest:
                pending[pid] = (call, path)
            else:
                finish(pid, call, path, rest)
    for prog in sorted(counts):
        c = counts[prog]
        print(f"program={prog} " + " ".join(f"{k}={c[k]}" for k in ("fsync", "execve", "fork", "rename")))


def main():
    ap = argparse.ArgumentParser(prog="load.py")
    sub = ap.add_subparsers(dest="mode", required=True)

    def smtp_args(p):
        p.add_argument("--port", type=int, required=True)
        p.add_argument("--sender", default="sender@bench.test")
        p.add_argument("--rcpt", required=True)
        p.add_argument("--size", type=int, default=4096)

    p = sub.add_parser("rate")
    p.add_argument("--maildir", required=True)
    p.add_argument("--expect", type=int, required=True)
    p.add_argument("--cpu", required=True)
    p.add_argument("--queue-dirs", default="")
    p.add_argument("--timeout", type=float, default=600)
    p.add_argument("command", nargs=argparse.REMAINDER)
    p.set_defaults(fn=cmd_rate)

    p = sub.add_parser("latency")
    smtp_args(p)
    p.add_argument("--maildir", required=True)
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--conns", type=int, default=10)
    p.add_argument("--timeout", type=float, default=600)
    p.set_defaults(fn=cmd_latency)

    p = sub.add_parser("sched")
    smtp_args(p)
    p.add_argument("--maildir", required=True)
    p.add_argument("--n", type=int, default=20)
    p.set_defaults(fn=cmd_sched)

    p = sub.add_parser("connrate")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--parallel", type=int, default=1)
    p.add_argument("--timeout", type=float, default=300)
    p.set_defaults(fn=cmd_connrate)

    p = sub.add_parser("hold")
    smtp_args(p)
    p.add_argument("--server-pid", type=int, required=True)
    p.set_defaults(fn=cmd_hold)

    p = sub.add_parser("send")
    smtp_args(p)
    p.set_defaults(fn=cmd_send)

    p = sub.add_parser("pop3")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--user", required=True)
    p.add_argument("--password", required=True)
    p.set_defaults(fn=cmd_pop3)

    p = sub.add_parser("fill")
    p.add_argument("--maildir", required=True)
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--size", type=int, default=4096)
    p.add_argument("--uid", type=int, required=True)
    p.add_argument("--gid", type=int, required=True)
    p.set_defaults(fn=cmd_fill)

    p = sub.add_parser("fsync")
    p.add_argument("--dir", required=True)
    p.add_argument("--seconds", type=float, default=2)
    p.set_defaults(fn=cmd_fsync)

    p = sub.add_parser("wait")
    p.add_argument("--timeout", type=float, default=60)
    p.add_argument("dirs", nargs="+")
    p.set_defaults(fn=cmd_wait)

    p = sub.add_parser("strace")
    p.add_argument("file")
    p.add_argument("names", nargs="*", help="PID=NAME for processes traced from the start")
    p.set_defaults(fn=cmd_strace)

    a = ap.parse_args()
    if getattr(a, "command", None) and a.command[:1] == ["--"]:
        a.command = a.command[1:]
    a.fn(a)


if __name__ == "__main__":
    main()
