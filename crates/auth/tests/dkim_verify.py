# Verify every DKIM-Signature of a message with dkimpy (Debian's python3-dkim), the
# public keys served by dnsfunc from the command line instead of DNS.
# Usage: dkim_verify.py MESSAGE_FILE [NAME TXT]...  (NAME like s1._domainkey.example.test)
# Prints one line per signature: "d=DOMAIN s=SELECTOR a=ALGO pass|fail", then exits 0
# when there is at least one signature and every one passes, else 1.
import sys
import dkim

def main():
    msg = open(sys.argv[1], "rb").read()
    args = sys.argv[2:]
    records = {args[i].lower().rstrip(".").encode(): args[i + 1].encode()
               for i in range(0, len(args), 2)}

    def dnsfunc(name, timeout=5):
        return records.get(name.lower().rstrip(b"."))

    d = dkim.DKIM(msg)
    sigs = [v for (k, v) in d.headers if k.lower() == b"dkim-signature"]
    ok = bool(sigs)
    for i, sig in enumerate(sigs):
        tags = dkim.util.parse_tag_value(sig)
        good = d.verify(idx=i, dnsfunc=dnsfunc)
        ok = ok and good
        print("d=%s s=%s a=%s %s" % (tags[b"d"].decode(), tags[b"s"].decode(),
                                     tags[b"a"].decode(), "pass" if good else "fail"))
    if not sigs:
        print("no signature")
    sys.exit(0 if ok else 1)

main()
