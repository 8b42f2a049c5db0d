#!/bin/bash
# Build the stand-in Falcosidekick release archive, laid out like the upstream GitHub release
# asset falcosidekick_<version>_linux_amd64.tar.gz, for test hosts that cannot download the real
# one. See standin-falcosidekick/STANDIN.md for what the program inside does and does not do.
#
# Usage: build-standin-falcosidekick.sh OUT_DIR [VERSION]      (VERSION defaults to 2.31.1)
#
# OUT_DIR/falcosidekick_<version>_linux_amd64.tar.gz          members at the archive root, in this
#     order: CHANGELOG.md, LICENSE, README.md (0644, placeholders that say they stand in) and
#     falcosidekick (0755, the stand-in with <version> written into it)
# OUT_DIR/falcosidekick_<version>_linux_amd64.tar.gz.sha256   the archive's sha256, hex only
# OUT_DIR/tampered/falcosidekick_<version>_linux_amd64.tar.gz same name, other content (one more
#     comment line at the end of the binary): what a checksum check must refuse
#
# The layout is GoReleaser's default archive, which upstream uses (its .goreleaser.yml has no
# `archives:` section): name {{ProjectName}}_{{Version}}_{{Os}}_{{Arch}}, tar.gz, the binary at
# the root (no wrap_in_directory) next to the files matching license*/LICENSE*, readme*/README*
# and changelog*/CHANGELOG* (goreleaser internal/pipe/archive/archive.go, Default()); the
# falcosidekick repository root has LICENSE, README.md and CHANGELOG.md.
#
# Deterministic: the same script, stand-in and VERSION give the same bytes, so the sha256 is
# stable across rebuilds and machines with GNU tar and gzip (sorted names, mtime 0, owner 0:0,
# gnu format without pax times, gzip -n). Rebuilding overwrites the outputs with identical files.
set -euo pipefail

die() { echo "build-standin-falcosidekick: error: $*" >&2; exit 1; }

if [ $# -lt 1 ] || [ $# -gt 2 ]; then die "usage: $0 OUT_DIR [VERSION]"; fi
out=$1
version=${2:-2.31.1}
[[ $version =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "VERSION must look like 2.31.1, got: $version"

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
src=$here/standin-falcosidekick/falcosidekick
[ -f "$src" ] || die "stand-in program missing: $src"
tar --version 2>/dev/null | grep -q 'GNU tar' || die "GNU tar is needed (for --sort=name)"
command -v gzip >/dev/null || die "gzip is needed"
command -v sha256sum >/dev/null || die "sha256sum (coreutils) is needed"
grep -q '^VERSION = "[^"]*"' "$src" || die "no VERSION line to write the version into: $src"

name=falcosidekick_${version}_linux_amd64.tar.gz
mkdir -p "$out/tampered"
out=$(cd "$out" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# stage DIR: the archive's members, with fixed modes whatever the umask.
stage() {
    local dir=$1
    mkdir -p "$dir"
    sed "s/^VERSION = \"[^\"]*\"/VERSION = \"$version\"/" "$src" >"$dir/falcosidekick"
    grep -q "^VERSION = \"$version\"" "$dir/falcosidekick" || die "could not write the version"
    printf '%s\n' \
        "This file stands in for the LICENSE of the Falcosidekick $version release archive." \
        "The program next to it is a test stand-in written for falco-deploy, not Falcosidekick," \
        "and is never to be deployed outside falco-deploy's test bed." >"$dir/LICENSE"
    printf '%s\n' \
        "# Stand-in Falcosidekick $version" "" \
        "This archive stands in for the Falcosidekick release archive in falco-deploy's tests." \
        "What the falcosidekick program in it honours of the real contract, and what it leaves" \
        "out, is listed in molecule/shared/standin-falcosidekick/STANDIN.md of falco-deploy." \
        >"$dir/README.md"
    printf '%s\n' \
        "# Changelog (stand-in)" "" \
        "Stands in for the CHANGELOG.md of the Falcosidekick $version release archive." \
        >"$dir/CHANGELOG.md"
    chmod 0644 "$dir/LICENSE" "$dir/README.md" "$dir/CHANGELOG.md"
    chmod 0755 "$dir/falcosidekick"
}

# pack DIR TARGET: write the archive next to TARGET, then move it in place.
pack() {
    local dir=$1 target=$2
    # Members named one by one (already in byte order) so that no "./" entry is added.
    LC_ALL=C tar --format=gnu --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner \
        -C "$dir" -cf - CHANGELOG.md LICENSE README.md falcosidekick \
        | gzip -n -9 >"$target.tmp"
    chmod 0644 "$target.tmp"  # test hosts read it through a mount, whatever the builder's umask
    mv -f "$target.tmp" "$target"
}

stage "$work/real"
pack "$work/real" "$out/$name"
sha256sum "$out/$name" | cut -d' ' -f1 >"$out/$name.sha256.tmp"
chmod 0644 "$out/$name.sha256.tmp"
mv -f "$out/$name.sha256.tmp" "$out/$name.sha256"

stage "$work/tampered"
echo "# tampered: this archive must fail its checksum" >>"$work/tampered/falcosidekick"
pack "$work/tampered" "$out/tampered/$name"
cmp -s "$out/$name" "$out/tampered/$name" && die "the tampered copy is identical to the archive"

echo "build-standin-falcosidekick: $out/$name sha256 $(cat "$out/$name.sha256")"
