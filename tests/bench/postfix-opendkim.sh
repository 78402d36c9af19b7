#!/usr/bin/env bash
# tests/bench/postfix-opendkim.sh -- the peer for tests/bench/dkim.sh: a
# throwaway stock Postfix relaying bench.test to the sink through Debian's
# OpenDKIM milter, which signs every message with the given RSA key
# (relaxed/relaxed, the same headers kumod signs). Loopback only; the
# instance lives under a temp dir and is stopped on exit (postfix -c DIR
# stop, opendkim by its PID). Needs root.
#
# Usage: tests/bench/postfix-opendkim.sh KEY_PEM N SIZE SESSIONS
# Environment: SHARED_BENCH, PF_PORT=2525, SINK_PORT=30025,
#   MILTER_PORT=30891, KEEP=0.
# Output: "# opendkim check: signed" (one message through a capturing
#   sink first; exit 1 if the milter did not sign it), then
#   relay-throughput.sh's lines, its RESULT line last.
set -u
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
KEY=$1 N=$2 SIZE=$3 SESSIONS=$4
PF_PORT=${PF_PORT:-2525} SINK_PORT=${SINK_PORT:-30025} MILTER_PORT=${MILTER_PORT:-30891}
shared=""
common=$(git -C "$repo" rev-parse --path-format=absolute --git-common-dir 2>/dev/null)
for d in ${SHARED_BENCH:-} "$repo/../shared/bench" ${common:+"$common/../../shared/bench"}; do
  [ -x "$d/relay-throughput.sh" ] && { shared=$(cd "$d" && pwd); break; }
done
[ -n "$shared" ] || { echo "bench: ../shared/bench not found" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "bench: postfix-opendkim needs root" >&2; exit 1; }
export PATH=$PATH:/usr/sbin:/sbin
if ! command -v opendkim >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends opendkim >/dev/null \
    || { echo "bench: cannot install opendkim" >&2; exit 1; }
fi
command -v postfix >/dev/null || { echo "bench: no postfix (scripts/deps.sh)" >&2; exit 1; }

mkdir -p "$repo/var"
# (not under /tmp: opendkim refuses a key or config in a world-writable dir)
D=$(mktemp -d "$repo/var/pfdkim.XXXXXX")
chmod 0755 "$D"  # the postfix user must reach data/
ETC=$D/etc
OPID=""
cleanup() {
  postfix -c "$ETC" stop >/dev/null 2>&1
  if [ -n "$OPID" ]; then kill -TERM "$OPID" 2>/dev/null; wait "$OPID" 2>/dev/null; fi
  [ "${KEEP:-0}" = 1 ] && echo "bench: kept $D" >&2 || rm -rf "$D"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
mkdir -p "$ETC" "$D/spool" "$D/data"
chown postfix "$D/data"
install -m 0600 "$KEY" "$D/key.pem"

# --- the milter -------------------------------------------------------------------
cat >"$D/opendkim.conf" <<EOF
Syslog no
Background no
Mode s
Domain bench.test
Selector s1
KeyFile $D/key.pem
Socket inet:$MILTER_PORT@127.0.0.1
Canonicalization relaxed/relaxed
SignatureAlgorithm rsa-sha256
SignHeaders From,To,Subject,Date,Message-ID
InternalHosts 127.0.0.1
PidFile $D/opendkim.pid
EOF
opendkim -f -x "$D/opendkim.conf" >"$D/opendkim.log" 2>&1 &
OPID=$!
for _ in $(seq 100); do ss -Hltn "sport = :$MILTER_PORT" | grep -q . && break; sleep 0.1; done
ss -Hltn "sport = :$MILTER_PORT" | grep -q . \
  || { echo "bench: opendkim did not start:" >&2; cat "$D/opendkim.log" >&2; exit 1; }

# --- Postfix, stock settings; only routing and the milter set ---------------------
cat >"$ETC/main.cf" <<EOF
compatibility_level = 3.6
queue_directory = $D/spool
data_directory = $D/data
mail_owner = postfix
setgid_group = postdrop
myhostname = bench-relay.invalid
mydestination =
alias_maps =
alias_database =
local_recipient_maps =
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
transport_maps = texthash:$ETC/transport
default_transport = error:bench instance relays bench.test only
relay_transport = error:bench instance relays bench.test only
smtp_dns_support_level = disabled
maillog_file = $D/maillog
maillog_file_prefixes = $D
biff = no
smtpd_milters = inet:127.0.0.1:$MILTER_PORT
non_smtpd_milters =
milter_default_action = tempfail
EOF
printf 'bench.test smtp:[127.0.0.1]:%s\n' "$SINK_PORT" >"$ETC/transport"
cat >"$ETC/master.cf" <<EOF
127.0.0.1:$PF_PORT inet n - n - - smtpd
pickup    unix  n - n 60   1 pickup
cleanup   unix  n - n -    0 cleanup
qmgr      unix  n - n 300  1 qmgr
rewrite   unix  - - n -    - trivial-rewrite
bounce    unix  - - n -    0 bounce
defer     unix  - - n -    0 bounce
trace     unix  - - n -    0 bounce
verify    unix  - - n -    1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n -    - proxymap
proxywrite unix - - n -    1 proxymap
smtp      unix  - - n -    - smtp
relay     unix  - - n -    - smtp
showq     unix  n - n -    - showq
error     unix  - - n -    - error
retry     unix  - - n -    - error
discard   unix  - - n -    - discard
anvil     unix  - - n -    1 anvil
scache    unix  - - n -    1 scache
postlog   unix-dgram n - n - 1 postlogd
EOF
postfix -c "$ETC" check 2>&1 | grep -v 'symlink' || true
script -qec "postfix -c $ETC start" /dev/null >"$D/start.log" 2>&1 \
  || { echo "bench: postfix start failed:" >&2; cat "$D/start.log" >&2; exit 1; }
for _ in $(seq 50); do ss -Hltn "sport = :$PF_PORT" | grep -q . && break; sleep 0.1; done

echo "# postfix $(postconf -c "$ETC" -h mail_version) + $(opendkim -V 2>&1 | head -n 1)"
# One message first, to a capturing sink: the milter must really sign.
/usr/bin/python3 - "$repo/tests/e2e" "$PF_PORT" "$SINK_PORT" <<'PY' || exit 1
import smtplib, sys
sys.path.insert(0, sys.argv[1])
from sinks import SmtpSink
sink = SmtpSink(port=int(sys.argv[3])).start()
try:
    c = smtplib.SMTP("127.0.0.1", int(sys.argv[2]), timeout=30)
    c.sendmail("sender@bench.test", ["bench@bench.test"],
               "From: <sender@bench.test>\r\nTo: <bench@bench.test>\r\n"
               "Subject: check\r\n\r\nhello\r\n")
    c.quit()
    (t,) = sink.wait_transactions(1, timeout=60)
    ok = b"DKIM-Signature:" in t.data and b"d=bench.test" in t.data
    print("# opendkim check: " + ("signed" if ok else "NOT signed"))
    sys.exit(0 if ok else 1)
finally:
    sink.stop()
PY
sleep 3  # let Postfix's cached connection to the check sink expire
"$shared/relay-throughput.sh" "$PF_PORT" "$SINK_PORT" "$N" "$SIZE" "$SESSIONS"
