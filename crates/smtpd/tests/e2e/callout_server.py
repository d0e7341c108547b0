# The next hop of recipient verification, for postern-smtpd's tests: an SMTP server on
# a raw socket, one thread per connection. Usage:
#   callout_server.py DIR [ADDR=CODE ...] [--delay SECONDS] [--silent]
# Prints its port on stdout. Every command line goes to DIR/commands (repr'd, one per
# line, as it arrives). RCPT TO:<ADDR> gets CODE when listed (250 → "250 2.1.5 ok"),
# else 550 5.1.1; the RCPT reply waits SECONDS first (--delay). DATA is answered 354
# (and recorded), though a prober must never send it. --silent: accept connections
# and never say anything.
import os, socket, sys, threading, time

def main():
    d = sys.argv[1]
    codes, delay, silent = {}, 0.0, False
    args = sys.argv[2:]
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--delay":
            i += 1
            delay = float(args[i])
        elif a == "--silent":
            silent = True
        else:
            k, v = a.split("=", 1)
            codes[k] = int(v)
        i += 1
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0))
    s.listen(50)
    print(s.getsockname()[1], flush=True)
    log = open(os.path.join(d, "commands"), "a")
    lock = threading.Lock()
    held = []

    def record(line):
        with lock:
            log.write(repr(line) + "\n")
            log.flush()

    def serve(c):
        f = c.makefile("rb")
        say = lambda text: c.sendall(text.encode() + b"\r\n")
        try:
            say("220 next.hop.test ESMTP")
            while True:
                line = f.readline()
                if not line:
                    break
                record(line)
                cmd = line.strip()
                verb = cmd.split(b" ")[0].upper()
                if verb == b"EHLO":
                    say("250-next.hop.test")
                    say("250 8BITMIME")
                elif verb in (b"HELO", b"MAIL", b"RSET", b"NOOP"):
                    say("250 2.0.0 ok")
                elif verb == b"RCPT":
                    addr = cmd[cmd.find(b"<") + 1:cmd.rfind(b">")].decode()
                    time.sleep(delay)
                    code = codes.get(addr, 550)
                    text = {2: "2.1.5 ok", 4: "4.3.0 try later", 5: "5.1.1 <%s>: no such user" % addr}
                    say("%d %s" % (code, text[code // 100]))
                elif verb == b"DATA":
                    say("354 go on")
                elif verb == b"QUIT":
                    say("221 2.0.0 bye")
                    break
                else:
                    say("502 5.5.1 no")
        except OSError:
            pass
        c.close()

    while True:
        c, _ = s.accept()
        if silent:
            held.append(c)
            continue
        threading.Thread(target=serve, args=(c,), daemon=True).start()

main()
