# A tiny SMTP server for postern-remote's tests, on a raw socket so every byte the
# client sends is kept exactly. Usage: smtp_server.py DIR [ADDR=CODE ...] [--no-pipelining]
# [--greeting CODE] [--tls CERT KEY] [--broken-tls] [--size N] [--raw WHAT BYTES]
# [--auth USER PASSWORD [--auth-mechs "PLAIN LOGIN"] [--auth-clear]] [--smtputf8].
# Prints its port on stdout, then serves connections one at a time,
# writing DIR/commands (every command line, repr'd) and DIR/data.N (raw DATA bytes,
# final dot included; DIR/partial: the bytes of a DATA the client left unfinished).
# A recipient ADDR listed as ADDR=CODE gets that reply code.
# --size N: the EHLO reply offers `SIZE N` (default 100000). --raw WHAT BYTES: send
# BYTES (Python escapes: \n, \r, \x00 ...) exactly, line ends included, as the reply
# to the command WHAT (EHLO, MAIL, RCPT, DATA, ...) or, for WHAT=greeting, as the greeting.
# --auth USER PASSWORD: AUTH (PLAIN and LOGIN, or the --auth-mechs given) is offered inside
# TLS only (also before it with --auth-clear) and required for MAIL (530 without); every
# line of the exchange is logged like a command, then "auth ok USER" or "auth failed".
# --smtputf8: the EHLO reply offers SMTPUTF8.
import base64, binascii, codecs, os, socket, sys

def main():
    d = sys.argv[1]
    replies, pipelining, greeting = {}, True, 220
    tls, broken_tls = None, False
    size, raw = 100000, {}
    auth, mechs, auth_clear = None, "PLAIN LOGIN", False
    smtputf8 = False
    args = sys.argv[2:]
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--no-pipelining":
            pipelining = False
        elif a == "--smtputf8":
            smtputf8 = True
        elif a == "--tls":
            tls = (args[i + 1], args[i + 2])
            i += 2
        elif a == "--size":
            i += 1
            size = int(args[i])
        elif a == "--raw":
            raw[args[i + 1].upper()] = codecs.escape_decode(args[i + 2].encode())[0]
            i += 2
        elif a == "--auth":
            auth = (args[i + 1].encode(), args[i + 2].encode())
            i += 2
        elif a == "--auth-mechs":
            i += 1
            mechs = args[i]
        elif a == "--auth-clear":
            auth_clear = True
        elif a == "--broken-tls":
            broken_tls = True
        elif a == "--greeting":
            i += 1
            greeting = int(args[i])
        else:
            k, v = a.split("=", 1)
            replies[k.lower()] = int(v)
        i += 1
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0))
    s.listen(5)
    print(s.getsockname()[1], flush=True)
    n = 0
    log = open(os.path.join(d, "commands"), "a")
    while True:
        c, _ = s.accept()
        f = c.makefile("rb")
        secure, authed = False, False
        def say(line):
            c.sendall(line.encode() + b"\r\n")
        # A client that drops the connection (after a reply it found malformed, say)
        # ends only this connection.
        try:
            if "GREETING" in raw:
                c.sendall(raw["GREETING"])
            else:
                say("%d test.server ESMTP" % greeting)
            while True:
                line = f.readline()
                if not line:
                    break
                log.write(repr(line) + "\n"); log.flush()
                cmd = line.strip().upper()
                verb = cmd.split(b" ")[0].decode(errors="replace")
                if verb in raw:
                    c.sendall(raw[verb])
                elif cmd.startswith(b"EHLO"):
                    ext = ["test.server", "SIZE %d" % size, "8BITMIME"] + (["PIPELINING"] if pipelining else [])
                    if smtputf8:
                        ext.append("SMTPUTF8")
                    if auth and (secure or auth_clear):
                        ext.append("AUTH " + mechs)
                    if (tls or broken_tls) and not secure:
                        ext.append("STARTTLS")
                    for e in ext[:-1]:
                        say("250-" + e)
                    say("250 " + ext[-1])
                elif cmd.startswith(b"AUTH") and auth:
                    words = line.strip().split()
                    mech = words[1].decode(errors="replace").upper() if len(words) > 1 else ""
                    if mech not in mechs.split():
                        say("504 5.5.4 unrecognized authentication type")
                        continue
                    def answer(challenge):
                        say("334 " + challenge)
                        got = f.readline()
                        log.write(repr(got) + "\n"); log.flush()
                        try:
                            return base64.b64decode(got.strip(), validate=True)
                        except binascii.Error:
                            return None
                    if mech == "PLAIN":
                        if len(words) > 2:
                            try:
                                resp = base64.b64decode(words[2], validate=True)
                            except binascii.Error:
                                resp = None
                        else:
                            resp = answer("")
                        ok = resp is not None and resp.split(b"\0")[1:] == [auth[0], auth[1]]
                    else:
                        user = answer("VXNlcm5hbWU6")
                        password = answer("UGFzc3dvcmQ6")
                        ok = (user, password) == auth
                    if ok:
                        authed = True
                        log.write("auth ok %s\n" % auth[0].decode()); log.flush()
                        say("235 2.7.0 Authentication successful")
                    else:
                        log.write("auth failed\n"); log.flush()
                        say("535 5.7.8 Authentication credentials invalid")
                elif cmd.startswith(b"MAIL") and auth and not authed:
                    say("530 5.7.0 Authentication required")
                elif cmd.startswith(b"HELO") or cmd.startswith(b"MAIL") or cmd.startswith(b"RSET") or cmd.startswith(b"NOOP"):
                    say("250 ok")
                elif cmd.startswith(b"RCPT"):
                    addr = line.strip()[8:].strip(b"<>").decode(errors="replace").lower()
                    code = replies.get(addr, 250)
                    say("%d %s" % (code, "ok" if code < 400 else "no thanks for " + addr))
                elif cmd == b"DATA":
                    say("354 go ahead")
                    data = b""
                    while not data.endswith(b"\r\n.\r\n") and data != b".\r\n":
                        chunk = f.readline()
                        if not chunk:
                            break
                        data += chunk
                    if not data.endswith(b"\r\n.\r\n") and data != b".\r\n":
                        # The client went away inside DATA: what it sent goes to DIR/partial.
                        open(os.path.join(d, "partial"), "ab").write(data)
                        break
                    n += 1
                    open(os.path.join(d, "data.%d" % n), "wb").write(data)
                    say("250 accepted as message %d" % n)
                elif cmd == b"STARTTLS" and broken_tls:
                    say("220 go ahead")
                    c.sendall(b"this is not a TLS handshake\r\n")
                    break
                elif cmd == b"STARTTLS" and tls:
                    import ssl
                    say("220 go ahead")
                    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                    ctx.load_cert_chain(tls[0], tls[1])
                    try:
                        c = ctx.wrap_socket(c, server_side=True)
                    except ssl.SSLError as e:
                        # The client refused the certificate (or the handshake): this
                        # connection ends, the server goes on.
                        log.write("tls failed: %s\n" % e.reason); log.flush()
                        break
                    f = c.makefile("rb")
                    secure = True
                    log.write("tls %s\n" % c.version()); log.flush()
                elif cmd == b"QUIT":
                    say("221 bye")
                    break
                else:
                    say("502 unknown")
        except (BrokenPipeError, ConnectionResetError):
            log.write("connection lost\n"); log.flush()
        c.close()

main()
