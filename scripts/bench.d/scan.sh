# scripts/bench.d/scan.sh — `scripts/bench --scan`: the scanning gateway, side by side.
# Sourced by scripts/bench once its postern and Postfix instances are up and warm (it uses
# the bench's variables and helpers: $T, $pn, $pf, the ports, cgroups, settle, record…).
#
# Every system scans every message with the same clamd (started here from Debian's
# clamav-daemon, its own config, socket and a database of one test signature under $T; no
# freshclam, no network) and applies attachment rules:
#   postern            QMAILQUEUE=postern-scan: control/filter.rules (the shipped policy)
#                      + clamd: — alone, with spamd: (SpamAssassin), with rspamd:
#   Postfix+amavisd    content_filter = smtp-amavis:[127.0.0.1]:PORT, back on a second
#                      smtpd (Debian's amavisd-new with Debian's conf.d and its banned-file
#                      rules, clamd by CONTSCAN) — without and with SpamAssassin
#   Postfix+rspamd     smtpd_milters → rspamd's proxy worker (milter) → its normal worker;
#                      antivirus module on the same clamd; network modules off, maps local
# Load: 10 sessions, one message per connection, 4 KB text and ~100 KB with an attachment
# (scripts/bench.d/scan-load.py). CPU per message = the system's cgroup + the cgroups of
# the daemons that serve it (clamd, amavisd, spamd, rspamd each have their own).
# Everything listens on 127.0.0.1; every daemon, user and file is removed on exit.

scan_load="$repo/scripts/bench.d/scan-load.py"
ATTACH_SIZE=102400

SCAN_PACKAGES=(clamav-daemon amavisd-new spamassassin spamd rspamd)
ensure_packages "${SCAN_PACKAGES[@]}"
for t in clamd amavisd spamd rspamd; do
  command -v $t >/dev/null || die "$t not found after installing ${SCAN_PACKAGES[*]}"
done

# Messages per run, per system class (a run takes 10–30 s on 2 cores) and rounds.
# (rounds: the bench's --rounds, default 3, --quick 2)
if [ $quick = 1 ]; then
  NF_TEXT=300 NF_ATT=200 NA_TEXT=150 NA_ATT=100 NS_TEXT=60 NS_ATT=40 NWARM=10
else
  NF_TEXT=1000 NF_ATT=500 NA_TEXT=300 NA_ATT=180 NS_TEXT=100 NS_ATT=70 NWARM=30
fi

# --- cgroups for the filter daemons, and their removal ----------------------------------------
SCAN_PIDS=()
SCAN_CGS=()
cg_parent=
[ -n "$CG_PN" ] && cg_parent=$(dirname "$CG_PN")
cpu_name=$(basename "$CPUFILE_PN")
scan_cgroup() { # NAME: make a cgroup for a daemon, print its dir (empty without cgroups)
  [ -n "$cg_parent" ] || return 0
  mkdir "$cg_parent/pbench-$$-$1" && echo "$cg_parent/pbench-$$-$1"
}
CG_CLAM=$(scan_cgroup clamd); CG_AV=$(scan_cgroup amavisd); CG_AVSA=$(scan_cgroup amavisd-sa)
CG_SPAMD=$(scan_cgroup spamd); CG_RSPAMD=$(scan_cgroup rspamd)
SCAN_CGS=("$CG_CLAM" "$CG_AV" "$CG_AVSA" "$CG_SPAMD" "$CG_RSPAMD")

scan_cleanup() {
  set +e
  local p i
  for p in "${SCAN_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for i in $(seq 100); do
    local alive=0
    for p in "${SCAN_PIDS[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ $alive = 1 ] || break
    sleep 0.1
  done
  for p in "${SCAN_PIDS[@]}"; do kill -KILL "$p" 2>/dev/null; done
  for cg in "${SCAN_CGS[@]}"; do stop_cgroup "$cg"; done
}
trap 'scan_cleanup; cleanup' EXIT

# CPU accounting: NAME=FILE pairs for scan-load.py. Without cgroups, the whole machine.
cpu_of() { # DAEMON…: the cgroups (postern, postfix, clamd, amavisd, amavisd-sa, spamd, rspamd)
  local d cg
  if [ -z "$cg_parent" ]; then echo "--cpu machine=/proc/stat"; return; fi
  for d in "$@"; do
    case $d in
      postern) cg=$CG_PN ;; postfix) cg=$CG_PF ;; clamd) cg=$CG_CLAM ;; amavisd) cg=$CG_AV ;;
      amavisd-sa) cg=$CG_AVSA ;; spamd) cg=$CG_SPAMD ;; rspamd) cg=$CG_RSPAMD ;;
    esac
    printf -- '--cpu %s=%s ' "$d" "$cg/$cpu_name"
  done
}

# Throwaway users for the daemons that drop privileges (clamd stays root: amavisd's usual
# CONTSCAN has clamd read amavisd's temporary files, and root can).
make_user pbench-amavis "$T/amavis"
make_user pbench-spamd "$T/spamd"
make_user pbench-rspamd "$T/rspamd"

# --- clamd: one test signature --------------------------------------------------------------
say "starting clamd (one test signature)"
clam=$T/clamd
mkdir -p "$clam/db" "$clam/tmp"
eicar='X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*'
printf 'Postern-Bench-EICAR:0:*:%s\n' "$(printf '%s' "$eicar" | od -An -tx1 -v | tr -d ' \n')" \
  > "$clam/db/postern-bench.ndb"
CLAMD_SOCK=$clam/clamd.sock
cat > "$clam/clamd.conf" <<EOF
LocalSocket $CLAMD_SOCK
LocalSocketMode 666
DatabaseDirectory $clam/db
TemporaryDirectory $clam/tmp
Foreground yes
LogFile $clam/clamd.log
ScanMail yes
EOF
in_cgroup "$CG_CLAM" clamd -c "$clam/clamd.conf" >"$clam/stderr" 2>&1 &
SCAN_PIDS+=("$!")
for i in $(seq 300); do [ -S "$CLAMD_SOCK" ] && break; sleep 0.1; done
[ -S "$CLAMD_SOCK" ] || { cat "$clam/stderr" "$clam/clamd.log" >&2; die "clamd did not start"; }

# --- SpamAssassin's site configuration (spamd and amavisd alike) ----------------------------
# Debian's plugin loaders; no Bayes, no DNS (spamd -L, amavisd $sa_local_tests_only): the
# network is not there, and both sides run the same local rules.
sa_site=$T/sa-site
mkdir -p "$sa_site"
cp /etc/spamassassin/*.pre "$sa_site/"
printf 'required_score 5.0\nuse_bayes 0\nbayes_auto_learn 0\ndns_available no\nskip_rbl_checks 1\n' \
  > "$sa_site/local.cf"
chmod -R a+rX "$sa_site"

# --- spamd (for postern's spamd: engine) ----------------------------------------------------
say "starting spamd, rspamd and amavisd (SpamAssassin compiles its rules: up to a minute)"
SD_PORT=$(free_port)
mkdir -p "$T/spamd/home"; chown -R pbench-spamd: "$T/spamd"
# Debian's /etc/default/spamd: --max-children 5.
in_cgroup "$CG_SPAMD" spamd --listen="127.0.0.1:$SD_PORT" --allowed-ips=127.0.0.1 -x -L \
  --max-children 5 --siteconfigpath="$sa_site" -s stderr -u pbench-spamd \
  --helper-home-dir="$T/spamd/home" --pidfile="$T/spamd/spamd.pid" >"$T/spamd/spamd.log" 2>&1 &
SCAN_PIDS+=("$!")

# --- rspamd: normal worker (postern's rspamd: engine) and proxy worker (Postfix's milter) ----
RS_NORMAL=$(free_port); RS_MILTER=$(free_port)
rs=$T/rspamd
mkdir -p "$rs/local.d" "$rs/override.d" "$rs/db" "$rs/run" "$rs/log"
printf 'bind_socket = "127.0.0.1:%s";\n' "$RS_NORMAL" > "$rs/local.d/worker-normal.inc"
# Debian's proxy settings (milter, upstream = the normal worker), on our ports.
cat > "$rs/override.d/worker-proxy.inc" <<EOF
bind_socket = "127.0.0.1:$RS_MILTER";
milter = yes;
timeout = 120s;
upstream "local" { default = yes; hosts = "127.0.0.1:$RS_NORMAL"; }
count = 1;
max_retries = 5;
discard_on_reject = false;
quarantine_on_reject = false;
spam_header = "X-Spam";
reject_message = "Spam message rejected";
EOF
for w in controller fuzzy; do echo 'enabled = false;' > "$rs/override.d/worker-$w.inc"; done
printf 'type = "file";\nfilename = "%s";\nlevel = "notice";\n' "$rs/log/rspamd.log" > "$rs/override.d/logging.inc"
printf 'dns { timeout = 1s; retransmits = 1; }\n' > "$rs/local.d/options.inc"
# The modules that ask the network (DNS lists, SPF, DKIM, DMARC, ARC, fuzzy hashes, ASN,
# HELO checks, remote maps and updates) off; what needs Redis is off without it anyway.
for m in rbl hfilter spf dkim dmarc arc fuzzy_check asn neural reputation url_redirector \
         dkim_signing whitelist multimap rspamd_update; do
  echo 'enabled = false;' > "$rs/local.d/$m.conf"
done
# Maps that Debian fetches from rspamd's site: the fallback files it ships instead.
printf 'file = ["${CONFDIR}/maps.d/mime_types.inc"];\n' > "$rs/override.d/mime_types.conf"
printf 'source { url = ["${CONFDIR}/maps.d/mid.inc"]; }\n' > "$rs/override.d/mid.conf"
printf 'phishtank_enabled = false;\nexceptions = { REDIRECTOR_FALSE = ["${CONFDIR}/maps.d/redirectors.inc"]; }\n' \
  > "$rs/override.d/phishing.conf"
# The antivirus module on our clamd, rspamd's defaults otherwise (it sends the attachments,
# not text-only mail, to clamd: scan_mime_parts = true).
cat > "$rs/local.d/antivirus.conf" <<EOF
clamav {
  type = "clamav";
  servers = "$CLAMD_SOCK";
  symbol = "CLAM_VIRUS";
  action = "reject";
}
EOF
chown -R pbench-rspamd: "$rs/db" "$rs/run" "$rs/log"
# As Debian runs it (systemd starts it as _rspamd): as its own user, in the foreground.
in_cgroup "$CG_RSPAMD" setpriv --reuid pbench-rspamd --regid pbench-rspamd --clear-groups -- \
  rspamd -c /etc/rspamd/rspamd.conf -f \
  --var "LOCAL_CONFDIR=$rs" --var "DBDIR=$rs/db" --var "RUNDIR=$rs/run" --var "LOGDIR=$rs/log" \
  -p "$rs/run/rspamd.pid" >"$rs/log/stderr" 2>&1 &
SCAN_PIDS+=("$!")

# --- amavisd-new: two instances, without and with SpamAssassin --------------------------------
# Debian's configuration files in the order Debian reads them, then ours on top.
AV_PORT=$(free_port); AVSA_PORT=$(free_port); PF_BACK=$(free_port)
debian_confs=$(printf '%s\n' /usr/share/amavis/conf.d/* /etc/amavis/conf.d/* \
  | awk -F/ '{ print $NF "\t" $0 }' | sort | cut -f2)
start_amavisd() { # DIR PORT SPAM(0|1) CGROUP: DIR is its home, DIR.conf its config
  local dir=$1 port=$2 spam=$3 cg=$4 args=() f conf=$1.conf
  mkdir -p "$dir/tmp" "$dir/db" "$dir/virusmails" "$dir/home"
  chown -R pbench-amavis: "$dir"
  # (amavisd refuses a config file in a directory its user can write to)
  cat > "$conf" <<EOF
use strict;
# scripts/bench --scan: on top of Debian's conf.d.
\$MYHOME = '$dir';
\$TEMPBASE = '$dir/tmp';
\$ENV{TMPDIR} = \$TEMPBASE;
\$db_home = '$dir/db';
\$QUARANTINEDIR = '$dir/virusmails';
\$helpers_home = '$dir/home';
\$pid_file = '$dir/amavisd.pid';
\$lock_file = '$dir/amavisd.lock';
\$unix_socketname = '$dir/amavisd.sock';  # 25-amavis_helpers' socket, moved here
\$daemon_user = 'pbench-amavis';
\$daemon_group = 'pbench-amavis';
\$myhostname = 'mx.$DOMAIN';
\$mydomain = '$DOMAIN';
@local_domains_acl = ('.$DOMAIN');
@mynetworks = qw(127.0.0.0/8);
\$inet_socket_bind = '127.0.0.1';
\$inet_socket_port = $port;
\$forward_method = 'smtp:[127.0.0.1]:$PF_BACK';
\$notify_method = \$forward_method;
\$max_servers = 2;            # amavisd's and Debian's default
\$DO_SYSLOG = 0;
\$LOGFILE = '$dir/amavis.log';
\$log_level = 0;
\$virus_admin = undef;        # no notification mail for the test virus
@av_scanners = (['ClamAV-clamd', \\&ask_daemon, ["CONTSCAN {}\\n", '$CLAMD_SOCK'],
  qr/\\bOK\$/m, qr/\\bFOUND\$/m, qr/^.*?: (?!Infected Archive)(.*) FOUND\$/m ]);
@av_scanners_backup = ();
# 15-content_filter_mode's lines that turn the checks on:
@bypass_virus_checks_maps = (\\%bypass_virus_checks, \\@bypass_virus_checks_acl, \\\$bypass_virus_checks_re);
EOF
  if [ "$spam" = 1 ]; then
    cat >> "$conf" <<EOF
@bypass_spam_checks_maps = (\\%bypass_spam_checks, \\@bypass_spam_checks_acl, \\\$bypass_spam_checks_re);
\$sa_local_tests_only = 1;
\$sa_siteconfigpath = '$sa_site';
EOF
  else
    echo '@bypass_spam_checks_maps = (1);' >> "$conf"
  fi
  echo '1;' >> "$conf"
  for f in $debian_confs "$conf"; do args+=(-c "$f"); done
  in_cgroup "$cg" amavisd "${args[@]}" foreground >"$dir/stderr" 2>&1 &
  SCAN_PIDS+=("$!")
}
start_amavisd "$T/amavis/av" "$AV_PORT" 0 "$CG_AV"
start_amavisd "$T/amavis/sa" "$AVSA_PORT" 1 "$CG_AVSA"

# Postfix: the usual amavisd-new transport and the smtpd it sends back to (README.postfix),
# both on 127.0.0.1; the filters are switched on per run with postconf + reload.
cat >> "$pf/etc/master.cf" <<EOF
# scripts/bench --scan: amavisd-new's transport and the smtpd it sends back to.
smtp-amavis unix - - n - 2 smtp
  -o smtp_data_done_timeout=1200
  -o smtp_send_xforward_command=yes
  -o max_use=20
127.0.0.1:$PF_BACK inet n - n - - smtpd
  -o content_filter=
  -o smtpd_milters=
  -o local_recipient_maps=
  -o relay_recipient_maps=
  -o smtpd_restriction_classes=
  -o smtpd_delay_reject=no
  -o smtpd_client_restrictions=permit_mynetworks,reject
  -o smtpd_helo_restrictions=
  -o smtpd_sender_restrictions=
  -o smtpd_recipient_restrictions=permit_mynetworks,reject
  -o smtpd_data_restrictions=reject_unauth_pipelining
  -o smtpd_end_of_data_restrictions=
  -o mynetworks=127.0.0.0/8
  -o smtpd_error_sleep_time=0
  -o smtpd_soft_error_limit=1001
  -o smtpd_hard_error_limit=1000
  -o smtpd_client_connection_count_limit=0
  -o smtpd_client_connection_rate_limit=0
  -o smtpd_authorized_xforward_hosts=127.0.0.0/8
  -o receive_override_options=no_header_body_checks,no_unknown_recipient_checks,no_milters
EOF
# rspamd's documented milter settings (milter_default_action = accept: as rspamd's docs).
postconf -c "$pf/etc" -e "milter_protocol = 6" \
  "milter_mail_macros = i {mail_addr} {client_addr} {client_name} {auth_authen}" \
  "milter_default_action = accept" >/dev/null
pf_filter=none
pf_use() { # none | amavisd | amavisd-sa | rspamd
  [ "$pf_filter" != "$1" ] || return 0
  case $1 in
    none) postconf -c "$pf/etc" -e "content_filter =" "smtpd_milters =" ;;
    amavisd) postconf -c "$pf/etc" -e "content_filter = smtp-amavis:[127.0.0.1]:$AV_PORT" "smtpd_milters =" ;;
    amavisd-sa) postconf -c "$pf/etc" -e "content_filter = smtp-amavis:[127.0.0.1]:$AVSA_PORT" "smtpd_milters =" ;;
    rspamd) postconf -c "$pf/etc" -e "content_filter =" "smtpd_milters = inet:127.0.0.1:$RS_MILTER" ;;
  esac
  postfix -c "$pf/etc" reload >/dev/null 2>&1 || die "postfix reload failed"
  pf_filter=$1
  sleep 2  # the old smtpd and qmgr processes go; new ones read the new main.cf
}
pf_use none

# --- postern: postern-scan in the queue path -------------------------------------------------
run=$pn/service/smtpd/run
sed -i 's|^QMAILQUEUE=\$bin/postern-queue$|QMAILQUEUE=$bin/postern-scan|' "$run"
grep -q '^QMAILQUEUE=\$bin/postern-scan$' "$run" || die "$run: could not set QMAILQUEUE=postern-scan"
pn_control() { # FILE CONTENT: write a control file as the instance's user, atomically
  printf '%s' "$2" | as_pn tee "$pn/control/.$1.bench" >/dev/null
  mv "$pn/control/.$1.bench" "$pn/control/$1"
}
pn_control scanners "clamd:$CLAMD_SOCK
"
# The instance lets 127.0.0.1 relay (tcp.smtp: RELAYCLIENT), and relay clients' mail is not
# scored by default: score it as inbound mail, as the gateway scores mail from outside.
pn_control spamoutbound "score
"
# SPF, DKIM and DMARC (on by default, for mail from outside) ask DNS, which is not there;
# rspamd's are off too.
pn_control authchecks "0
"
pn_use() { # clamd | clamd+spamd | clamd+rspamd
  case $1 in
    clamd) pn_control scanners "clamd:$CLAMD_SOCK
" ;;
    clamd+spamd) pn_control scanners "clamd:$CLAMD_SOCK
spamd:127.0.0.1:$SD_PORT
" ;;
    clamd+rspamd) pn_control scanners "clamd:$CLAMD_SOCK
rspamd:127.0.0.1:$RS_NORMAL
" ;;
  esac
}
old=$(as_pn "$T/bin/postern-svstat" "$pn/service/smtpd")
as_pn "$T/bin/postern-svc" -t "$pn/service/smtpd"
for i in $(seq 100); do
  now=$(as_pn "$T/bin/postern-svstat" "$pn/service/smtpd")
  [ "${now%%seconds*}" != "${old%%seconds*}" ] && case "$now" in *": up (pid"*) break ;; esac
  sleep 0.1
done
wait_port "$PN_SMTP" 30

# --- wait for the daemons ---------------------------------------------------------------------
wait_port "$SD_PORT" 180
wait_port "$RS_NORMAL" 120
wait_port "$RS_MILTER" 60
wait_port "$AV_PORT" 240
wait_port "$AVSA_PORT" 240
say "clamd, spamd, rspamd and both amavisd are up"

# --- the systems ------------------------------------------------------------------------------
# name: how to switch to it, where it listens, its Maildir, queues, and whose CPU counts.
SYSTEMS=(pn-clamd pn-spamd pn-rspamd pf-amavisd pf-amavisd-sa pf-rspamd)
sys_use() {
  case $1 in
    pn-clamd) pn_use clamd ;; pn-spamd) pn_use clamd+spamd ;; pn-rspamd) pn_use clamd+rspamd ;;
    pf-amavisd) pf_use amavisd ;; pf-amavisd-sa) pf_use amavisd-sa ;; pf-rspamd) pf_use rspamd ;;
  esac
}
sys_base() { case $1 in pn-*) echo postern ;; *) echo postfix ;; esac; }
sys_cpu() {
  case $1 in
    pn-clamd) cpu_of postern clamd ;;
    pn-spamd) cpu_of postern clamd spamd ;;
    pn-rspamd) cpu_of postern clamd rspamd ;;
    pf-amavisd) cpu_of postfix clamd amavisd ;;
    pf-amavisd-sa) cpu_of postfix clamd amavisd-sa ;;
    pf-rspamd) cpu_of postfix clamd rspamd ;;
  esac
}
sys_n() { # SYS KIND: messages per run
  local k=$2
  case $1 in
    pn-spamd|pf-amavisd-sa) [ "$k" = text ] && echo $NS_TEXT || echo $NS_ATT ;;
    pf-amavisd) [ "$k" = text ] && echo $NA_TEXT || echo $NA_ATT ;;
    *) [ "$k" = text ] && echo $NF_TEXT || echo $NF_ATT ;;
  esac
}
size_of() { [ "$1" = text ] && echo $SIZE || echo $ATTACH_SIZE; }

scan_run() { # SYS KIND ROUND N [warm]
  local sys=$1 kind=$2 r=$3 n=$4 base o
  base=$(sys_base "$sys")
  sys_use "$sys"
  settle "$base"
  # shellcheck disable=SC2046 # sys_cpu prints several --cpu options
  o=$(python3 "$scan_load" run --port "$(port_of "$base")" --rcpt "$RCPT@$DOMAIN" \
        --maildir "$(maildir_of "$base")/new" --kind "$kind" --size "$(size_of "$kind")" --n "$n" \
        --conns 10 $(sys_cpu "$sys") --queue-dirs "$(queues_of "$base")" --timeout $RUN_DEADLINE) \
    || { say "warning: $sys $kind round $r failed"; o="complete=no"; }
  [ "${5:-}" = warm ] && return 0
  record "sys=$sys test=scan-$kind round=$r $(echo "$o" | tr '\n' ' ')"
  say "$sys $kind round $r: $(echo "$o" | grep -E '^(accept_rate|e2e_rate|cpu_ms_per_msg|p99_ms|complete)=' | tr '\n' ' ')"
}

# --- is every system really scanning? One message with the test virus each. -------------------
say "test virus through each system"
for sys in pn-clamd pf-amavisd pf-rspamd; do
  base=$(sys_base "$sys")
  sys_use "$sys"
  settle "$base"
  o=$(python3 "$scan_load" probe --port "$(port_of "$base")" --rcpt "$RCPT@$DOMAIN")
  code=$(echo "$o" | kv reply)
  verdict=missed
  case $sys in
    pf-amavisd) # amavisd answers after the 250: its log must name the signature, and nothing arrives
      for i in $(seq 100); do grep -q 'Blocked INFECTED' "$T/amavis/av/amavis.log" 2>/dev/null && break; sleep 0.1; done
      grep -q 'Blocked INFECTED (Postern-Bench-EICAR' "$T/amavis/av/amavis.log" && verdict=caught ;;
    *) case "$code" in 5*) verdict=caught ;; esac ;;
  esac
  sleep 1
  ! grep -rqs 'EICAR-STANDARD-ANTIVIRUS' "$(maildir_of "$base")/new" || verdict="$verdict,delivered"
  record "sys=$sys test=scan-eicar reply=$code verdict=$verdict text=$(echo "$o" | kv text | tr ' =' '_:' | cut -c1-120)"
  say "$sys: test virus: reply $code, $verdict"
  [ "$verdict" = caught ] || say "warning: $sys did not refuse the test virus"
done

say "warming up every system"
for sys in "${SYSTEMS[@]}"; do
  for kind in text attach; do scan_run "$sys" "$kind" 0 $NWARM warm; done
done

# --- the runs: rounds alternate the systems ---------------------------------------------------
{
  echo "clamav=$(clamd --version 2>/dev/null)"
  echo "amavisd=$(dpkg-query -W -f='${Version}' amavisd-new 2>/dev/null)"
  echo "spamassassin=$(dpkg-query -W -f='${Version}' spamassassin 2>/dev/null)"
  echo "rspamd=$(dpkg-query -W -f='${Version}' rspamd 2>/dev/null)"
  [ -z "$CG_RSPAMD" ] || echo "rspamd_normal_workers=$(for p in $(cat "$CG_RSPAMD/cgroup.procs"); do
    tr '\0' ' ' < "/proc/$p/cmdline" 2>/dev/null; echo; done | grep -c 'normal')"
} >> "$T/machine"
for r in $(seq "$rounds"); do
  say "round $r of $rounds"
  for kind in text attach; do
    for sys in "${SYSTEMS[@]}"; do scan_run "$sys" "$kind" "$r" "$(sys_n "$sys" "$kind")"; done
  done
done

# Did the spam engines score? amavisd logs `Hits: -` for mail it did not give to
# SpamAssassin; spamd logs a `result:` line per message it checked.
{
  echo "amavisd_sa_scored=$(grep -c 'Passed CLEAN.*Hits: -\?[0-9]' "$T/amavis/sa/amavis.log" 2>/dev/null) of $(grep -c 'Passed CLEAN' "$T/amavis/sa/amavis.log" 2>/dev/null) passed"
  echo "amavisd_nosa_scored=$(grep -c 'Passed CLEAN.*Hits: -\?[0-9]' "$T/amavis/av/amavis.log" 2>/dev/null) of $(grep -c 'Passed CLEAN' "$T/amavis/av/amavis.log" 2>/dev/null) passed"
  echo "spamd_results=$(grep -c 'result: ' "$T/spamd/spamd.log" 2>/dev/null)"
  # postern-scan's own account: one event=spam line per score engine that answered.
  for e in spamd rspamd; do
    echo "postern_scored_$e=$(cat "$pn"/log/smtpd/* 2>/dev/null | grep -ac "event=spam .*engine=$e:")"
  done
  echo "postern_spam_skipped=$(cat "$pn"/log/smtpd/* 2>/dev/null | grep -ac 'event=spam .*action=skipped')"
} >> "$T/machine"
python3 "$repo/scripts/bench.d/scan-report.py" "$T/machine" "$results" \
  "rounds=$rounds quick=$quick sessions=10 text=$SIZE attach=$ATTACH_SIZE" | tee "${outfile:-/dev/null}"
