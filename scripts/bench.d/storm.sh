# scripts/bench.d/storm.sh — `scripts/bench --storm`: a legitimate sender's latency during a
# spam storm. Sourced by scripts/bench once its postern and Postfix instances are up and warm
# (it uses the bench's variables and helpers: $T, $pn, $pf, the ports, cgroups, settle…).
#
# A DNS blocklist bl.bench.test, served by dnsmasq, lists every address of 127.0.2.0/23
# (TXT for rblsmtpd, A 127.0.0.2 for postscreen). 200 bots (scripts/bench.d/storm-load.py
# bots) connect from those addresses — a quarter of them talk before the greeting — and
# try EHLO/MAIL/RCPT/DATA of a 4 KB message three times per session, reconnecting at once
# (0.05–0.15 s after a refused connection); meanwhile one legitimate sender from 127.0.9.1
# (not listed) sends 4 KB messages one after another, one connection each, at most 10 a
# second, and each is timed from MAIL FROM to its file in Maildir/new — first for a few
# seconds without a storm, then during it.
#   postern   its smtpd service as shipped: control/rblzones = bl.bench.test (the run script
#             puts postern-rblsmtpd -r bl.bench.test in the chain), control/resolvers = the
#             dnsmasq; the run script's own -c 40 -C 10 (the bench's plain runs raise -C).
#   Postfix   postscreen in front of smtpd as POSTSCREEN_README sets it up (master.cf:
#             postscreen, smtpd pass, dnsblog, tlsproxy), postscreen_dnsbl_sites =
#             bl.bench.test, postscreen_dnsbl_action = enforce (its default, ignore, only
#             logs), mynetworks = 127.0.0.1/32 (the bench's 127.0.0.0/8 would let
#             postscreen_access_list = permit_mynetworks wave every bot through); anvil and
#             everything else at their defaults. Postfix's resolver reads /etc/resolv.conf
#             and port 53, so Postfix, its dnsmasq (127.0.0.1:53) and its load run in a
#             network namespace of their own, whose /etc/netns/NAME/resolv.conf names that
#             dnsmasq (`ip netns exec` mounts it over /etc/resolv.conf for them alone).
# Both systems deliver with QMAILQUEUE=postern-queue / no content_filter, as in the plain
# runs. The machine's /etc/resolv.conf is never touched; the namespace, its resolv.conf,
# the dnsmasqs and everything else are removed on exit.

storm_load="$repo/scripts/bench.d/storm-load.py"
ZONE=bl.bench.test
SPAM_NET=127.0.2.0/23
LEGIT_IP=127.0.9.1
BOTS=200
# Seconds of legitimate mail without a storm, of storm before it is measured, of storm measured.
if [ $quick = 1 ]; then QUIET_S=5 RAMP_S=8 STORM_S=20 STORM_ROUNDS=1
else QUIET_S=10 RAMP_S=8 STORM_S=40 STORM_ROUNDS=3; fi

ensure_packages dnsmasq-base iproute2
for t in dnsmasq ip; do command -v $t >/dev/null || die "$t not found after installing dnsmasq-base iproute2"; done

NS=pbench-$$-storm
NS_MADE=0 NETNS_DIR_MADE=0
storm_cleanup() {
  set +e
  cleanup   # the bench's: our daemons are in its cgroups, the bots in extra_pids
  if [ $NS_MADE = 1 ]; then ip netns del "$NS" 2>/dev/null || say "warning: ip netns del $NS failed"; fi
  rm -rf "/etc/netns/$NS"
  [ $NETNS_DIR_MADE = 1 ] && rmdir /etc/netns 2>/dev/null
  return 0
}
trap storm_cleanup EXIT

in_ns() { ip netns exec "$NS" "$@"; }
listen_drops() { # [ip netns exec NS]: the network namespace's TcpExt ListenDrops so far
  "$@" awk '/^TcpExt:/ { if (!h) { for (i = 2; i <= NF; i++) k[i] = $i; h = 1 }
    else for (i = 2; i <= NF; i++) if (k[i] == "ListenDrops") print $i }' /proc/net/netstat
}
cpu_now() { # CPU-FILE: seconds so far (as load.py reads it)
  python3 -c 'import sys; sys.path.insert(0, sys.argv[1]); import load; print(load.cpu_seconds(sys.argv[2]))' \
    "$repo/scripts/bench.d" "$1"
}
CPUFILE_EX=/proc/stat
[ -n "$CG_EX" ] && CPUFILE_EX=$CG_EX/$(basename "$CPUFILE_PN")

# --- the blocklist: one dnsmasq per network namespace, the same zone ---------------------------
st=$T/storm
mkdir -p "$st"
python3 - "$SPAM_NET" "$ZONE" > "$st/dnsmasq.conf" <<'PY'
import ipaddress, sys
net, zone = sys.argv[1], sys.argv[2]
print(f"# scripts/bench --storm: {net} listed in {zone}, nothing else answered")
print("no-resolv\nno-hosts\nno-poll")
print(f"local=/{zone}/")
for a in ipaddress.ip_network(net).hosts():
    name = ".".join(reversed(str(a).split("."))) + "." + zone
    print(f'txt-record={name},"{a} is listed in {zone}: spam storm"')
    print(f"host-record={name},127.0.0.2")
PY
start_dnsmasq() { # LOG PORT [ip netns exec NS]
  local log=$1 port=$2; shift 2
  in_cgroup "$CG_EX" "$@" dnsmasq --keep-in-foreground --conf-file="$st/dnsmasq.conf" \
    --listen-address=127.0.0.1 --bind-interfaces --port="$port" --pid-file= \
    --user=nobody --group=nogroup --log-facility="$log" >>"$log" 2>&1 &
  extra_pids+=("$!")
}
check_zone() { # IP:PORT [ip netns exec NS]: listed → TXT and A, the legitimate sender → NXDOMAIN
  local srv=$1 o i; shift
  for i in $(seq 50); do
    o=$("$@" python3 "$storm_load" dnsq --server "$srv" --name "1.2.0.127.$ZONE" --type TXT)
    case "$o" in *rcode=NOERROR*answers=1*) break ;; esac
    sleep 0.1
  done
  case "$o" in *rcode=NOERROR*answers=1*) ;; *) die "dnsmasq at $srv does not list 127.0.2.1: $(echo $o)" ;; esac
  o=$("$@" python3 "$storm_load" dnsq --server "$srv" --name "254.3.0.127.$ZONE" --type A)
  case "$o" in *rcode=NOERROR*answers=1*) ;; *) die "dnsmasq at $srv: no A record for 127.0.3.254: $(echo $o)" ;; esac
  o=$("$@" python3 "$storm_load" dnsq --server "$srv" --name "1.9.0.127.$ZONE" --type TXT)
  case "$o" in *rcode=NXDOMAIN*) ;; *) die "dnsmasq at $srv lists $LEGIT_IP: $(echo $o)" ;; esac
}
say "storm: blocklist $ZONE (dnsmasq) listing $SPAM_NET"
DNS_PORT=$(free_port)
start_dnsmasq "$st/dnsmasq-postern.log" "$DNS_PORT"
check_zone "127.0.0.1:$DNS_PORT"

# --- postern: its smtpd service with the blocklist ------------------------------------------------
say "storm: postern with control/rblzones = $ZONE"
echo "$ZONE" > "$pn/control/rblzones"
echo "127.0.0.1:$DNS_PORT" > "$pn/control/resolvers"
chown "$PN_USER:" "$pn/control/rblzones" "$pn/control/resolvers"
# The run script's own per-address limit (the plain runs raised it: all their load is 127.0.0.1).
sed -i 's/ -C 40 / -C 10 /' "$run"
grep -q -- ' -c 40 -C 10 ' "$run" || die "$run: expected the shipped -c 40 -C 10"
as_pn "$T/bin/postern-svc" -d -w down 30 "$pn/service/smtpd" || die "smtpd service did not stop"
as_pn "$T/bin/postern-svc" -u -w up 30 "$pn/service/smtpd" || die "smtpd service did not start"
wait_port "$PN_SMTP" 30
pn_chain=$(tr '\0' ' ' < "/proc/$(as_pn "$T/bin/postern-svstat" "$pn/service/smtpd" | sed -n 's/.*up (pid \([0-9]*\)).*/\1/p')/cmdline")
case "$pn_chain" in *"postern-rblsmtpd -r $ZONE"*) ;; *) die "smtpd chain without the blocklist: $pn_chain" ;; esac

# --- Postfix: postscreen, in its own network namespace ---------------------------------------------
say "storm: Postfix with postscreen, in network namespace $NS"
pf_pid=$(tr -d ' \n' < "$pf/queue/pid/master.pid")
postfix -c "$pf/etc" stop >/dev/null 2>&1 || die "postfix stop failed"
for i in $(seq 100); do kill -0 "$pf_pid" 2>/dev/null || break; sleep 0.1; done
kill -0 "$pf_pid" 2>/dev/null && die "Postfix's master ($pf_pid) did not stop"
postconf -c "$pf/etc" -e "mynetworks = 127.0.0.1/32" "postscreen_dnsbl_sites = $ZONE" \
  "postscreen_dnsbl_action = enforce"
grep -q "^127.0.0.1:$PF_SMTP inet n - n - - smtpd\$" "$pf/etc/master.cf" || die "master.cf: no smtpd line"
sed -i "s|^127.0.0.1:$PF_SMTP inet n - n - - smtpd\$|# postscreen in front of smtpd, as POSTSCREEN_README sets it up\\
127.0.0.1:$PF_SMTP inet n - n - 1 postscreen\\
smtpd     pass  -       -       n       -       -       smtpd\\
dnsblog   unix  -       -       n       -       0       dnsblog\\
tlsproxy  unix  -       -       n       -       0       tlsproxy|" "$pf/etc/master.cf"
postfix -c "$pf/etc" check >"$st/postfix-check.log" 2>&1 || { cat "$st/postfix-check.log" >&2; die "postfix check failed"; }

[ -d /etc/netns ] || { mkdir /etc/netns; NETNS_DIR_MADE=1; }
mkdir "/etc/netns/$NS"
echo "nameserver 127.0.0.1" > "/etc/netns/$NS/resolv.conf"
ip netns add "$NS" || die "ip netns add $NS failed"
NS_MADE=1
in_ns ip link set lo up
start_dnsmasq "$st/dnsmasq-postfix.log" 53 ip netns exec "$NS"
check_zone "127.0.0.1:53" in_ns
in_ns sh -c 'grep -qx "nameserver 127.0.0.1" /etc/resolv.conf' || die "$NS does not see its resolv.conf"
in_cgroup "$CG_PF" ip netns exec "$NS" postfix -c "$pf/etc" start >"$st/postfix-start.log" 2>&1 \
  || { cat "$st/postfix-start.log" >&2; die "postfix start in $NS failed"; }
for i in $(seq 300); do
  in_ns python3 -c "import socket; socket.create_connection(('127.0.0.1', $PF_SMTP), 1)" 2>/dev/null && break
  sleep 0.1
done

# --- both refuse the listed, both take the legitimate sender -----------------------------------------
# (Postfix's first connection from each address waits postscreen_greet_wait, 6 s; the
# legitimate sender's pass is then cached for a day, as for any sender that has been seen.)
check_refusal() { # SYS PORT [ip netns exec NS]
  local sys=$1 port=$2 o; shift 2
  o=$("$@" python3 "$storm_load" probe --port "$port" --src 127.0.2.1 --rcpt "$RCPT@$DOMAIN")
  case "$o" in *mail=250*rcpt=250*|*mail=0*) die "$sys does not refuse a listed address: $(echo $o)" ;; esac
  say "  $sys, listed 127.0.2.1: $(echo $o)"
  o=$("$@" python3 "$storm_load" probe --port "$port" --src "$LEGIT_IP" --rcpt "$RCPT@$DOMAIN")
  case "$o" in *greeting=220*mail=250*rcpt=250*) ;; *) die "$sys refuses the legitimate $LEGIT_IP: $(echo $o)" ;; esac
  say "  $sys, legitimate $LEGIT_IP: $(echo $o)"
}
check_refusal postern "$PN_SMTP"
check_refusal postfix "$PF_SMTP" in_ns

# --- the runs ---------------------------------------------------------------------------------------
storm_run() { # SYS ROUND
  local sys=$1 r=$2 port ns=() cpuf bots_pid c0 c1 d0 d1 ld0 ld1 m0 m1 w0 w1 lo bo spam
  if [ "$sys" = postern ]; then port=$PN_SMTP cpuf=$CPUFILE_PN
  else port=$PF_SMTP cpuf=$CPUFILE_PF ns=(ip netns exec "$NS"); fi
  settle "$sys"
  # The same sender without a storm first: what the storm adds.
  w0=$EPOCHREALTIME; c0=$(cpu_now "$cpuf")
  lo=$("${ns[@]}" python3 "$storm_load" legit --port "$port" --src "$LEGIT_IP" --rcpt "$RCPT@$DOMAIN" \
         --maildir "$(maildir_of "$sys")/new" --seconds $QUIET_S) || { say "warning: $sys legitimate sender failed"; lo="messages=0"; }
  c1=$(cpu_now "$cpuf"); w1=$EPOCHREALTIME
  record "sys=$sys test=quiet round=$r window_s=$(python3 -c "print($w1-$w0)") cpu_s=$(python3 -c "print($c1-$c0)") \
$(echo "$lo" | sed 's/^/l_/' | tr '\n' ' ')"
  "${ns[@]}" python3 "$storm_load" bots --port "$port" --net "$SPAM_NET" --sessions $BOTS \
    --rcpt "$RCPT@$DOMAIN" --seconds $((RAMP_S + STORM_S + 120)) >"$st/bots.out" 2>"$st/bots.err" &
  bots_pid=$!; extra_pids+=("$bots_pid")
  sleep $RAMP_S
  kill -0 $bots_pid 2>/dev/null || { cat "$st/bots.err" >&2; die "the bots died"; }
  m0=$(cpu_now /proc/stat); w0=$EPOCHREALTIME; c0=$(cpu_now "$cpuf"); d0=$(cpu_now "$CPUFILE_EX"); ld0=$(listen_drops "${ns[@]}")
  lo=$("${ns[@]}" python3 "$storm_load" legit --port "$port" --src "$LEGIT_IP" --rcpt "$RCPT@$DOMAIN" \
         --maildir "$(maildir_of "$sys")/new" --seconds $STORM_S) || { say "warning: $sys legitimate sender failed"; lo="messages=0"; }
  c1=$(cpu_now "$cpuf"); d1=$(cpu_now "$CPUFILE_EX"); ld1=$(listen_drops "${ns[@]}"); w1=$EPOCHREALTIME
  m1=$(cpu_now /proc/stat)
  kill -TERM $bots_pid 2>/dev/null
  for i in $(seq 100); do kill -0 $bots_pid 2>/dev/null || break; sleep 0.1; done
  wait $bots_pid 2>/dev/null || true
  bo=$(cat "$st/bots.out")
  [ -n "$bo" ] || { cat "$st/bots.err" >&2; say "warning: $sys: no figures from the bots"; }
  python3 "$load" wait --timeout 60 $(queues_of "$sys" | tr , ' ') >/dev/null
  spam=$(python3 "$storm_load" spam "$(maildir_of "$sys")/new" "$(maildir_of "$sys")/cur" | kv spam)
  record "sys=$sys test=storm round=$r window_s=$(python3 -c "print($w1-$w0)") cpu_s=$(python3 -c "print($c1-$c0)") \
dns_cpu_s=$(python3 -c "print($d1-$d0)") listen_drops=$((ld1 - ld0)) machine_cpu_s=$(python3 -c "print($m1-$m0)") spam_in_maildir=$spam $(echo "$bo" | tr '\n' ' ') \
$(echo "$lo" | sed 's/^/l_/' | tr '\n' ' ')"
  say "$sys storm round $r: $(echo "$lo" | grep -E '^(messages|e2e_p50_ms|e2e_p99_ms|refused_at_connect)=' | tr '\n' ' ')\
bots: $(echo "$bo" | grep -E '^(connects_per_s|open_mean|accepted)=' | tr '\n' ' ')spam in Maildir: $spam"
}

say "storm: $BOTS bots from $SPAM_NET, one legitimate sender from $LEGIT_IP; $STORM_ROUNDS round(s) of ${STORM_S} s per system after ${RAMP_S} s of storm"
for r in $(seq $STORM_ROUNDS); do
  for sys in postern postfix; do storm_run $sys "$r"; done
done

{
  sed 's/^/    /' "$T/machine"
  echo
  python3 "$storm_load" report "$results" \
    "postern $(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown), $STORM_ROUNDS round(s) of ${STORM_S} s, $BOTS bots"
} | tee "${outfile:-/dev/null}"
