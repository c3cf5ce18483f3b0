#!/usr/bin/env bash
# Demo: checkpoint a running busybox httpd container into a Podman-layout
# archive and restore it, showing that its in-memory counter continues.
# Everything it creates (bundle, network namespace, cgroup, runc state) has
# a unique name and is removed on exit.
set -euo pipefail

CRTOOL=$(realpath "${1:-bin/crtool}")
ID=crtool-demo-$$
WORK=$(mktemp -d /tmp/crtool-demo.XXXXXX)
NS=$ID
RUNC_ROOT=$WORK/runc
ADDR=127.0.0.1:8080

say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

cleanup() {
	set +e
	for d in /sys/fs/cgroup/*/"$ID" /sys/fs/cgroup/unified/"$ID"; do
		[ -d "$d" ] || continue
		for p in $(cat "$d/cgroup.procs" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
	done
	[ -f /sys/fs/cgroup/freezer/$ID/freezer.state ] && echo THAWED >/sys/fs/cgroup/freezer/$ID/freezer.state
	runc --root "$RUNC_ROOT" delete -f "$ID" >/dev/null 2>&1
	sleep 0.2
	for d in /sys/fs/cgroup/*/"$ID" /sys/fs/cgroup/unified/"$ID"; do [ -d "$d" ] && rmdir "$d" 2>/dev/null; done
	ip netns del "$NS" 2>/dev/null
	rm -rf "$WORK"
}
trap cleanup EXIT

say "Building a busybox container bundle in $WORK/bundle"
ROOTFS=$WORK/bundle/rootfs
mkdir -p "$ROOTFS"/{bin,www,tmp,proc,sys,dev,etc}
cp /bin/busybox "$ROOTFS/bin/busybox"
for a in sh httpd usleep echo cat; do ln -s busybox "$ROOTFS/bin/$a"; done
echo '<h1>hello from a crtool demo container</h1>' >"$ROOTFS/www/index.html"
(cd "$WORK/bundle" && runc spec)
# The container runs httpd, and its init keeps a counter in shell memory that
# it publishes every 100 ms at /counter.txt.
python3 - "$WORK/bundle/config.json" "$ID" "$NS" <<'PY'
import json, sys
path, cid, ns = sys.argv[1:]
c = json.load(open(path))
c["process"]["terminal"] = False
c["process"]["args"] = ["/bin/sh", "-c",
    "httpd -p 8080 -h /www; i=0; while :; do i=$((i+1)); echo $i > /www/counter.txt; usleep 100000; done"]
c["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}]
c["root"]["readonly"] = False
c["hostname"] = "demo"
c["linux"]["cgroupsPath"] = "/" + cid
for n in c["linux"]["namespaces"]:
    if n["type"] == "network":
        n["path"] = "/run/netns/" + ns
json.dump(c, open(path, "w"), indent=2)
PY

say "Starting it with runc in its own network namespace"
ip netns add "$NS"
ip -n "$NS" link set lo up
run runc --root "$RUNC_ROOT" run -d --bundle "$WORK/bundle" "$ID" </dev/null >"$WORK/container.log" 2>&1
PID=$(runc --root "$RUNC_ROOT" state "$ID" | python3 -c 'import json,sys; print(json.load(sys.stdin)["pid"])')
echo "container init: pid $PID"
sleep 1

say "It serves, and counts"
run ip netns exec "$NS" curl -s "http://$ADDR/"
run ip netns exec "$NS" curl -s "http://$ADDR/counter.txt"
sleep 1
BEFORE=$(ip netns exec "$NS" curl -s "http://$ADDR/counter.txt")
echo "counter before the dump: $BEFORE"

say "Checkpointing it"
run "$CRTOOL" check
run "$CRTOOL" dump --pid "$PID" -f "$WORK/web.tar.gz" --runtime-root "$RUNC_ROOT"
run ls -l "$WORK/web.tar.gz"
run tar -tzf "$WORK/web.tar.gz" --exclude 'checkpoint/*'

say "The container is gone"
# A killed process lingers as a zombie until its parent reaps it.
for _ in $(seq 50); do
	state=$(ps -o stat= -p "$PID" || true)
	case "$state" in "" | Z*) break ;; esac
	sleep 0.1
done
case "$state" in "" | Z*) echo "pid $PID: gone" ;; *) echo "pid $PID is still alive" >&2; exit 1 ;; esac
printf '$ curl http://%s/ -> ' "$ADDR"
ip netns exec "$NS" curl -s -m 2 "http://$ADDR/" || echo "connection refused"

say "Restoring it"
# The container's stdout went to a host file; an archive may name any host
# path, so restore hands one to a container only when the operator says so.
NEWPID=$(set -x; "$CRTOOL" restore -f "$WORK/web.tar.gz" --allow-host-path "$WORK/container.log")
echo "restored init: pid $NEWPID"
sleep 0.5
run ip netns exec "$NS" curl -s "http://$ADDR/"
AFTER=$(ip netns exec "$NS" curl -s "http://$ADDR/counter.txt")
echo "counter after the restore: $AFTER (before the dump: $BEFORE)"
if [ "$AFTER" -lt "$BEFORE" ]; then
	echo "FAIL: the counter started over" >&2
	exit 1
fi
say "OK: the restored container serves and its counter continued from $BEFORE"
