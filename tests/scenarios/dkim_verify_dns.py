# Verify a message's DKIM signatures with dkimpy (Debian's python3-dkim), the keys
# asked of the DNS server at 127.0.0.1:PORT (dnspython) as a receiver would ask DNS.
# Usage: dkim_verify_dns.py PORT MESSAGE_FILE
# Prints each signature's tags and dkimpy's verdict, then exits 0 when there is at least
# one signature and every one passes, else 1.
import sys
import dkim
import dns.resolver

resolver = dns.resolver.Resolver(configure=False)
resolver.nameservers = ["127.0.0.1"]
resolver.port = int(sys.argv[1])


def dnsfunc(name, timeout=5):
    try:
        answer = resolver.resolve(name.decode().rstrip("."), "TXT", lifetime=timeout)
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return None
    return b"".join(b"".join(r.strings) for r in answer)


msg = open(sys.argv[2], "rb").read()
d = dkim.DKIM(msg)
sigs = [v for (k, v) in d.headers if k.lower() == b"dkim-signature"]
ok = bool(sigs)
for i, sig in enumerate(sigs):
    tags = dkim.util.parse_tag_value(sig)
    try:
        good, why = d.verify(idx=i, dnsfunc=dnsfunc), ""
    except dkim.ValidationError as e:
        good, why = False, " (%s)" % e
    ok = ok and good
    print("dkimpy: d=%s s=%s a=%s c=%s h=%s %s%s" % (
        tags[b"d"].decode(), tags[b"s"].decode(), tags[b"a"].decode(),
        tags.get(b"c", b"simple/simple").decode(), tags[b"h"].decode(),
        "pass" if good else "fail", why))
if not sigs:
    print("dkimpy: no signature")
sys.exit(0 if ok else 1)
