# Sign a message with dkimpy (Debian's python3-dkim), for postern's DKIM verification
# tests. Usage: dkim_sign.py MESSAGE_FILE DOMAIN SELECTOR KEY_FILE rsa|ed25519
# KEY_FILE: an RSA private key in PEM (PKCS#1), or an Ed25519 seed in base64.
# Writes the signed message (the DKIM-Signature header first) to stdout.
import sys
import dkim

def main():
    msg = open(sys.argv[1], "rb").read()
    domain, selector, key, kind = sys.argv[2].encode(), sys.argv[3].encode(), open(sys.argv[4], "rb").read(), sys.argv[5]
    algo = b"ed25519-sha256" if kind == "ed25519" else b"rsa-sha256"
    sig = dkim.sign(msg, selector, domain, key.strip() if kind == "ed25519" else key,
                    include_headers=[b"from", b"to", b"subject", b"date"],
                    canonicalize=(b"relaxed", b"relaxed"), signature_algorithm=algo)
    sys.stdout.buffer.write(sig + msg)

main()
