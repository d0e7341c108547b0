# SPF results from pyspf (Debian's python3-spf), for postern's SPF comparison test.
# Usage: spf_pyspf.py PORT < CASES
# PORT: the DNS server on 127.0.0.1 to ask (dnsmasq), instead of /etc/resolv.conf.
# CASES: one "IP<TAB>MAIL FROM<TAB>HELO" line per check (an empty MAIL FROM checks the
# HELO identity, postmaster@HELO, as RFC 7208 2.4 says).
# Prints one line per case: pyspf's result word (pass, fail, ..., permerror), then a tab
# and its explanation.
import sys
import dns.resolver
import spf


def main():
    port = int(sys.argv[1])
    # pyspf asks dnspython's default resolver (dns.resolver.query): point it at PORT.
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = ["127.0.0.1"]
    resolver.port = port
    resolver.lifetime = 10
    dns.resolver.default_resolver = resolver
    assert spf.DNSLookup is spf.DNSLookup_dnspython, "pyspf is not using dnspython"
    for line in sys.stdin.read().splitlines():
        ip, sender, helo = line.split("\t")
        result, explanation = spf.check2(i=ip, s=sender, h=helo)
        print("%s\t%s" % (result, explanation.replace("\t", " ").replace("\n", " ")), flush=True)


main()
