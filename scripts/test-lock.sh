#!/usr/bin/env bash
# test-lock.sh CMD [ARG...] runs CMD holding /run/crtool-test.lock, the lock
# that lets one integration suite at a time use this host's CRIU,
# cgroups and namespaces. When a caller up the process tree already holds
# it (`flock /run/crtool-test.lock make test`, or make test running
# scripts/clean-host.sh), CMD runs straight away: taking the lock a second
# time from a child would wait for the parent forever.
#
# "Holds" means: /proc/locks shows a flock on the lock file owned by this
# process or one of its ancestors. flock(1) owns the lock in its own pid
# and hands the descriptor to the command it runs, so its whole process
# tree counts as holding it.
set -euo pipefail

LOCK=${CRTOOL_TEST_LOCK:-/run/crtool-test.lock}

# held_by_ancestor succeeds when this process or an ancestor holds a flock
# on $LOCK.
held_by_ancestor() {
	[ -e "$LOCK" ] || return 1
	local dev ino owners pid
	dev=$(printf '%02x:%02x' "$(stat -c '%Hd' "$LOCK")" "$(stat -c '%Ld' "$LOCK")")
	ino=$(stat -c '%i' "$LOCK")
	# /proc/locks: "1: FLOCK  ADVISORY  WRITE 1234 00:1a:5678 0 EOF"
	owners=$(awk -v id="$dev:$ino" '$2 == "FLOCK" && $6 == id { print $5 }' /proc/locks)
	[ -n "$owners" ] || return 1
	pid=$$
	while [ "$pid" -gt 1 ]; do
		if grep -qx "$pid" <<<"$owners"; then
			return 0
		fi
		# The parent is the 4th field of /proc/PID/stat, after the
		# parenthesised command name, which may itself hold spaces.
		pid=$(sed -E 's/^.*\) [A-Za-z] ([0-9]+) .*$/\1/' "/proc/$pid/stat" 2>/dev/null) || return 1
	done
	return 1
}

if [ $# -eq 0 ]; then
	echo "usage: $0 CMD [ARG...]" >&2
	exit 2
fi
if held_by_ancestor; then
	exec "$@"
fi
if ! flock -n "$LOCK" true 2>/dev/null; then
	echo "test-lock: waiting for $LOCK (another test suite runs)" >&2
fi
exec flock "$LOCK" "$@"
