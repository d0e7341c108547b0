# An SMTP server that keeps each message's bytes exactly as they came over the wire
# (dot-stuffing undone, CRLF kept), standard library only: the peer postern-remote
# delivers to in the DKIM scenario. Usage: smtp_sink.py PORT DIR — listens on
# 127.0.0.1:PORT, writes DIR/N.eml for the Nth message (through a temporary name, so a
# file that exists is whole). Offers 8BITMIME and nothing else; accepts every address.
import os
import socketserver
import sys

PORT, DIR = int(sys.argv[1]), sys.argv[2]
count = 0


class Session(socketserver.StreamRequestHandler):
    def reply(self, line):
        self.wfile.write(line.encode() + b"\r\n")

    def handle(self):
        global count
        self.reply("220 sink.elsewhere.test ESMTP")
        while True:
            line = self.rfile.readline()
            if not line:
                return
            verb = line[:4].upper()
            if verb == b"EHLO":
                self.reply("250-sink.elsewhere.test")
                self.reply("250 8BITMIME")
            elif verb == b"HELO":
                self.reply("250 sink.elsewhere.test")
            elif verb in (b"MAIL", b"RCPT", b"RSET", b"NOOP"):
                self.reply("250 ok")
            elif verb == b"DATA":
                self.reply("354 go ahead")
                data = bytearray()
                while True:
                    l = self.rfile.readline()
                    if not l or l == b".\r\n":
                        break
                    data += l[1:] if l.startswith(b".") else l
                count += 1
                tmp = os.path.join(DIR, ".%d.tmp" % count)
                with open(tmp, "wb") as f:
                    f.write(data)
                os.rename(tmp, os.path.join(DIR, "%d.eml" % count))
                self.reply("250 2.0.0 kept as %d" % count)
            elif verb == b"QUIT":
                self.reply("221 bye")
                return
            else:
                self.reply("502 5.5.2 not here")


socketserver.TCPServer.allow_reuse_address = True
with socketserver.TCPServer(("127.0.0.1", PORT), Session) as server:
    server.serve_forever()
