#!/usr/bin/env bash
# Provides an OpenSSL 3.5 command line (Debian 13 "trixie" build) on a Debian 12
# host without installing anything system-wide, for interop tests of the
# RFC 8723 "double" DTLS-SRTP profiles, which bookworm's OpenSSL 3.0 lacks.
#
# It fetches trixie's openssl, libssl3t64, libzstd1, zlib1g and libc6 through
# apt with a private configuration and state (the system's sources, lists,
# caches and hooks are never read or written), unpacks them with dpkg-deb -x and
# writes a wrapper that runs the binary through trixie's own dynamic loader:
# trixie's libcrypto needs __isoc23_strtol@GLIBC_2.38, bookworm has glibc 2.36.
#
# Prints the wrapper's path ($MDFAST_OPENSSL35_DIR/openssl; by default under
# /var/cache/mdfast as root, ~/.cache/mdfast otherwise) on stdout; exits
# non-zero with a one-line reason on failure. Idempotent.
set -euo pipefail

if [ "$(id -u)" -eq 0 ]; then def=/var/cache/mdfast/openssl35; else def=${XDG_CACHE_HOME:-$HOME/.cache}/mdfast/openssl35; fi
DIR=${MDFAST_OPENSSL35_DIR:-$def}
WRAP=$DIR/openssl
SUITE=${MDFAST_OPENSSL35_SUITE:-trixie}
MIRROR=${MDFAST_OPENSSL35_MIRROR:-http://deb.debian.org/debian}
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
PKGS=(openssl libssl3t64 libzstd1 zlib1g libc6)

die() { echo "openssl35: $*" >&2; exit 1; }
works() { "$WRAP" version 2>/dev/null | grep -Eq '^OpenSSL 3\.([5-9]|[1-9][0-9])\.'; }

if [ -x "$WRAP" ] && works; then echo "$WRAP"; exit 0; fi

command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null || die "needs apt-get and dpkg-deb (Debian)"
[ "$(dpkg --print-architecture)" = amd64 ] || die "only amd64 is supported"
[ -r "$KEYRING" ] || die "missing $KEYRING (apt-get install debian-archive-keyring)"
mkdir -p "$DIR" || die "cannot create $DIR"

# Private apt: APT_CONFIG is read before the parts dir, so pointing Dir::Etc at
# our own (empty) directory also skips /etc/apt/apt.conf.d and its hooks.
APT=$DIR/apt
rm -rf "$APT" "$DIR/root.new"
mkdir -p "$APT"/etc/{apt.conf.d,sources.list.d,preferences.d,trusted.gpg.d} \
	"$APT"/state/lists/partial "$APT"/cache/archives/partial "$APT"/debs
: >"$APT/state/status"
echo "deb [signed-by=$KEYRING] $MIRROR $SUITE main" >"$APT/etc/sources.list"
proxy=$(apt-config dump Acquire::http::Proxy 2>/dev/null | sed -n 's/^Acquire::http::Proxy "\(.*\)";$/\1/p')
cat >"$APT/apt.conf" <<EOF
Dir::Etc "$APT/etc/";
Dir::State "$APT/state/";
Dir::State::status "$APT/state/status";
Dir::Cache "$APT/cache/";
APT::Architecture "amd64";
APT::Architectures { "amd64"; };
APT::Sandbox::User "root";
Acquire::Languages "none";
${proxy:+Acquire::http::Proxy "$proxy";}
EOF
export APT_CONFIG=$APT/apt.conf

log=$APT/log
apt-get -q update >"$log" 2>&1 && compgen -G "$APT/state/lists/*_Packages*" >/dev/null ||
	die "apt-get update of $SUITE failed: $(grep -E '^(E|W):' "$log" | head -1)"
(cd "$APT/debs" && apt-get -q download "${PKGS[@]}") >>"$log" 2>&1 ||
	die "apt-get download failed: $(grep -E '^E:' "$log" | head -1)"

ROOT=$DIR/root
mkdir -p "$ROOT.new"
for deb in "$APT"/debs/*.deb; do dpkg-deb -x "$deb" "$ROOT.new" || die "dpkg-deb -x $deb failed"; done
rm -rf "$ROOT" && mv "$ROOT.new" "$ROOT"

LIB=$ROOT/usr/lib/x86_64-linux-gnu
[ -x "$LIB/ld-linux-x86-64.so.2" ] && [ -x "$ROOT/usr/bin/openssl" ] || die "unpacked tree lacks ld.so or openssl"
# OPENSSL_CONF/MODULES/ENGINES keep it off bookworm's 3.0 config and plugins.
cat >"$WRAP.new" <<EOF
#!/bin/sh
# OpenSSL from Debian $SUITE, run by its own loader and libraries (made by scripts/openssl35.sh).
export OPENSSL_CONF="$ROOT/etc/ssl/openssl.cnf" OPENSSL_MODULES="$LIB/ossl-modules" OPENSSL_ENGINES="$LIB/engines-3"
exec "$LIB/ld-linux-x86-64.so.2" --library-path "$LIB" "$ROOT/usr/bin/openssl" "\$@"
EOF
chmod 755 "$WRAP.new" && mv "$WRAP.new" "$WRAP"
works || die "unpacked openssl does not run or is not 3.5+: $("$WRAP" version 2>&1 | head -1)"
rm -rf "$APT"
echo "$WRAP"
