#!/usr/bin/env bash
# Build the Dapr runtime binaries (daprd, placement) that the Dapr integration
# tests run, from the version pinned in tools/dapr/go.mod.
#
# The binaries are cached outside the repo, in
#   ${SEKIBAN_CACHE:-$HOME/.cache/sekiban}/dapr/<version>/{daprd,placement}
# and rebuilt only when missing or when tools/dapr/go.mod, tools/dapr/go.sum or
# this script's build settings change. A cold build takes several minutes.
#
# Progress goes to stderr; the last line on stdout is the bin directory, e.g.
#   DAPR_BIN=$(scripts/build-dapr.sh | tail -n1)
set -euo pipefail

log() { printf 'build-dapr: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
mod_dir=$repo_root/tools/dapr
[[ -f $mod_dir/go.mod && -f $mod_dir/go.sum ]] || die "missing $mod_dir/go.mod or go.sum"
command -v go >/dev/null || die "go is not on PATH (a Go toolchain is needed to build Dapr)"

# The require line in go.mod is the only place the version is written.
version=$(sed -nE 's/^(require)?[[:space:]]*github\.com\/dapr\/dapr (v[^[:space:]]+).*/\2/p' \
    "$mod_dir/go.mod" | head -n1)
[[ -n $version ]] || die "no github.com/dapr/dapr requirement found in $mod_dir/go.mod"

# stablecomponents registers the stable components (state.in-memory,
# state.postgresql, state.redis, ...); without it or allcomponents daprd
# panics at start. CGO is off so the binaries are static, as Dapr's releases.
tags=stablecomponents
ldflags="-s -w -X github.com/dapr/dapr/pkg/buildinfo.version=${version#v}"
ldflags+=" -X github.com/dapr/kit/logger.DaprVersion=${version#v}"
build_flags=(-trimpath -mod=readonly -tags "$tags" -ldflags "$ldflags")

bin_dir=${SEKIBAN_CACHE:-$HOME/.cache/sekiban}/dapr/$version
stamp_file=$bin_dir/.build-stamp
stamp=$(
    {
        cat "$mod_dir/go.mod" "$mod_dir/go.sum"
        printf '%s\n' "${build_flags[@]}" "$(go env GOOS GOARCH)"
    } | sha256sum | cut -d' ' -f1
)

is_current() {
    [[ -x $bin_dir/daprd && -x $bin_dir/placement && -f $stamp_file ]] &&
        [[ $(<"$stamp_file") == "$stamp" ]]
}

mkdir -p "$bin_dir"
# Serialise concurrent runs (e.g. parallel make jobs) on the same version.
if command -v flock >/dev/null; then
    exec 9>"$bin_dir/.lock"
    flock 9
fi

if is_current; then
    log "dapr $version is up to date"
else
    log "building daprd and placement $version (tags: $tags); this takes several minutes"
    tmp_dir=$(mktemp -d "$bin_dir/.build.XXXXXX")
    trap 'rm -rf "$tmp_dir"' EXIT
    start=$SECONDS
    (
        cd "$mod_dir"
        CGO_ENABLED=0 go build "${build_flags[@]}" -o "$tmp_dir/" \
            github.com/dapr/dapr/cmd/daprd github.com/dapr/dapr/cmd/placement
    ) >&2 || die "go build failed"
    # Renames within one directory are atomic: an interrupted build never
    # leaves a partial binary behind, and the stamp is written last.
    rm -f "$stamp_file"
    mv -f "$tmp_dir/daprd" "$tmp_dir/placement" "$bin_dir/"
    printf '%s\n' "$stamp" >"$stamp_file"
    log "built in $((SECONDS - start))s ($(cd "$bin_dir" && du -h daprd placement | awk '{printf "%s%s %s", (NR > 1 ? ", " : ""), $2, $1}'))"
fi

printf '%s\n' "$bin_dir"
