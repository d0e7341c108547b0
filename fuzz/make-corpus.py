#!/usr/bin/env python3
"""Write the seed corpora under fuzz/corpus/TARGET/ (run from anywhere; overwrites the
files it names and leaves any others alone).

Seeds are small and realistic: the SMTP dialogues of crates/smtpd/tests/dialogs, MIME
messages with attachments, small zip files, the shipped control files, queue and state
files as postern writes them, DNS answers with TXT records. Each target's input format
is described at the top of fuzz/fuzz_targets/TARGET.rs.
"""

import base64
import io
import os
import struct
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(ROOT, "fuzz", "corpus")
SEP = b"\n==\n"


def put(target, name, data):
    if isinstance(data, str):
        data = data.encode()
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def crlf(text):
    return text.replace("\r\n", "\n").replace("\n", "\r\n").encode()


# --- SMTP ---------------------------------------------------------------------------

def unescape(text):
    out = bytearray()
    i = 0
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text):
            n = text[i + 1]
            if n == "x":
                out.append(int(text[i + 2:i + 4], 16))
                i += 4
                continue
            out += {"r": b"\r", "n": b"\n", "0": b"\0", "\\": b"\\"}[n]
            i += 2
            continue
        out += c.encode()
        i += 1
    return bytes(out)


def dialog_seed(script):
    """The smtp_session input for one test dialog: 4 setup bytes, then the client's bytes."""
    flags, databytes, maxrcpts, queue = 0, 0, 0, None
    data = bytearray()
    for line in script.splitlines():
        if line.startswith("! "):
            key, _, value = line[2:].partition(" ")
            flags |= {"relayclient": 1, "submission": 2, "auth": 4, "tls": 8,
                      "authcleartext": 16, "ratelimit": 128}.get(key, 0)
            if key == "ip" and value == "127.0.0.1":
                flags |= 32
            elif key == "queue":
                flags |= 64
                queue = int(value)
            elif key == "databytes":
                databytes = min(255, max(1, int(value) // 64))
            elif key == "maxrcpts":
                maxrcpts = min(255, int(value))
        elif line.startswith(">| "):
            data += unescape(line[3:])
        elif line.startswith("> "):
            data += unescape(line[2:]) + b"\r\n"
        elif line == ">":
            data += b"\r\n"
    byte1 = queue if queue is not None else databytes
    return bytes([flags, byte1 & 255, maxrcpts, 0]) + bytes(data)


def smtp():
    d = os.path.join(ROOT, "crates", "smtpd", "tests", "dialogs")
    for name in sorted(os.listdir(d)):
        with open(os.path.join(d, name)) as f:
            put("smtp_session", name.replace(".txt", ""), dialog_seed(f.read()))
    plain = base64.b64encode(b"\0alice@example.test\0secret").decode()
    put("smtp_session", "submission-auth-attachment", bytes([2 | 4 | 16, 0, 0, 7]) + crlf(
        "EHLO laptop.example.test\n"
        f"AUTH PLAIN {plain}\n"
        "MAIL FROM:<alice@example.test> SIZE=900 BODY=8BITMIME\n"
        "RCPT TO:<bob@example.test>\nRCPT TO:<\"john doe\"@remote.test> NOTIFY=NEVER\n"
        "DATA\n" + MIME_ATTACHMENT.decode() + "..leading dot\n.\nQUIT\n"))
    put("smtp_session", "verify-callout", bytes([0, 0, 0, 5]) + crlf(
        "EHLO x\nMAIL FROM:<a@remote.test>\nRCPT TO:<alice@verify.example.test>\n"
        "RCPT TO:<nosuch@verify.example.test>\nRCPT TO:<later@verify.example.test>\n"
        "RCPT TO:<crash@verify.example.test>\nDATA\nSubject: v\n\nx\n.\nQUIT\n"))
    put("smtp_session", "auth-login", bytes([4 | 32, 0, 0, 3]) + crlf(
        "EHLO x\nAUTH LOGIN\n" + base64.b64encode(b"alice@example.test").decode() + "\n"
        + base64.b64encode(b"secret").decode() + "\nAUTH LOGIN\n*\nQUIT\n"))

    for i, line in enumerate([
        "MAIL FROM:<alice@example.test> SIZE=1000 BODY=8BITMIME",
        "MAIL FROM:<>",
        "MAIL FROM: <bounce@example.test>",
        "RCPT TO:<bob@example.test>",
        "RCPT TO:<\"john doe\"@example.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;x@y.test",
        "RCPT TO:<@relay.test,@b.test:bob@example.test>",
        "RCPT TO:<postmaster>",
        "RCPT TO:<user@[192.0.2.1]>",
        "RCPT TO:<\"a@b\"@example.test>",
        "RCPT TO:<user%other.test@example.test>",
        "RCPT TO:bare@example.test",
        "EHLO client.example.test",
        "HELO [192.0.2.7]",
        "AUTH PLAIN " + plain,
        "AUTH LOGIN " + base64.b64encode(b"alice@example.test").decode(),
        "DATA",
        ".",
        "..stuffed",
        "Received: from x by y; Mon, 1 Jan 2024 00:00:00 +0000",
        "VRFY postmaster",
        "STARTTLS",
        "QUIT",
    ]):
        put("smtp_command", f"line{i:02}", line)

    put("smtp_reply", "greeting", b"220 mx.remote.test ESMTP Postfix\r\n")
    put("smtp_reply", "ehlo", crlf("250-mx.remote.test\n250-PIPELINING\n250-SIZE 10240000\n"
                                   "250-STARTTLS\n250-ENHANCEDSTATUSCODES\n250-8BITMIME\n250 SMTPUTF8\n"))
    put("smtp_reply", "session", crlf(
        "220 mx.remote.test ESMTP\n250-mx.remote.test\n250 PIPELINING\n250 2.1.0 Ok\n"
        "550-5.1.1 <nobody@remote.test>: Recipient address rejected:\n"
        "550 5.1.1 User unknown in virtual mailbox table\n250 2.1.5 Ok\n"
        "354 End data with <CR><LF>.<CR><LF>\n250 2.0.0 Ok: queued as 4BX1\n221 2.0.0 Bye\n"))
    put("smtp_reply", "temporary", crlf("421 4.3.2 Service shutting down\n"))
    put("smtp_reply", "bare-lf", b"250-first\n250 second\r\n")
    put("smtp_reply", "code-changes", crlf("250-first\n251 second\n"))


# --- MIME, zip, filter rules -------------------------------------------------------

def make_zip(files, compression=zipfile.ZIP_DEFLATED, zip64=False):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as z:
        for name, data in files:
            info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
            info.compress_type = compression
            with z.open(info, "w", force_zip64=zip64) as f:
                f.write(data)
    return buf.getvalue()


def b64lines(data):
    text = base64.b64encode(data).decode()
    return "\n".join(text[i:i + 76] for i in range(0, len(text), 76))


ZIP_EXE = make_zip([("readme.txt", b"read me\n"), ("invoice.pdf.exe", b"MZ" + b"\0" * 64)])
ZIP_NESTED = make_zip([("inner.zip", ZIP_EXE), ("notes.txt", b"notes\n")])

MIME_ATTACHMENT = crlf(
    "From: Alice <alice@example.test>\n"
    "To: Bob <bob@example.test>\n"
    "Subject: =?UTF-8?B?UmVwb3J0IGbDvHIgQm9i?=\n"
    "Date: Mon, 1 Jan 2024 10:00:00 +0000\n"
    "MIME-Version: 1.0\n"
    "Content-Type: multipart/mixed;\n boundary=\"==outer==\"\n"
    "\n"
    "This is a multi-part message in MIME format.\n"
    "--==outer==\n"
    "Content-Type: text/plain; charset=utf-8\n"
    "Content-Transfer-Encoding: quoted-printable\n"
    "\n"
    "Hallo Bob, der Bericht ist angeh=C3=A4ngt.\n"
    "--==outer==\n"
    "Content-Type: application/pdf; name=\"=?ISO-8859-1?Q?Bericht_f=FCr_Bob.pdf?=\"\n"
    "Content-Disposition: attachment;\n filename*=UTF-8''Bericht%20f%C3%BCr%20Bob.pdf\n"
    "Content-Transfer-Encoding: base64\n"
    "\n"
    + b64lines(b"%PDF-1.4\n1 0 obj << >> endobj\ntrailer << >>\n%%EOF\n") + "\n"
    "--==outer==--\n")


def mime():
    put("mime", "attachment-2047-2231", MIME_ATTACHMENT)
    put("mime", "plain", crlf("From: a@example.test\nTo: b@example.test\nSubject: hello\n\nHi.\n"))
    put("mime", "zip-attachment", crlf(
        "From: a@example.test\nTo: b@example.test\nSubject: invoice\nMIME-Version: 1.0\n"
        "Content-Type: multipart/mixed; boundary=b1\n\n--b1\nContent-Type: text/plain\n\nsee zip\n"
        "--b1\nContent-Type: application/zip; name=invoice.zip\n"
        "Content-Disposition: attachment; filename=invoice.zip\n"
        "Content-Transfer-Encoding: base64\n\n" + b64lines(ZIP_NESTED) + "\n--b1--\n"))
    put("mime", "nested-rfc822", crlf(
        "From: a@example.test\nTo: b@example.test\nSubject: Fwd: x\nMIME-Version: 1.0\n"
        "Content-Type: multipart/mixed; boundary=\"o\"\n\n--o\nContent-Type: message/rfc822\n\n"
        "From: c@example.test\nSubject: inner\nMIME-Version: 1.0\n"
        "Content-Type: multipart/alternative; boundary=\"i\"\n\n--i\nContent-Type: text/plain\n\nplain\n"
        "--i\nContent-Type: text/html\n\n<p>html</p>\n--i\n"
        "Content-Type: application/octet-stream; name*0=\"run\"; name*1=\".bat\"\n"
        "Content-Transfer-Encoding: base64\n\nQGVjaG8gb2ZmCg==\n--i--\n--o--\n"))
    put("mime", "uuencode", crlf(
        "From: a@example.test\nSubject: old style\n\nHere it is:\n\nbegin 644 setup.exe\n"
        "M35J0``,````$````__\\``+@`````````0```````````````````````````\n"
        "`\nend\n\nbye\n"))
    put("mime", "partial", crlf(
        "From: a@example.test\nMIME-Version: 1.0\n"
        "Content-Type: message/partial; id=\"abc@example.test\"; number=1; total=2\n\npart one\n"))
    put("mime", "ambiguous", crlf(
        "From: a@example.test\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=a\n"
        "Content-Type: text/plain\nContent-Transfer-Encoding : base64\n\n--a\n"
        "Content-Disposition: attachment; filename=\"a.txt\"; filename=\"b.exe\"\n\nx\n--a--\n"))

    put("zipnames", "deflated", ZIP_EXE)
    put("zipnames", "stored", make_zip([("a.txt", b"a"), ("dir/b.scr", b"b")], zipfile.ZIP_STORED))
    put("zipnames", "nested", ZIP_NESTED)
    put("zipnames", "zip64", make_zip([("big.exe", b"MZ" * 16)], zipfile.ZIP_STORED, zip64=True))
    put("zipnames", "prefixed", b"GIF89a" + b"\0" * 32 + ZIP_EXE)

    with open(os.path.join(ROOT, "control", "filter.rules"), "rb") as f:
        put("filter_rules", "shipped", f.read())
    put("filter_rules", "small", "# local additions\n.exe\t0\tExecutable\nreadme.exe\t29568\tworm\n"
        "I LOVE YOU\tVirus-Subject\tlove bug\n{100,}\tVirus-Date\tDate overflow\n"
        "^spammer@\tVirus-MAILFROM\tknown spammer\n192\\.0\\.2\\.\tVirus-TCPREMOTEIP\ttest net\n"
        "(?i)message/partial\tVirus-Content-Type\tpartial\n{0,3}\tVirus-X-Short\tshort\n")
    put("filter_rules", "bad-line", ".exe\t0\tok\n.com zero\n")


# --- access rules and cdb ------------------------------------------------------------

def cdb(records):
    """djb's cdb, as postern-tcprules writes it."""
    def h(key):
        v = 5381
        for c in key:
            v = ((v << 5) + v) & 0xFFFFFFFF ^ c
        return v
    out = bytearray(2048)
    entries = []
    for k, v in records:
        entries.append((h(k), len(out)))
        out += struct.pack("<II", len(k), len(v)) + k + v
    header = bytearray()
    for i in range(256):
        mine = [e for e in entries if e[0] & 255 == i]
        slots = 2 * len(mine)
        table = [(0, 0)] * slots
        for hv, pos in mine:
            s = (hv >> 8) % slots
            while table[s][1] != 0:
                s = (s + 1) % slots
            table[s] = (hv, pos)
        header += struct.pack("<II", len(out), slots)
        for hv, pos in table:
            out += struct.pack("<II", hv, pos)
    out[:2048] = header
    return bytes(out)


def access():
    for name in ["tcp.smtp", "tcp.pop3", "tcp.submission"]:
        with open(os.path.join(ROOT, "control", name), "rb") as f:
            put("tcprules", name, f.read() + SEP + b"127.0.0.1 localhost")
    put("tcprules", "mixed",
        b"# office and friends\n127.:allow,RELAYCLIENT=\"\"\n192.0.2.0/24:allow,RELAYCLIENT=\"\",X='a b'\n"
        b"10.1.2.3-9:deny\n=.spam.test:deny\n=mail.example.test:allow,RBLSMTPD=\"\"\n"
        b"ident@192.0.2.7:allow\n2001:db8::/32:allow,RELAYCLIENT=\"\"\n::1:allow\n:allow,RBLSMTPD=\"-go away\"\n"
        + SEP + b"192.0.2.7 mail.example.test ident")
    put("tcprules", "ipv6-client", b"2001:db8:1::/48:deny\n2001:db8::/32:allow\n" + SEP + b"2001:db8:1::5")
    put("tcprules", "bad", b"127.0.0.1 allow\n")

    put("cdb", "tcp.smtp.cdb", cdb([(b"127.0.0.1", b"+RELAYCLIENT=\0"), (b"", b"")]))
    put("cdb", "mixed.cdb", cdb([(b"192.0.2.", b"D\0"), (b"=mail.example.test", b"+X=1\0"),
                                 (b"ident@192.0.2.7", b""), (b"192.0.2.0/24", b"+RELAYCLIENT=\0"),
                                 (b"", b"+RBLSMTPD=-blocked\0")]))
    put("cdb", "empty.cdb", cdb([]))


# --- queue, state, users, logs ------------------------------------------------------

def queue():
    env = b"Fbounce@example.test\0Tbob@example.test\0T\"john doe\"@remote.test\0\0"
    info = b"Iuid=1000\0Itime=1700000000\0Ipriority=1\0Iauth=alice@example.test\0"
    message = crlf("Received: from x\nFrom: a@example.test\nSubject: s\n\nbody\n").replace(b"\r\n", b"\n")
    block = env + info
    put("queue_file", "queue-file", b"PQ1\n" + struct.pack(">Q", len(block)) + block + message)
    padded = block + b"\0" * 200
    put("queue_file", "queue-file-padded", b"PQ1\n" + struct.pack(">Q", len(padded)) + padded + message)
    put("queue_file", "envelope", env)
    put("queue_file", "envelope-null-sender", b"F\0Tpostmaster@example.test\0\0")
    # Open finding: postern-scan passes a non-UTF-8 address on as U+FFFD.
    put("queue_file", "envelope-latin1", b"Fj\xfcrgen@example.test\0Tb@example.test\0\0")
    put("queue_file", "envelope-truncated", b"Fa@b\0Tc@d\0")

    put("queue_header", "inject-t", crlf(
        "From alice Mon Jan  1 00:00:00 2024\nFrom: Alice <alice@example.test>\n"
        "To: Bob <bob@example.test>, \"Doe, John\" <john@remote.test>,\n root\n"
        "Cc: team: carol@example.test, dave@example.test;\nBcc : secret@example.test (hidden)\n"
        "Subject: folded\n  subject line\n\nbody\n"))
    put("queue_header", "no-blank-line", b"Subject: x\nthis is the body\n")
    put("queue_header", "cron", b"To: root\nSubject: Cron <root@host> run-parts\n\nout\n")

    put("send_state", "state", (
        "v=1 birth=1700000000 tries=2 next=1700000600 priority=0 held=0 from=<alice@example.test> "
        "auth=alice@example.test trusted=1\n"
        "rcpt=<bob@example.test> kind=local status=done tries=1 last=\"delivered: users/example.test/bob\"\n"
        "rcpt=<\"john doe\"@remote.test> kind=remote status=deferred tries=2 "
        "last=\"451 4.7.1 greylisted, try again \\\"later\\\"\"\n"
        "rcpt=<x@remote.test> kind=remote status=failed tries=1 last=\"550 5.1.1 no such user \\xc3\\xa9\"\n"))
    put("send_state", "held", "v=1 birth=1700000000 tries=0 next=0 priority=1 held=30 holdsince=1700000100 "
        "from=<> bounced=1\nrcpt=<a@b.test> kind=remote status=todo tries=0 last=\"\"\n")
    # Regression seed: `\\x` before a character cut in two panicked the log-line parser.
    put("send_state", "regression-hex-escape", "v=1 birth=1 tries=0 next=0 priority=0\n"
        "rcpt=<a@b> kind=local status=todo tries=0 last=\\xa\u00e9\n")
    put("send_state", "old", "v=1 birth=1 tries=0 next=0 priority=0\nrcpt=<a@b> kind=local status=todo tries=0\n")

    put("userdb", "instance", (
        "example.test\nexample.org\n# old\n" + "\n==\n" +
        "alice@example.test:$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2g:0\n"
        "bob@example.test:!:1000000:users/example.test/bob\n"
        "Carol@Example.ORG:!disabled:0:\n" + "\n==\n" +
        "postmaster@example.test: alice@example.test\nsales@example.test: alice@example.test, bob@example.test,"
        " someone@remote.test\n@example.org: carol@example.org\n"))
    # Regression seed: a quota of `+0` or `00` was a quota of 0 bytes, `0` none.
    put("userdb", "regression-zero-quota", "example.test\n==\na@example.test:!:+0\nb@example.test:!:00\n")
    put("userdb", "errors", "example.test\n==\nalice@example.test:plain:0\nbob@example.test:!:x\n"
        "eve@example.test:!:0:/etc\n==\nalias: \n")


def logs():
    stamp = "@4000000065920080" + "1234abcd"
    put("multilog", "service", (
        "t\ns1000000\nn20\n-*\n+* fatal: *\ne\n=status\n./main\n!gzip\n+*\n./all\n" + "\n==\n" +
        "event=connect ip=192.0.2.7\npostern-smtpd: fatal: unable to read control\n"
        + "x" * 1200 + "\nlast line without newline"))
    put("multilog", "classic", "./main\n==\n" + stamp + " already stamped\n\nempty line above\n")
    put("multilog", "bad", "s\n==\nx\n")

    put("tai64n", "label", stamp + " event=connect ip=192.0.2.7\n" + stamp + "\n")
    put("tai64n", "status-classic", struct.pack(">QI", (1 << 62) + 10 + 1700000000, 5) + struct.pack("<I", 1234) + b"\0u")
    put("tai64n", "status-encore", struct.pack(">QI", (1 << 62) + 10 + 1700000000, 5) + struct.pack("<I", 0) + b"\0d\x01\0"
        + struct.pack(">QI", (1 << 62) + 10 + 1700000001, 0) + struct.pack("<I", 99) + b"\x01u\x02\0")
    put("tai64n", "upper-hex", "@4000000065920080ABCDEF01 x\n")

    put("control", "rcpthosts", "# hosts we accept mail for\nexample.test\r\n  example.org  \n\n#x\n.example.net\n")
    put("control", "resolvers", "127.0.0.1\n192.0.2.53:5353\n::1\n[2001:db8::53]:53\nfe80::1%eth0\n")
    put("control", "resolv.conf", "# generated\nsearch example.test\nnameserver 192.0.2.53\nnameserver 2001:db8::53\n"
        "nameserver fe80::1%eth0\noptions ndots:1\n")


# --- POP3, checkpassword, DNS --------------------------------------------------------

def pop3():
    plain = base64.b64encode(b"\0alice@example.test\0secret").decode()
    put("pop3_command", "transaction", crlf(
        "CAPA\nUSER alice@example.test\nPASS secret\nSTAT\nLIST\nLIST 1\nUIDL\nRETR 1\nTOP 2 10\n"
        "DELE 1\nRSET\nNOOP\nQUIT\n"))
    put("pop3_command", "auth", crlf(f"CAPA\nAUTH PLAIN {plain}\nAUTH PLAIN\n{plain}\nAUTH PLAIN\n*\nSTLS\n"))
    put("pop3_command", "bare-lf-and-long", b"user bob\npass x\n" + b"A" * 300 + b"\nQUIT")

    put("maildir", "message-lf", "1700000000.M20P300.mx.example.test,S=97,W=104:2,S\n"
        "From: a@example.test\nSubject: dots\n\n.leading dot\n..two\n.\nlast line without LF")
    put("maildir", "message-crlf", crlf("1700000001.M1P2.host:2,FS\nSubject: x\n\nbody\n.\n"))
    put("maildir", "maildirsize", "10000000S,1000C\n12345 3\n-200 -1\n  \n")
    put("maildir", "maildirsize-odd", "+5S, 7C ,9X\n1 1\n")

    put("checkpassword", "with-timestamp", b"alice@example.test\0secret\0<12345.1700000000@mx.example.test>\0")
    put("checkpassword", "plain", b"bob@example.test\0pw\0")
    put("checkpassword", "short", b"alice@example.test\0")


def dns_name(name):
    out = b""
    for label in name.split("."):
        if label:
            out += bytes([len(label)]) + label.encode()
    return out + b"\0"


def dns_txt_response(qname, texts):
    header = struct.pack(">HHHHHH", 0x1234, 0x8180, 1, len(texts), 0, 0)
    question = dns_name(qname) + struct.pack(">HH", 16, 1)
    answers = b""
    for strings in texts:
        rdata = b"".join(bytes([len(s)]) + s for s in strings)
        answers += b"\xc0\x0c" + struct.pack(">HHIH", 16, 1, 300, len(rdata)) + rdata
    return header + question + answers


def dns():
    q = "7.2.0.192.zen.example.test"
    put("dns_txt", "listed", dns_txt_response(q, [[b"Listed: see https://bl.example.test/query?ip=192.0.2.7"]])
        + SEP + crlf("EHLO client\nMAIL FROM:<a@b.test>\nRCPT TO:<c@d.test>\nDATA\nQUIT\n"))
    put("dns_txt", "two-records", dns_txt_response(q, [[b"part one, ", b"part two"], [b"\r\n550 injected\r\n"]]))
    put("dns_txt", "empty", dns_txt_response(q, [[b""]]) + SEP + b"HELO x\r\nQUIT\r\n")


if __name__ == "__main__":
    smtp()
    mime()
    access()
    queue()
    logs()
    pop3()
    dns()
    total = 0
    for dirpath, _, files in os.walk(CORPUS):
        total += sum(os.path.getsize(os.path.join(dirpath, f)) for f in files)
    print(f"fuzz/corpus: {total} bytes")
