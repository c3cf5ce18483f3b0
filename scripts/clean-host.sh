#!/usr/bin/env bash
# clean-host.sh brings this host back to the state of a fresh machine
# before the integration tests run, so that a test which only passes on a
# machine warmed up by earlier runs (a /libpod_parent cgroup Podman left,
# a namespace a killed test left) fails here as it would in CI.
#
# It removes only what matches the names Podman and crtool's tests use,
# and only what nothing uses:
#   - cgroup trees /libpod_parent, /crtool-test, /crtool-zdtm, /crtool-test-<hex>,
#     /crtool-freezer-test-<hex> and /crtool-unit-<pid> in every hierarchy,
#     when no process is in any cgroup of the tree;
#   - network namespaces in /run/netns named like the tests' ones, when no
#     process is in them (their bridges and veths go with them), and host
#     links named like the network tests' ones (crtnt*);
#   - Podman networks crtnet-<hex> that no container uses;
#   - crtool state directories of restored test containers in
#     /var/lib/crtool/containers whose root no process uses;
#   - crtool's own temporary directories in $TMPDIR (/tmp) that hold no
#     mount;
#   - crtool's records (/run/crtool/containers) of restored test containers
#     whose init is gone.
# Entries named like the tests' ones that are younger than
# CRTOOL_CLEAN_MIN_AGE seconds (default 600) or newer than
# CRTOOL_RUN_START (seconds since the epoch; default: now) stay: another
# checkout's unit tests, which do not take the test lock, may be using
# them; CRTOOL_CLEAN_CUTOFF (seconds since the epoch) sets the limit
# directly. Podman's /libpod_parent has no age limit. CRTOOL_CLEAN_ONLY, a
# regular expression, confines a run to the names that also match it (the
# script's own test uses it to touch only what it made).
#
# It takes /run/crtool-test.lock (through scripts/test-lock.sh) unless its
# caller already holds it, so it never cleans under a running suite; -n
# takes no lock.
#
# Usage: scripts/clean-host.sh [-n]   (-n: say what would go, change nothing)
set -euo pipefail

dry=
if [ "${1:-}" = "-n" ]; then
	dry=1 # changes nothing: needs no lock
fi
here=$(cd "$(dirname "$0")" && pwd)
if [ -z "$dry" ] && [ -z "${CRTOOL_CLEAN_LOCKED:-}" ]; then
	CRTOOL_CLEAN_LOCKED=1 exec "$here/test-lock.sh" "$0" "$@"
fi
if [ "$(id -u)" -ne 0 ]; then
	echo "clean-host: needs root (run it as root, or through make test as root)" >&2
	exit 1
fi

now=$(date +%s)
min_age=${CRTOOL_CLEAN_MIN_AGE:-600}
run_start=${CRTOOL_RUN_START:-$now}
cutoff=$((now - min_age))
if [ "$run_start" -lt "$cutoff" ]; then
	cutoff=$run_start
fi
cutoff=${CRTOOL_CLEAN_CUTOFF:-$cutoff}

# The names crtool's tests and Podman give what they leave on the host.
# Keep them in step with test/*.go, internal/network's testPrefix and the
# other packages' tests.
cgroup_tops='^(libpod_parent|crtool-test|crtool-zdtm|crtool-test-[0-9a-f]+|crtool-freezer-test-[0-9a-f]+|crtool-unit-[0-9]+)$'
test_cgroup_tops='^(crtool-test|crtool-zdtm|crtool-test-[0-9a-f]+|crtool-freezer-test-[0-9a-f]+|crtool-unit-[0-9]+)$'
netns_names='^((crt|crh|crp|crtpod|crtpd|crio|bbloop|bb2|zd)-[0-9a-f]{8}|crtnt[0-9a-f]{6}(-.*)?)$'
host_links='^crtnt[0-9a-f]{6}'
podman_networks='^crtnet-[0-9a-f]{8}$'
state_dirs='^(crt|crtpod|crtpd|crio|bbloop|bb2)-[0-9a-f]{8}(-copy)?$'
tmp_dirs='^crtool-(dump|restore|test-bin|notroot|criu-test|lock|direct|image)-'
records='^((crt|crtpod|crtpd|crio|bbloop|bb2|zd|crtseed-[a-z]|rm|ps|cyc)-[0-9a-f]{8}|crtool-demo-[0-9]+)$'

only=${CRTOOL_CLEAN_ONLY:-}

say() { echo "clean-host: $*" >&2; }

# ours says whether name matches the pattern $2 and CRTOOL_CLEAN_ONLY.
ours() {
	[[ $1 =~ $2 ]] && { [ -z "$only" ] || [[ $1 =~ $only ]]; }
}

# act runs its arguments, or with -n only says them.
act() {
	if [ -n "$dry" ]; then
		say "would run: $*"
		return 0
	fi
	"$@"
}

# did reports what act did (with -n, act's line said it already).
did() {
	[ -n "$dry" ] || say "$@"
}

# old says whether path's modification time is before the cutoff.
old() {
	local m
	m=$(stat -c %Y "$1" 2>/dev/null) || return 1
	[ "$m" -lt "$cutoff" ]
}

# tree_pids prints the processes in the cgroup tree dir.
tree_pids() {
	find "$1" -name cgroup.procs -type f -exec cat {} + 2>/dev/null
}

# remove_cgroup_tree removes the empty cgroup tree dir, children first.
remove_cgroup_tree() {
	local dir=$1 pids d
	pids=$(tree_pids "$dir")
	if [ -n "$pids" ]; then
		say "kept cgroup $dir: processes $(tr '\n' ' ' <<<"$pids" | cut -c1-60)are in it"
		return 0
	fi
	if [ -n "$dry" ]; then
		say "would remove cgroup tree $dir"
		return 0
	fi
	# rmdir removes a cgroup only when it has no process and no child:
	# a process that enters meanwhile keeps its cgroup and its parents.
	find "$dir" -depth -type d -print0 | while IFS= read -r -d '' d; do
		rmdir "$d" 2>/dev/null || say "kept cgroup $d: $(rmdir "$d" 2>&1 | sed 's/^rmdir: //')"
	done
	[ -d "$dir" ] || say "removed cgroup tree $dir"
}

clean_cgroups() {
	local mnt top name
	for mnt in $(findmnt -rn -t cgroup,cgroup2 -o TARGET); do
		for top in "$mnt"/*/; do
			top=${top%/}
			name=${top##*/}
			[ -d "$top" ] || continue
			ours "$name" "$cgroup_tops" || continue
			if [[ $name =~ $test_cgroup_tops ]] && ! old "$top"; then
				say "kept cgroup $top: younger than $min_age s or than this run"
				continue
			fi
			remove_cgroup_tree "$top"
		done
	done
}

clean_netns() {
	local ns name
	[ -d /run/netns ] || return 0
	for ns in /run/netns/*; do
		[ -e "$ns" ] || continue
		name=${ns##*/}
		ours "$name" "$netns_names" || continue
		if ! old "$ns"; then
			say "kept network namespace $name: younger than $min_age s or than this run"
			continue
		fi
		if [ -n "$(ip netns pids "$name" 2>/dev/null)" ]; then
			say "kept network namespace $name: processes are in it"
			continue
		fi
		act ip netns del "$name" && did "removed network namespace $name"
	done
}

clean_links() {
	local name id
	# Host links carry no time stamp. A network test names its host links
	# and namespaces after one id (crtnt + 6 hex digits) and removes them
	# when it ends: a link whose test has no namespace left is stale.
	for name in $(ip -o link show 2>/dev/null | awk -F': ' '{ sub(/@.*/, "", $2); print $2 }'); do
		ours "$name" "$host_links" || continue
		id=${name:0:11}
		if compgen -G "/run/netns/$id*" >/dev/null; then
			say "kept host link $name: namespaces of its test still exist"
			continue
		fi
		act ip link del "$name" && did "removed host link $name"
	done
}

clean_podman_networks() {
	local net
	command -v podman >/dev/null || return 0
	for net in $(podman network ls --format '{{.Name}}' 2>/dev/null); do
		ours "$net" "$podman_networks" || continue
		# Without -f, podman refuses to remove a network in use.
		act podman network rm "$net" >/dev/null 2>&1 && did "removed Podman network $net" ||
			say "kept Podman network $net: in use"
	done
}

# root_in_use says whether a process has its root directory at dir.
root_in_use() {
	local p
	for p in /proc/[0-9]*; do
		[ "$(readlink "$p/root" 2>/dev/null)" = "$1" ] && return 0
	done
	return 1
}

clean_state_dirs() {
	local base=/var/lib/crtool/containers dir name merged
	[ -d "$base" ] || return 0
	for dir in "$base"/*/; do
		dir=${dir%/}
		name=${dir##*/}
		[ -d "$dir" ] || continue
		ours "$name" "$state_dirs" || continue
		if ! old "$dir"; then
			say "kept crtool state $dir: younger than $min_age s or than this run"
			continue
		fi
		merged=$dir/merged
		if root_in_use "$merged"; then
			say "kept crtool state $dir: a restored container still runs from it"
			continue
		fi
		if mountpoint -q "$merged"; then
			act umount "$merged" || { say "kept crtool state $dir: cannot unmount $merged"; continue; }
		fi
		if findmnt -rn -o TARGET | grep -q "^$dir/"; then
			say "kept crtool state $dir: mounts below it"
			continue
		fi
		act rm -rf --one-file-system "$dir" && did "removed crtool state $dir"
	done
}

clean_tmp() {
	local tmp=${TMPDIR:-/tmp} dir name
	for dir in "$tmp"/crtool-*; do
		[ -e "$dir" ] || continue
		name=${dir##*/}
		ours "$name" "$tmp_dirs" || continue
		old "$dir" || continue
		if findmnt -rn -o TARGET | grep -q "^$dir\(/\|$\)"; then
			say "kept $dir: mounts below it"
			continue
		fi
		act rm -rf --one-file-system "$dir" && did "removed $dir"
	done
}

# clean_records removes crtool's records of restored test containers whose
# init is gone (records name the init's PID and its start time).
clean_records() {
	local f name pid start
	for f in /run/crtool/containers/*.json; do
		[ -e "$f" ] || continue
		name=${f##*/}
		name=${name%.json}
		ours "$name" "$records" || continue
		old "$f" || continue
		pid=$(sed -n 's/^ *"pid": *\([0-9]*\).*/\1/p' "$f" | head -1)
		start=$(sed -n 's/^ *"startTime": *\([0-9]*\).*/\1/p' "$f" | head -1)
		if [ -n "$pid" ] && [ -r "/proc/$pid/stat" ] &&
			[ "$(sed 's/.*) //' "/proc/$pid/stat" | cut -d' ' -f20)" = "$start" ]; then
			say "kept record $f: its container runs"
			continue
		fi
		act rm -f "$f" && did "removed record $f"
	done
}

clean_cgroups
clean_records
clean_netns
clean_links
clean_podman_networks
clean_state_dirs
clean_tmp
