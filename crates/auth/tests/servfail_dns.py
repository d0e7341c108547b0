# A DNS server on 127.0.0.1 that answers every query SERVFAIL (RFC 1035 RCODE 2), as a
# broken authoritative server does: dnsmasq forwards one zone to it, so SPF's clients see
# dnsmasq answer SERVFAIL (a dead server would only time out). Prints its port, then
# serves until killed.
import socket

s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1], flush=True)
while True:
    q, peer = s.recvfrom(4096)
    if len(q) < 12:
        continue
    # The query's ID and question; QR=1, RD as asked, RA=1, RCODE=2; no records.
    flags = bytes([0x80 | (q[2] & 0x01), 0x80 | 2])
    s.sendto(q[:2] + flags + q[4:6] + b"\0\0\0\0\0\0" + q[12:], peer)
