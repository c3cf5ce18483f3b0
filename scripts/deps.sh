#!/usr/bin/env bash
# Installs what crtool and its tests need on a Debian 12 host. Idempotent: a
# second run checks and changes nothing. Never upgrades the system's libc:
# a newer CRIU is unpacked with its own libraries into a private prefix.
#
#   scripts/deps.sh            CRIU >= 4.2, runc, busybox-static, nftables
#   scripts/deps.sh podman     also Podman (runc runtime) and checkpointctl
#   scripts/deps.sh zdtm       also what building CRIU's zdtm tests needs, and
#                              their source (see test/zdtm/README.md)
set -euo pipefail

PREFIX=${CRTOOL_PREFIX:-/opt/crtool}
CRIU_MIN=4.2
SUITE=${CRTOOL_CRIU_SUITE:-testing}   # Debian suite that ships CRIU >= 4.2
MIRROR=${CRTOOL_DEBIAN_MIRROR:-http://deb.debian.org/debian}
# CRIU's upstream source as Debian ships it; test/zdtm builds its tests from
# it. Pinned by hash: the tests must match what they are checked against.
ZDTM_SRC=criu_4.2.1.orig.tar.xz
ZDTM_SRC_SHA256=29ec0ee09e296479fe7048c80980e8ef1d0684d0b0204c2b101dfea19f6725b9

say() { echo "deps: $*" >&2; }
die() { echo "deps: error: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (apt-get and /opt writes): sudo $0"

# apt_install installs the named Debian packages that are not yet installed.
apt_install() {
	local missing=()
	for p in "$@"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	say "installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq || die "apt-get update failed"
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
		die "apt-get install ${missing[*]} failed"
}

# version_ge A B: true when version A >= B (dotted numbers).
version_ge() { [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -1)" = "$2" ]; }

criu_version() { "$1" --version 2>/dev/null | sed -n 's/^Version: *//p'; }

# criu_ok PATH: the binary runs, is new enough and passes its own check.
criu_ok() {
	local v
	[ -x "$1" ] || return 1
	v=$(criu_version "$1") || return 1
	[ -n "$v" ] || { say "$1: cannot tell its version"; return 1; }
	version_ge "$v" "$CRIU_MIN" || { say "$1 is CRIU $v, need >= $CRIU_MIN"; return 1; }
	"$1" check >/dev/null 2>&1 || { say "$1: 'criu check' failed: $("$1" check 2>&1 | tail -1)"; return 1; }
}

# private_apt runs apt-get/apt-cache against $SUITE's package index kept under
# $PREFIX/apt, without touching the system's sources or state.
APTDIR=$PREFIX/apt
private_apt_opts() {
	echo "-o Dir::Etc::sourcelist=$APTDIR/suite.sources -o Dir::Etc::sourceparts=/nonexistent" \
		"-o Dir::State::Lists=$APTDIR/lists -o Dir::Cache=$APTDIR/cache -o Debug::NoLocking=1 -o APT::Sandbox::User=root"
}
private_apt_update() {
	mkdir -p "$APTDIR/lists/partial" "$APTDIR/cache/archives/partial"
	cat >"$APTDIR/suite.sources" <<SRC
Types: deb
URIs: $MIRROR
Suites: $SUITE
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
	# shellcheck disable=SC2046
	apt-get $(private_apt_opts) update -qq || die "cannot read Debian $SUITE's package index"
}

# unpack_private PKG NAME BIN: downloads PKG from $SUITE with every library it
# depends on, unpacks them under $PREFIX/NAME and patches the binary BIN
# (path inside the package) to use those libraries and that dynamic loader.
unpack_private() {
	local pkg=$1 name=$2 bin=$3 dest=$PREFIX/$2 work
	work=$(mktemp -d)
	# shellcheck disable=SC2046
	deps=$(apt-cache $(private_apt_opts) depends --recurse --no-recommends --no-suggests \
		--no-conflicts --no-breaks --no-replaces --no-enhances "$pkg" |
		grep -v '^ ' | grep -v '^<' | sort -u)
	[ -n "$deps" ] || die "Debian $SUITE has no package $pkg"
	(cd "$work" && apt-get $(private_apt_opts) download $deps >/dev/null) ||
		die "download of $pkg and its libraries from Debian $SUITE failed"
	for d in "$work"/*.deb; do dpkg-deb -x "$d" "$work/x"; done
	rm -rf "$dest.new" && mkdir -p "$dest.new/lib" "$dest.new/bin"
	cp -a "$work"/x/usr/lib/x86_64-linux-gnu/*.so* "$dest.new/lib/"
	cp -a "$work"/x/lib/x86_64-linux-gnu/*.so* "$dest.new/lib/" 2>/dev/null || true
	cp "$work/x/$bin" "$dest.new/$name.bin"
	# --force-rpath: with RUNPATH the libraries' own dependencies would be
	# looked up in the system's (older) library directories.
	patchelf --set-interpreter "$dest/lib/ld-linux-x86-64.so.2" \
		--force-rpath --set-rpath "$dest/lib" "$dest.new/$name.bin"
	ln -sf "../$name.bin" "$dest.new/bin/$name"
	rm -rf "$dest.old"
	[ -e "$dest" ] && mv "$dest" "$dest.old"
	mv "$dest.new" "$dest"
	rm -rf "$dest.old" "$work"
}

install_criu() {
	local sys
	sys=$(command -v criu || true)
	if [ -n "$sys" ] && criu_ok "$sys" 2>/dev/null; then
		say "system CRIU $(criu_version "$sys") at $sys is fine"
		return
	fi
	if criu_ok "$PREFIX/criu/bin/criu"; then
		say "CRIU $(criu_version "$PREFIX/criu/bin/criu") at $PREFIX/criu/bin/criu is fine"
		return
	fi
	say "installing CRIU from Debian $SUITE into $PREFIX/criu (system libc untouched)"
	private_apt_update
	unpack_private criu criu usr/sbin/criu
	criu_ok "$PREFIX/criu/bin/criu" ||
		die "$PREFIX/criu/bin/criu does not work; see '$PREFIX/criu/bin/criu check'"
	say "CRIU $(criu_version "$PREFIX/criu/bin/criu") installed at $PREFIX/criu/bin/criu"
}

install_checkpointctl() {
	if "$PREFIX/checkpointctl/bin/checkpointctl" help >/dev/null 2>&1; then
		return
	fi
	say "installing checkpointctl from Debian $SUITE into $PREFIX/checkpointctl"
	private_apt_update
	unpack_private checkpointctl checkpointctl usr/bin/checkpointctl
	"$PREFIX/checkpointctl/bin/checkpointctl" help >/dev/null ||
		die "$PREFIX/checkpointctl/bin/checkpointctl does not run"
}

install_podman() {
	apt_install podman runc conmon netavark aardvark-dns containernetworking-plugins \
		iptables catatonit uidmap
	# Root lacks CAP_SYS_RESOURCE on these hosts: Podman's default rlimits
	# (nofile 1048576) cannot be set, and runc must use our CRIU.
	mkdir -p "$PREFIX/podman"
	cat >"$PREFIX/podman/containers.conf" <<CONF
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[engine]
runtime = "runc"
conmon_env_vars = ["PATH=$PREFIX/criu/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
CONF
}

# install_zdtm_source puts CRIU's source tarball into $PREFIX/zdtm. It comes
# from the archive's pool by path: the package index may have moved on to a
# newer CRIU, and only the upstream tarball is needed, not Debian's patches.
install_zdtm_source() {
	local dest=$PREFIX/zdtm/$ZDTM_SRC tmp
	if [ -f "$dest" ] && echo "$ZDTM_SRC_SHA256  $dest" | sha256sum -c --quiet - 2>/dev/null; then
		return
	fi
	say "downloading $ZDTM_SRC"
	mkdir -p "$PREFIX/zdtm"
	tmp=$(mktemp "$dest.XXXXXX")
	curl -fsSL --retry 3 -o "$tmp" "$MIRROR/pool/main/c/criu/$ZDTM_SRC" ||
		{ rm -f "$tmp"; die "download of $ZDTM_SRC from $MIRROR failed"; }
	echo "$ZDTM_SRC_SHA256  $tmp" | sha256sum -c --quiet - ||
		{ rm -f "$tmp"; die "$ZDTM_SRC does not have the expected SHA-256; set CRTOOL_DEBIAN_MIRROR to another mirror"; }
	chmod 644 "$tmp"
	mv "$tmp" "$dest"
}

apt_install runc busybox-static patchelf nftables iproute2 curl ca-certificates zstd
install_criu
if [ "${1:-}" = podman ]; then
	install_podman
	install_checkpointctl
fi
if [ "${1:-}" = zdtm ]; then
	# zdtm's tests link statically: libaio and libcap ship their .a files
	# in the -dev packages.
	apt_install gcc make libc6-dev pkg-config xz-utils libaio-dev libcap-dev
	install_zdtm_source
fi
say "ok"
