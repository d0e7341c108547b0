# scripts/bench.d/count.sh — `scripts/bench --count`: instructions per message per program.
# Sourced by scripts/bench once its postern and Postfix instances are up and warm (it uses
# the bench's variables and helpers: $T, $pn, $pf, the ports, settle, record, as_pn…).
#
# Every process of each system runs under `valgrind --tool=callgrind --trace-children=yes`
# (instruction counts repeat on a busy machine where times do not; this VM has no
# hardware counters for `perf stat -e instructions`):
#   postern  the run scripts of smtpd, send and their two loggers exec valgrind in front of
#            postern-tcpserver, postern-send and postern-multilog, so every smtpd, queue,
#            scan and local process they start is counted too. postern-softlimit is left
#            out of the smtpd chain: valgrind cannot run under a 64 MB address-space limit.
#   Postfix  its master runs under valgrind (`master -d`, the bench's main.cf and
#            master.cf), so every daemon it starts is counted.
# A process's counts end at its exit or exec; postern-scan execs postern-queue, so it
# dumps its counts first (--dump-before=*CommandExt*exec*). A forked child's few
# instructions before its exec are not counted (on both sides).
# What counts is the load only. Each measurement starts the system fresh, sends NWARM
# messages, then the load, stops the system (every process writes its callgrind file as it
# ends) and sums the files; the same without the load (`base`) is subtracted, which takes
# out the start, warm-up and stop of every daemon. (Zeroing the running daemons through
# vgdb instead does not work here: vgdb hangs on any process that is not root.)
# Loads (smtp-source, 4 KB messages, one client): N messages over one session (-d), and
# N sessions of one message each (postern starts smtpd per connection), for postern
# with QMAILQUEUE=postern-queue, postern with postern-scan in front of it (the shipped
# filter.rules, no scanners: the filter's own cost; 127.0.0.1 is a relay client, so no
# SPF/DKIM/DMARC), and Postfix. 100 messages per run (Postfix 1000, below), every run
# twice (--quick: 30 and 300, once).
# Everything (callgrind files, valgrind logs) lives in $T/count.

count_py="$repo/scripts/bench.d/count.py"
ensure_packages valgrind
for t in valgrind vgdb; do command -v $t >/dev/null || die "$t not found after installing valgrind"; done

if [ $quick = 1 ]; then NCOUNT=30 CROUNDS=1; else NCOUNT=100 CROUNDS=2; fi
# Postfix gets ten times the messages: its daemons restart after max_use (100) clients, and
# how many clients trivial-rewrite and proxymap see depends on timing (a client reconnects
# after ipc_idle), so a run holds one daemon start (~7 M instructions) more or less; over
# 1000 messages that is < 1 %. Under valgrind Postfix takes ~2 s per 100, postern ~20.
NCOUNT_PF=$((NCOUNT * 10))
CNT=$T/count
for side in pn pf; do mkdir -p "$CNT/$side/out" "$CNT/$side/log" "$CNT/$side/runs"; done
mkdir -p "$CNT/tmp"
find "$CNT" -type d -exec chmod 1777 {} +   # the programs write their files as their own users

vg_cmd() { # SIDE (pn | pf): valgrind and its options for that system's processes
  echo "valgrind --tool=callgrind --trace-children=yes --collect-systime=yes --dump-before=*CommandExt*exec*" \
    "--vgdb=no --callgrind-out-file=$CNT/$1/out/cg.%p" \
    "--log-file=$CNT/$1/log/vg.%p"
}
# --- postern under valgrind ----------------------------------------------------------------------
pn_restart() { # SERVICE (under $pn/service): restart it and wait until supervise runs the new one
  local dir=$pn/service/$1 old now i
  old=$(as_pn "$T/bin/postern-svstat" "$dir" | sed -n 's/.*up (pid \([0-9]*\)).*/\1/p')
  as_pn "$T/bin/postern-svc" -t "$dir"
  for i in $(seq 300); do
    now=$(as_pn "$T/bin/postern-svstat" "$dir" | sed -n 's/.*up (pid \([0-9]*\)).*/\1/p')
    [ -n "$now" ] && [ "$now" != "$old" ] && return 0
    sleep 0.1
  done
  die "$dir did not restart"
}
pn_vg=$(vg_cmd pn)
svc=$pn/service
sed -i "s|\"\$bin/postern-softlimit\" -m [0-9]* \\\\$|env TMPDIR=$CNT/tmp $pn_vg \\\\|" "$svc/smtpd/run"
sed -i "s|^exec \(.*\)\"\$POSTERN_HOME/bin/postern-send\"|exec \1env TMPDIR=$CNT/tmp $pn_vg \"\$POSTERN_HOME/bin/postern-send\"|" "$svc/send/run"
for log in smtpd/log send/log; do
  sed -i "s|^exec \(\(.* \)\?\)\([^ ]*/bin/postern-multilog\) |exec \1env TMPDIR=$CNT/tmp $pn_vg \3 |" "$svc/$log/run"
done
for f in smtpd/run send/run smtpd/log/run send/log/run; do
  grep -q 'valgrind --tool=callgrind' "$svc/$f" || die "$svc/$f: could not put valgrind in front of its program"
done
pn_chain() { # queue | scan: the program smtpd hands each message to (from smtpd's next start)
  sed -i "s|^QMAILQUEUE=\$bin/postern-[a-z]*$|QMAILQUEUE=\$bin/postern-$1|" "$svc/smtpd/run"
  grep -q "^QMAILQUEUE=\$bin/postern-$1\$" "$svc/smtpd/run" || die "$svc/smtpd/run: could not set QMAILQUEUE=postern-$1"
}
pn_per_message() { # pids of postern's per-connection, per-message and per-delivery processes
  local p
  [ -n "$CG_PN" ] || return 0
  for p in $(cat "$CG_PN/cgroup.procs"); do
    # the program: the first word that is neither valgrind nor one of its options
    tr '\0' '\n' < /proc/$p/cmdline 2>/dev/null | grep -v -e '^-' -e 'valgrind' | head -1 \
      | grep -qE '/postern-(smtpd|scan|queue|local)$' && echo "$p"
  done
}
pn_cycle() { # the running smtpd, send and loggers end (writing their callgrind files), fresh ones start
  local s i
  for s in smtpd send smtpd/log send/log; do pn_restart "$s"; done
  for i in $(seq 300); do [ -z "$(pn_per_message)" ] && break; sleep 0.1; done  # send's workers
  [ -n "$CG_PN" ] || sleep 3
  wait_port "$PN_SMTP" 60
}

# --- Postfix under valgrind -----------------------------------------------------------------------
# master -d in the foreground under valgrind; `postfix stop` ends it and every daemon it started.
timeout 60 postfix -c "$pf/etc" stop >/dev/null 2>&1 || die "postfix stop failed"
postconf -c "$pf/etc" -e "max_idle = 3600s" \
  "import_environment = MAIL_CONFIG MAIL_DEBUG MAIL_LOGTAG TZ LANG=C POSTLOG_SERVICE POSTLOG_HOSTNAME TMPDIR"
pf_master=$(postconf -h -c "$pf/etc" daemon_directory)/master
pf_running() { [ -s "$pf/queue/pid/master.pid" ] && kill -0 "$(tr -d ' \n' < "$pf/queue/pid/master.pid")" 2>/dev/null; }
pf_stop() {
  local i
  timeout 60 postfix -c "$pf/etc" stop >/dev/null 2>&1 || true
  for i in $(seq 600); do
    if [ -n "$CG_PF" ]; then [ -z "$(cat "$CG_PF/cgroup.procs")" ] && return 0
    else pf_running || { sleep 3; return 0; }; fi
    sleep 0.1
  done
  say "warning: Postfix did not stop within 60 s"
}
pf_stop
pf_start() {
  in_cgroup "$CG_PF" env TMPDIR="$CNT/tmp" $(vg_cmd pf) "$pf_master" -c "$pf/etc" -d >>"$CNT/master.log" 2>&1 &
  extra_pids+=("$!")
  wait_port "$PF_SMTP" 120
}
# Callgrind makes its output file when a process starts; Postfix's daemons start as root and
# then become postfix, so the files must be writable for them when they dump.
( set +e; while :; do find "$CNT/pf/out" -type f ! -perm -0666 -exec chmod 666 {} + 2>/dev/null; sleep 0.3; done ) &
extra_pids+=("$!")

# --- the runs -------------------------------------------------------------------------------------
count_load() { # SYS MESSAGES [SMTP-SOURCE OPTIONS]: one client; returns when all are delivered
  local sys=$1 m=$2 o
  shift 2
  o=$(python3 "$load" rate --maildir "$(maildir_of "$sys")/new" --expect "$m" --cpu "$(cpufile_of "$sys")" \
        --queue-dirs "$(queues_of "$sys")" --timeout $RUN_DEADLINE -- \
        smtp-source "$@" -s 1 -m "$m" -l $SIZE -f "$SENDER" -t "$RCPT@$DOMAIN" "127.0.0.1:$(port_of "$sys")") || true
  python3 "$load" wait --timeout 120 $(queues_of "$sys" | tr , ' ') >/dev/null
  case "$o" in *complete=yes*) ;; *) say "warning: $sys: not all of $m messages were delivered" ;; esac
}
# One measurement: a fresh start of the system under valgrind, NWARM messages (one per
# connection), the load (none for `base`), a full stop; the sum of every process's file.
count_run() { # SYS CHAIN LOAD ROUND
  local sys=$1 chain=$2 loadname=$3 r=$4 side=pn dir t0 secs n=$NCOUNT
  [ "$sys" = postfix ] && side=pf n=$NCOUNT_PF
  if [ "$sys" = postern ]; then pn_chain "$chain"; pn_cycle; else pf_start; fi
  rm -f "$CNT/$side/out/"*    # the previous instances' files (made before this start)
  settle "$sys"
  count_load "$sys" $NWARM
  settle "$sys"
  t0=$EPOCHREALTIME
  case $loadname in
    session) count_load "$sys" $n -d ;;
    conns) count_load "$sys" $n ;;
  esac
  secs=$(python3 -c "print(f'{$EPOCHREALTIME-$t0:.1f}')")
  if [ "$sys" = postern ]; then pn_cycle; else pf_stop; fi
  dir=$CNT/$side/runs/$chain.$loadname.$r
  mkdir "$dir"
  mv "$CNT/$side/out/"* "$dir/" 2>/dev/null || true
  python3 "$count_py" sum "$dir" > "$dir.sum"
  while read -r line; do
    record "sys=$sys test=count chain=$chain load=$loadname round=$r messages=$n seconds=$secs $line"
  done < "$dir.sum"
  say "count: $sys $chain $loadname round $r: $(awk '{ split($2, a, "="); t += a[2] } END { printf "%.0f", t }' "$dir.sum") instructions (load ${secs} s)"
}

NWARM=10
say "count: $NCOUNT messages per run (Postfix $NCOUNT_PF) after $NWARM to warm up, $CROUNDS round(s), under callgrind"
for r in $(seq $CROUNDS); do
  for chain in queue scan; do
    for l in base session conns; do count_run postern $chain $l "$r"; done
  done
  for l in base session conns; do count_run postfix postfix $l "$r"; done
done

python3 "$count_py" report "$T/machine" "$results" | tee "${outfile:-/dev/null}"
