#!/usr/bin/env bash
# build-runsc.sh VERSION OUT: build gVisor's runsc at VERSION (a pseudo-version
# of gVisor's Go branch, module gvisor.dev/gvisor) from the Go module proxy into
# OUT, unless OUT already is that version.
#
# runsc is built static (CGO_ENABLED=0): the sandbox re-executes itself after
# chrooting into an empty directory, where a dynamically linked binary finds no
# loader. The Go branch holds generated files for one Go release line; gVisor
# reads Go runtime internals, so the toolchain must be the one its go.mod names
# or a later patch of it (GVISOR_GOTOOLCHAIN overrides; the go command fetches
# that toolchain from the module proxy). A scratch module in a temp dir does
# the build: crisp's go.mod never sees gVisor. Concurrent runs for the same OUT
# wait on a lock, and OUT appears atomically.
set -euo pipefail

version=${1:?usage: build-runsc.sh VERSION OUT}
out=${2:?usage: build-runsc.sh VERSION OUT}
go=${GO:-go}

log() { printf 'build-runsc: %s\n' "$*" >&2; }

is_wanted() {
	[[ -x $out ]] && [[ $("$out" --version 2>/dev/null | head -1) == "runsc version $version" ]]
}

if is_wanted; then
	exit 0
fi
mkdir -p "$(dirname "$out")"
exec 9>"$out.lock"
flock 9
if is_wanted; then # another run built it while this one waited
	exit 0
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
# crisp's GOFLAGS (build tags) and any go.work mean nothing to this module.
export GOFLAGS=-mod=mod GOWORK=off CGO_ENABLED=0

log "building runsc $version (cold: about 2 minutes on 2 cores; cached afterwards in $out)"
gvisor_gomod=$("$go" mod download -json "gvisor.dev/gvisor@$version" |
	sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')
[[ -f $gvisor_gomod ]] || { log "no go.mod for gvisor.dev/gvisor@$version"; exit 1; }
gvisor_go=$(awk '$1 == "go" {print $2; exit}' "$gvisor_gomod")
# The local Go builds it when it is of the same release line and not older;
# otherwise the go command fetches the release gVisor names.
local_go=$("$go" env GOVERSION)
local_go=${local_go#go}
if [[ ${local_go%.*} == "${gvisor_go%.*}" ]] && [[ $(printf '%s\n%s\n' "$gvisor_go" "$local_go" | sort -V | head -1) == "$gvisor_go" ]]; then
	export GOTOOLCHAIN=${GVISOR_GOTOOLCHAIN:-local}
else
	export GOTOOLCHAIN=${GVISOR_GOTOOLCHAIN:-go$gvisor_go}
fi
{
	echo "module crisp.invalid/runsc-build"
	echo
	echo "go $gvisor_go"
	echo
	echo "require gvisor.dev/gvisor $version"
} >go.mod
# The module first: asking for the runsc package alone makes the go command
# probe gvisor.dev/gvisor/runsc as a module, which the proxy refuses.
"$go" get "gvisor.dev/gvisor@$version" >/dev/null 2>&1 || "$go" get "gvisor.dev/gvisor@$version"
"$go" build -trimpath -ldflags "-s -w -X gvisor.dev/gvisor/runsc/version.version=$version" -o "$work/runsc" gvisor.dev/gvisor/runsc
install -m 0755 "$work/runsc" "$out.tmp"
mv -f "$out.tmp" "$out"
is_wanted || { log "built $out, but it does not report version $version"; exit 1; }
log "built $out ($("$go" version | awk '{print $3}'))"
