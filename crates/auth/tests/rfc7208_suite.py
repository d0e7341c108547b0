# The RFC 7208 test suite (openspf.org, release 2014.04) that Debian's python3-spf ships
# as /usr/share/doc/python3-spf/rfc7208-tests.yml.gz, turned into DNS records for dnsmasq
# and cases for postern's SPF test. Reads the YAML with PyYAML (python3-yaml).
# Usage: rfc7208_suite.py SUITE.yml.gz
# Prints, per scenario:
#   scenario<TAB>DESCRIPTION
#   rr<TAB>NAME<TAB>TYPE<TAB>HEX       one record (--dns-rr=NAME,TYPE,HEX)
#   timeout<TAB>NAME                   the name's server fails (dnsmasq forwards it to a
#                                      SERVFAIL server)
#   skip<TAB>NAME<TAB>WHY              a record dnsmasq cannot serve
#   zero<TAB>NAME                      an SPF record with a CIDR length of 0 (a/0, mx//0,
#                                      ip4:…/0), which mail-auth 0.7 cannot evaluate
#   test<TAB>ID<TAB>SPEC<TAB>IP<TAB>MAILFROM<TAB>HELO<TAB>RESULT[,RESULT…]
# As the suite's own driver (testspf.py) does, an SPF-type (99) record is also served as
# TXT when its name has no TXT record (RFC 7208 dropped type 99).
import gzip
import ipaddress
import re
import sys
import yaml

# A term of a, mx, ip4 or ip6 with a CIDR length of 0 for IPv4 or IPv6.
ZERO_CIDR = re.compile(r"(^|\s)[-+~?]?(a|mx|ip4|ip6)(:\S*?)?(/0|//0|/\d+//0)(\s|$)", re.I)

TYPES = {"A": 1, "CNAME": 5, "PTR": 12, "MX": 15, "TXT": 16, "AAAA": 28, "SPF": 99}


def wire_name(name):
    out = b""
    for label in name.rstrip(".").split("."):
        if label:
            raw = label.encode("utf-8")
            if len(raw) > 63:
                raise ValueError("label longer than 63 bytes")
            out += bytes([len(raw)]) + raw
    return out + b"\0"


def rdata(kind, value):
    if kind == "A":
        return ipaddress.IPv4Address(value).packed
    if kind == "AAAA":
        return ipaddress.IPv6Address(value).packed
    if kind in ("CNAME", "PTR"):
        return wire_name(value)
    if kind == "MX":
        pref, host = value
        return int(pref).to_bytes(2, "big") + wire_name(host)
    if kind in ("TXT", "SPF"):
        strings = [value] if isinstance(value, str) else value
        out = b""
        for s in strings:
            raw = s.encode("utf-8")
            if len(raw) > 255:
                raise ValueError("string longer than 255 bytes")
            out += bytes([len(raw)]) + raw
        return out
    raise ValueError("record type %s" % kind)


def main():
    for doc in yaml.safe_load_all(gzip.open(sys.argv[1], "rt", encoding="utf-8")):
        if not doc:
            continue
        print("scenario\t%s" % doc["description"])
        for name, records in (doc.get("zonedata") or {}).items():
            records = records or []
            has_txt = any(isinstance(r, dict) and "TXT" in r for r in records)
            for r in records:
                if r == "TIMEOUT":
                    print("timeout\t%s" % name)
                    continue
                for kind, value in r.items():
                    kinds = [kind]
                    if kind == "SPF" and not has_txt:
                        kinds.append("TXT")
                    if value == "TIMEOUT":
                        print("timeout\t%s" % name)
                        continue
                    if value == "NONE" or value == ["NONE"]:
                        continue
                    if kind == "SPF" and ZERO_CIDR.search("".join(value) if isinstance(value, list) else value):
                        print("zero\t%s" % name)
                    for k in kinds:
                        try:
                            print("rr\t%s\t%d\t%s" % (name, TYPES[k], rdata(k, value).hex()))
                        except (ValueError, KeyError) as e:
                            print("skip\t%s\t%s" % (name, e))
        for tid, t in doc["tests"].items():
            result = t["result"]
            results = result if isinstance(result, list) else [result]
            spec = t.get("spec", "")
            spec = ",".join(spec) if isinstance(spec, list) else str(spec)
            print("test\t%s\t%s\t%s\t%s\t%s\t%s" % (
                tid, spec, t["host"], t.get("mailfrom", ""), t.get("helo", ""),
                ",".join(results)))


main()
