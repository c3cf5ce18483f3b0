#!/usr/bin/env bash
# Builds the zdtm tests named in selection.txt, and zinit, from CRIU's source
# tarball (scripts/deps.sh zdtm fetches it), statically: each test runs
# alone in a container whose root holds nothing else.
#
#   test/zdtm/build.sh [OUTDIR]
#
# OUTDIR (default /opt/crtool/zdtm/build) gets one directory per test with
# its binary and run.cmd, its command line as zdtm's Makefile starts it, and
# zinit. A build is reused while the tarball, the selection, zinit/zinit.c and this
# script are unchanged; the path of the finished build is printed.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
PREFIX=${CRTOOL_PREFIX:-/opt/crtool}
SRC=$PREFIX/zdtm/criu_4.2.1.orig.tar.xz
OUT=${1:-$PREFIX/zdtm/build}

say() { echo "zdtm-build: $*" >&2; }
die() { echo "zdtm-build: error: $*" >&2; exit 1; }

[ -f "$SRC" ] || die "$SRC is missing: run 'scripts/deps.sh zdtm' (or 'make deps-zdtm')"

# Test names: the first word of each line that is not a comment.
mapfile -t tests < <(sed -e 's/#.*//' "$here/selection.txt" | awk 'NF {print $1}')
[ ${#tests[@]} -gt 0 ] || die "selection.txt names no test"

key=$(cat "$SRC" "$here/selection.txt" "$here/zinit/zinit.c" "$0" | sha256sum | cut -c1-16)
if [ "$(cat "$OUT/.key" 2>/dev/null)" = "$key" ]; then
	echo "$OUT"
	exit 0
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
say "building ${#tests[@]} tests in $work"
tar -xJf "$SRC" -C "$work" --strip-components=1 --wildcards \
	'*/test/zdtm/Makefile.inc' '*/test/zdtm/lib' '*/test/zdtm/static'
zd=$work/test/zdtm
jobs=$(nproc)
# LDFLAGS from the environment: the Makefiles' own per-test additions
# (-pthread) still append to it, which a command-line value would override.
export LDFLAGS=-static
make -s -C "$zd/lib" -j"$jobs" libzdtmtst.a >"$work/build.log" 2>&1 ||
	{ tail -30 "$work/build.log" >&2; die "building zdtm's library failed"; }
make -s -C "$zd/static" -j"$jobs" "${tests[@]}" >>"$work/build.log" 2>&1 ||
	{ tail -30 "$work/build.log" >&2; die "building zdtm tests failed (full log above is the end of $work/build.log)"; }

new=$OUT.new
rm -rf "$new" && mkdir -p "$new"
gcc -static -O2 -Wall -Werror -o "$new/zinit" "$here/zinit/zinit.c"
for t in "${tests[@]}"; do
	mkdir "$new/$t"
	cp "$zd/static/$t" "$new/$t/"
	# zdtm's Makefile knows each test's arguments (--filename, --dirname,
	# test-specific ones): ask it, without running anything.
	make -s -n -C "$zd/static" "$t.pid" | awk -v c="./$t" '$1 == c' >"$new/$t/run.cmd"
	[ -s "$new/$t/run.cmd" ] || die "zdtm's Makefile has no command line for $t"
done
echo "$key" >"$new/.key"
rm -rf "$OUT.old"
[ -e "$OUT" ] && mv "$OUT" "$OUT.old"
mv "$new" "$OUT"
rm -rf "$OUT.old"
say "built ${#tests[@]} tests into $OUT"
echo "$OUT"
