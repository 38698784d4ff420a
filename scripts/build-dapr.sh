#!/usr/bin/env bash
# Build the Dapr runtime binaries (daprd, placement, scheduler) that the Dapr
# integration tests run, from the version pinned in tools/dapr/go.mod.
#
# The binaries are cached outside the repo, in
#   ${SEKIBAN_CACHE:-$HOME/.cache/sekiban}/dapr/<version>/{daprd,placement,scheduler}
# Each is rebuilt only when it is missing or out of date; only those are built.
# A binary is up to date when its stamp (.stamp-<name>: a hash of go.mod, go.sum
# and the build settings) matches, or, when the stamp does not (go.mod gained a
# module for another binary, or a cache from before per-binary stamps), when the
# module versions and build settings recorded in the binary (`go version -m`)
# are still the ones go.mod selects; the stamp is then rewritten. A cold build
# takes several minutes.
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
binaries=(daprd placement scheduler)
stamp=$(
    {
        cat "$mod_dir/go.mod" "$mod_dir/go.sum"
        printf '%s\n' "${build_flags[@]}" "$(go env GOOS GOARCH)"
    } | sha256sum | cut -d' ' -f1
)

# "path version" (and " => path version" when replaced) of every module in a
# binary's build info, or in the build list go.mod selects now.
built_modules() {
    go version -m "$1" | awk '
        $1 == "mod" || $1 == "dep" { if (line != "") print line; line = $2 " " $3 }
        $1 == "=>" { line = line " => " $2 " " $3 }
        END { if (line != "") print line }' | sort -u
}
selected_modules() {
    (cd "$mod_dir" && go list -mod=readonly -m \
        -f '{{.Path}} {{.Version}}{{with .Replace}} => {{.Path}} {{.Version}}{{end}}' all) |
        sort -u
}

# True when the binary was built from the module versions go.mod selects now,
# with this script's tags and target (ldflags are not recorded under -trimpath;
# they only carry the version, which is the cache directory's name).
built_from_current_modules() {
    local info
    info=$(go version -m "$1") || return 1
    grep -qxF $'\tpath\tgithub.com/dapr/dapr/cmd/'"$(basename "$1")" <<<"$info" || return 1
    grep -qxF $'\tbuild\t-tags='"$tags" <<<"$info" || return 1
    grep -qxF $'\tbuild\tCGO_ENABLED=0' <<<"$info" || return 1
    grep -qxF $'\tbuild\tGOOS='"$(go env GOOS)" <<<"$info" || return 1
    grep -qxF $'\tbuild\tGOARCH='"$(go env GOARCH)" <<<"$info" || return 1
    [[ -z $(comm -23 <(built_modules "$1") <(selected_modules)) ]]
}

is_current() {
    local name=$1
    [[ -x $bin_dir/$name ]] || return 1
    [[ -f $bin_dir/.stamp-$name && $(<"$bin_dir/.stamp-$name") == "$stamp" ]] && return 0
    if built_from_current_modules "$bin_dir/$name"; then
        log "$name was built from the modules go.mod selects now; keeping it"
        printf '%s\n' "$stamp" >"$bin_dir/.stamp-$name"
        return 0
    fi
    return 1
}

mkdir -p "$bin_dir"
# Serialise concurrent runs (e.g. parallel make jobs) on the same version.
if command -v flock >/dev/null; then
    exec 9>"$bin_dir/.lock"
    flock 9
fi

missing=()
for name in "${binaries[@]}"; do
    is_current "$name" || missing+=("$name")
done

if ((${#missing[@]} == 0)); then
    log "dapr $version is up to date"
else
    log "building ${missing[*]} $version (tags: $tags); this takes several minutes"
    tmp_dir=$(mktemp -d "$bin_dir/.build.XXXXXX")
    trap 'rm -rf "$tmp_dir"' EXIT
    start=$SECONDS
    (
        cd "$mod_dir"
        CGO_ENABLED=0 go build "${build_flags[@]}" -o "$tmp_dir/" \
            "${missing[@]/#/github.com/dapr/dapr/cmd/}"
    ) >&2 || die "go build failed"
    # Renames within one directory are atomic: an interrupted build never
    # leaves a partial binary behind, and each stamp is written last.
    for name in "${missing[@]}"; do
        rm -f "$bin_dir/.stamp-$name"
        mv -f "$tmp_dir/$name" "$bin_dir/"
        printf '%s\n' "$stamp" >"$bin_dir/.stamp-$name"
    done
    log "built in $((SECONDS - start))s ($(cd "$bin_dir" && du -h "${missing[@]}" | awk '{printf "%s%s %s", (NR > 1 ? ", " : ""), $2, $1}'))"
fi

printf '%s\n' "$bin_dir"
