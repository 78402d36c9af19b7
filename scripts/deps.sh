#!/usr/bin/env bash
# scripts/deps.sh -- install the Debian 12 packages kumod needs to build, run
# and test, if any is missing. Called by `make` before configuring; does
# nothing (and needs no root) when everything is already installed.
set -eu
PKGS="build-essential cmake pkg-config libuv1-dev libssl-dev openssl liblua5.4-dev
lua5.4 libnng-dev libprotobuf-c-dev protobuf-c-compiler librocksdb-dev libraft-dev
libc-ares-dev libjansson-dev libzstd-dev zstd libcurl4-openssl-dev curl libedit-dev
libcmocka-dev libpcre2-dev libtomlplusplus-dev libyaml-dev
libpsl-dev publicsuffix python3 python3-pytest python3-aiosmtpd python3-dnslib python3-dkim swaks
libnet-ssleay-perl libio-socket-ssl-perl postfix opendkim
iproute2 nftables faketime tmux util-linux ansible-core ansible-lint clang libclang-rt-14-dev"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed' \
        || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "deps: installing:$missing"
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
# postfix is installed only for its smtp-source/smtp-sink tools: no system MTA.
# opendkim only for the peer of tests/bench/dkim.sh (run in the foreground
# with its own config; Debian's default service signs nothing).
echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing
