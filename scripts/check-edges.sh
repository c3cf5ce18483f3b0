#!/usr/bin/env bash
# check-edges.sh fails when a package depends on what its job says it must
# not (see README, "Layout"). It reads the real import graph with go list, so
# an edge through any intermediate package counts.
set -euo pipefail
cd "$(dirname "$0")/.."
mod=$(go list -m)
fail=0

# deps PKG: every non-standard package PKG imports, directly or not.
deps() { go list -deps -f '{{if not .Standard}}{{.ImportPath}}{{end}}' "./$1"; }

# forbid PKG PATTERN WHY: no dependency of PKG may match the regexp PATTERN.
forbid() {
	local bad
	bad=$(deps "$1" | grep -E "$2" | grep -vx "$mod/$1" || true)
	if [[ -n $bad ]]; then
		echo "edge check: $1 must not depend on $(echo "$bad" | tr '\n' ' ')($3)" >&2
		fail=1
	fi
}

# format is the archive's schema: the standard library and the OCI runtime
# spec only, so that any reader of archives can import it.
bad=$(deps format | grep -vE "^$mod/format$|^github.com/opencontainers/runtime-spec/" || true)
if [[ -n $bad ]]; then
	echo "edge check: format must depend only on the standard library and runtime-spec, not on $(echo "$bad" | tr '\n' ' ')" >&2
	fail=1
fi
# dump and restore are two operations; what they share lives in format or
# internal/.
forbid dump "^$mod/restore$" 'dump and restore do not import each other'
forbid restore "^$mod/dump$" 'dump and restore do not import each other'
# Reading an archive needs neither netlink nor nftables nor CRIU's RPC.
for p in inspect internal/archive internal/criuimg internal/rootfs internal/ociimage; do
	forbid "$p" 'vishvananda/netlink|google/nftables|go-criu/v7/rpc$' 'reading archives touches no host network and runs no CRIU'
done
exit $fail
