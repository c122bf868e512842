#!/usr/bin/env bash
# build-kubelet.sh VERSION OUT: build kubelet VERSION (e.g. v1.37.2) from the
# Go module proxy into OUT, unless OUT already is that version.
#
# `go install k8s.io/kubernetes/cmd/kubelet@VERSION` refuses the module: its
# go.mod points every staging module (k8s.io/api, k8s.io/client-go, ...) at
# ./staging with `replace`. So this writes a scratch module in a temp dir that
# requires k8s.io/kubernetes VERSION and replaces each of those staging modules
# by its published twin, k8s.io/<x> v0.<minor>.<patch>, and builds kubelet
# there. The list comes from k8s.io/kubernetes' own go.mod, so a new version
# needs no edit here. Nothing outside the temp dir, the Go caches and OUT is
# written; crisp's go.mod is never touched.
#
# kubelet is built static (CGO_ENABLED=0), as upstream builds it; CGO_ENABLED
# in the environment overrides. Concurrent runs for the same OUT wait on a
# lock, and OUT appears atomically, so a half-written binary is never used.
set -euo pipefail

version=${1:?usage: build-kubelet.sh VERSION OUT}
out=${2:?usage: build-kubelet.sh VERSION OUT}
go=${GO:-go}

log() { printf 'build-kubelet: %s\n' "$*" >&2; }

is_wanted() {
	[[ -x $out ]] && [[ $("$out" --version 2>/dev/null) == "Kubernetes $version" ]]
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
export GOFLAGS=-mod=mod GOWORK=off
export CGO_ENABLED=${CGO_ENABLED:-0}

log "building kubelet $version (cold: several minutes; cached afterwards in $out)"
kube_gomod=$(GOFLAGS= "$go" mod download -json "k8s.io/kubernetes@$version" |
	sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')
[[ -f $kube_gomod ]] || { log "no go.mod for k8s.io/kubernetes@$version"; exit 1; }

# Staging modules are published as v0.<minor>.<patch> for kubernetes v1.<minor>.<patch>.
staging_version=v0.${version#v1.}
{
	echo "module crisp.invalid/kubelet-build"
	echo
	grep -E '^(go|godebug) ' "$kube_gomod"
	echo
	echo "require k8s.io/kubernetes $version"
	echo
	awk -v v="$staging_version" '$2 == "=>" && $3 ~ /^\.\/staging\// {print "replace " $1 " => " $1 " " v}' "$kube_gomod"
} >go.mod
if ! grep -q '^replace ' go.mod; then
	log "no staging replaces found in $kube_gomod"
	exit 1
fi

minor=${version#v1.}
minor=${minor%%.*}
pkgs=(k8s.io/component-base/version k8s.io/client-go/pkg/version)
ldflags="-s -w"
for p in "${pkgs[@]}"; do
	ldflags+=" -X $p.gitVersion=$version -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
done
"$go" build -trimpath -ldflags "$ldflags" -o "$work/kubelet" k8s.io/kubernetes/cmd/kubelet

tmp=$(mktemp "$out.XXXXXX")
install -m 0755 "$work/kubelet" "$tmp"
mv -f "$tmp" "$out"
is_wanted || { log "built $out but it does not report Kubernetes $version"; exit 1; }
log "kubelet $version ready: $out"
