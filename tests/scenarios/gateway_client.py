#!/usr/bin/env python3
"""The clients of the three-host scenario (tests/scenarios/gateway.rs), run inside a
network namespace with `ip netns exec`:

  gateway_client.py dns SERVER NAME TYPE      one query (A, MX or TXT) to SERVER:53;
                                              prints the answers, one per line
  gateway_client.py send                      one SMTP transaction, step by step;
                                              prints each step's reply: STEP CODE TEXT

`send` reads SMTP_SERVER (an address) or SMTP_MX and SMTP_DNS (the server found as an
internet sender finds it: the domain's best MX, then its A record), SMTP_SOURCE (the
address to connect from), SMTP_HELO, SMTP_FROM, SMTP_RCPTS (blank-separated),
SMTP_MESSAGE and SMTP_STARTTLS=1 from the environment. A refusal is reported, never
raised (steps: mx, server, greeting, ehlo, starttls, mail, "rcpt ADDR", data), so the
test asserts every code.
"""

import os
import random
import smtplib
import socket
import ssl
import struct
import sys

TYPES = {"A": 1, "MX": 15, "TXT": 16}
TIMEOUT = 30


def encode_name(name):
    out = b""
    for label in name.rstrip(".").split("."):
        out += bytes([len(label)]) + label.encode("ascii")
    return out + b"\0"


def read_name(packet, pos):
    """The (possibly compressed) name at pos, and the position after it."""
    labels, end, jumps = [], None, 0
    while True:
        n = packet[pos]
        if n & 0xC0 == 0xC0:
            if end is None:
                end = pos + 2
            pos = ((n & 0x3F) << 8) | packet[pos + 1]
            jumps += 1
            if jumps > 20:
                raise ValueError("compression loop")
            continue
        if n == 0:
            return ".".join(labels), (end if end is not None else pos + 1)
        labels.append(packet[pos + 1 : pos + 1 + n].decode("ascii"))
        pos += 1 + n


def query(server, name, rtype):
    """Answers of one query: A → addresses, MX → (preference, host), TXT → strings."""
    qid = random.randrange(65536)
    packet = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    packet += encode_name(name) + struct.pack(">HH", TYPES[rtype], 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(5)
        s.sendto(packet, (server, 53))
        reply = s.recv(4096)
    rid, flags, qd, an, _, _ = struct.unpack(">HHHHHH", reply[:12])
    if rid != qid:
        raise ValueError("reply to another query")
    if flags & 0xF:
        raise LookupError(f"{name} {rtype}: rcode {flags & 0xF}")
    pos = 12
    for _ in range(qd):
        _, pos = read_name(reply, pos)
        pos += 4
    answers = []
    for _ in range(an):
        _, pos = read_name(reply, pos)
        atype, _, _, rdlen = struct.unpack(">HHIH", reply[pos : pos + 10])
        pos += 10
        rdata = reply[pos : pos + rdlen]
        if atype == TYPES[rtype] == 1:
            answers.append(socket.inet_ntoa(rdata))
        elif atype == TYPES[rtype] == 15:
            pref = struct.unpack(">H", rdata[:2])[0]
            answers.append((pref, read_name(reply, pos + 2)[0]))
        elif atype == TYPES[rtype] == 16:
            i, text = 0, b""
            while i < len(rdata):
                text += rdata[i + 1 : i + 1 + rdata[i]]
                i += 1 + rdata[i]
            answers.append(text.decode())
        pos += rdlen
    return answers


def line(key, code_text):
    code, text = code_text
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    print(key, code, " / ".join(text.splitlines()), flush=True)
    return code


def send(env):
    server = env.get("SMTP_SERVER")
    if not server:
        mxs = sorted(query(env["SMTP_DNS"], env["SMTP_MX"], "MX"))
        print("mx", mxs[0][1])
        server = query(env["SMTP_DNS"], mxs[0][1], "A")[0]
    print("server", server, flush=True)
    helo = env.get("SMTP_HELO", "client.test")
    s = smtplib.SMTP(timeout=TIMEOUT, source_address=(env["SMTP_SOURCE"], 0))
    line("greeting", s.connect(server, 25))
    line("ehlo", s.ehlo(helo))
    if env.get("SMTP_STARTTLS") == "1":
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        line("starttls", s.starttls(context=ctx))
        s.ehlo(helo)
    if line("mail", s.mail(env["SMTP_FROM"])) != 250:
        return
    accepted = 0
    for rcpt in env["SMTP_RCPTS"].split():
        accepted += line("rcpt " + rcpt, s.rcpt(rcpt)) in (250, 251)
    if accepted:
        message = env["SMTP_MESSAGE"].replace("\r\n", "\n").replace("\n", "\r\n")
        try:
            line("data", s.data(message.encode()))
        except smtplib.SMTPDataError as e:
            line("data", (e.smtp_code, e.smtp_error))
    try:
        s.quit()
    except smtplib.SMTPServerDisconnected:
        pass


def main():
    if sys.argv[1:2] == ["dns"] and len(sys.argv) == 5:
        _, _, server, name, rtype = sys.argv
        for answer in query(server, name, rtype):
            if isinstance(answer, tuple):
                answer = " ".join(str(a) for a in answer)
            print(answer)
    elif sys.argv[1:] == ["send"]:
        send(os.environ)
    else:
        sys.exit("usage: gateway_client.py dns SERVER NAME TYPE | send (SMTP_* variables)")


if __name__ == "__main__":
    main()
