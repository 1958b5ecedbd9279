#!/usr/bin/env bash
# Installs what building and testing mdfast needs on a fresh Debian 12 host.
# Idempotent: it installs only what is missing, so `make test` can call it
# every time. Go modules come through the module proxy via `go mod download`.
set -euo pipefail

need=()
command -v clang-14 >/dev/null 2>&1 || need+=(clang-14)
command -v llvm-strip-14 >/dev/null 2>&1 || need+=(llvm-14)
command -v ip      >/dev/null 2>&1 || need+=(iproute2)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v make    >/dev/null 2>&1 || need+=(make)
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd) # deploy/*.service checks
command -v valgrind >/dev/null 2>&1 || need+=(valgrind) # make bench-ir (callgrind)
command -v chromium >/dev/null 2>&1 || need+=(chromium) # internal/webrtctest: a real browser joins through keydist's join endpoint
command -v etcd    >/dev/null 2>&1 || need+=(etcd-server) # the opt-in shared directory (issue 14): internal/etcdtest runs real members
command -v nft     >/dev/null 2>&1 || need+=(nftables) # cmd/mdfast TestSessionMobility: SNAT (NAT rebinding) in a namespace
[ -r /usr/share/keyrings/debian-archive-keyring.gpg ] || need+=(debian-archive-keyring) # for scripts/openssl35.sh

if [ ${#need[@]} -gt 0 ]; then
	if [ "$(id -u)" -ne 0 ]; then
		echo "deps: missing ${need[*]}; run as root or install them yourself" >&2
		exit 1
	fi
	echo "deps: installing ${need[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

go mod download

# OpenSSL 3.5 (Debian 13) in a private directory: the independent peer of the
# RFC 8723 double-profile DTLS interop tests (internal/dtls).
./scripts/openssl35.sh >/dev/null
