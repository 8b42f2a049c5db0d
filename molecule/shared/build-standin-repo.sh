#!/bin/bash
# Build the stand-in `falco` Debian packages (0.43.0 and 0.44.0) and a signed apt repository laid
# out like download.falco.org/packages/deb, for test hosts that cannot reach the real one.
#
# Usage: build-standin-repo.sh OUT_DIR
#
# OUT_DIR/repo/                 the repository root; mount it read-only at /mnt/falco-repo and use
#                               deb [signed-by=KEYRING] file:/mnt/falco-repo stable main
#   dists/stable/{Release,InRelease,Release.gpg}
#   dists/stable/main/binary-amd64/Packages(.gz)
#   stable/falco-<version>-x86_64.deb   (download.falco.org's file names)
#   falco-standin.asc           copy of the public key, for roles that fetch a key from the repo
# OUT_DIR/falco-standin.asc     armored public key;  OUT_DIR/falco-standin.gpg  binary keyring
# OUT_DIR/fingerprint           the key's fingerprint (40 hex digits, one line)
# OUT_DIR/gnupg/                the throwaway signing key (no passphrase); kept across rebuilds
#
# Idempotent: with unchanged inputs nothing is rewritten (hash stamp). Inputs: the stand-in
# sources beside this script, this script, the default rules from the shared corpus
# ($FALCO_DEPLOY_SHARED, default <repo root>/../shared) and the validator package
# wrapper/falco_deploy/rules_engine/ that is vendored into the package.
# Needs dpkg-dev, apt-utils and gnupg (installed with apt-get when missing and run as root).
set -euo pipefail

VERSIONS="0.43.0 0.44.0"
KEY_UID="falco-deploy stand-in repository <standin@falco-deploy.invalid>"

die() { echo "build-standin-repo: error: $*" >&2; exit 1; }

[ $# -eq 1 ] || die "usage: $0 OUT_DIR"
out=$1

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
src=$here/standin-falco
root=$(git -C "$here" rev-parse --show-toplevel 2>/dev/null || (cd "$here/../.." && pwd))
shared=${FALCO_DEPLOY_SHARED:-$root/../shared}
rules_src=$shared/corpus/falcosecurity-rules/main/falco_rules.yaml
engine_src=$root/wrapper/falco_deploy/rules_engine

[ -f "$rules_src" ] || die "default rules not found: $rules_src (set FALCO_DEPLOY_SHARED to the shared folder)"
[ -f "$engine_src/__init__.py" ] || die "validator package missing: $engine_src (the stand-in vendors it for falco -V and rules loading)"
[ -d "$src" ] || die "stand-in sources missing: $src"

missing=""
command -v dpkg-deb >/dev/null || missing="$missing dpkg-dev"
command -v apt-ftparchive >/dev/null || missing="$missing apt-utils"
command -v gpg >/dev/null || missing="$missing gnupg"
command -v gpgv >/dev/null || missing="$missing gpgv"
if [ -n "$missing" ]; then
    [ "$(id -u)" -eq 0 ] || die "missing Debian packages:$missing (install them, or run as root)"
    echo "build-standin-repo: installing$missing"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null \
        || die "apt-get install$missing failed"
fi
python3 -c 'import yaml' 2>/dev/null || die "python3 with PyYAML (python3-yaml) is needed to check the package"

mkdir -p "$out"
out=$(cd "$out" && pwd)

# Hash of every input: rebuilding with the same inputs changes nothing.
stamp=$( {
    echo "$VERSIONS"
    sha256sum < "${BASH_SOURCE[0]}"
    sha256sum < "$rules_src"
    (cd "$src" && find . -type f ! -name '*.pyc' | LC_ALL=C sort | xargs sha256sum)
    (cd "$engine_src" && find . -type f ! -path '*/__pycache__/*' ! -name '*.pyc' | LC_ALL=C sort | xargs sha256sum)
} | sha256sum | cut -c1-64 )
if [ -f "$out/stamp" ] && [ "$(cat "$out/stamp")" = "$stamp" ] && [ -f "$out/repo/dists/stable/InRelease" ] \
    && [ -s "$out/fingerprint" ]; then
    echo "build-standin-repo: $out/repo is current (fingerprint $(cat "$out/fingerprint"))"
    exit 0
fi

# --- signing key (kept when present) -------------------------------------------------------------
export GNUPGHOME=$out/gnupg
mkdir -p "$GNUPGHOME"
chmod 700 "$GNUPGHOME"
fpr=$(gpg --batch --with-colons --list-secret-keys 2>/dev/null | awk -F: '/^fpr:/ {print $10; exit}')
if [ -z "$fpr" ]; then
    gpg --batch --quiet --passphrase '' --quick-gen-key "$KEY_UID" ed25519 sign never \
        || die "gpg could not generate the repository key"
    fpr=$(gpg --batch --with-colons --list-secret-keys 2>/dev/null | awk -F: '/^fpr:/ {print $10; exit}')
fi
[[ $fpr =~ ^[0-9A-F]{40}$ ]] || die "unexpected key fingerprint '$fpr'"
gpg --batch --armor --export "$fpr" > "$out/falco-standin.asc.tmp"
gpg --batch --export "$fpr" > "$out/falco-standin.gpg.tmp"
mv "$out/falco-standin.asc.tmp" "$out/falco-standin.asc"
mv "$out/falco-standin.gpg.tmp" "$out/falco-standin.gpg"
echo "$fpr" > "$out/fingerprint"

# --- packages ------------------------------------------------------------------------------------
work=$(mktemp -d "${TMPDIR:-/tmp}/falco-standin.XXXXXX")
trap 'rm -rf "$work"' EXIT
repo_new=$work/repo
mkdir -p "$repo_new/stable"
# Fixed mtimes keep the archives stable for identical inputs.
epoch=$(git -C "$root" log -1 --format=%ct 2>/dev/null || echo 1700000000)

for version in $VERSIONS; do
    pkg=$work/pkg-$version
    install -d -m 0755 "$pkg/DEBIAN" "$pkg/usr/bin" "$pkg/usr/lib/systemd/system" \
        "$pkg/usr/lib/falco-standin" "$pkg/usr/share/falco/plugins" "$pkg/usr/share/doc/falco" \
        "$pkg/etc/falco/config.d" "$pkg/etc/falcoctl"
    sed "s/@FALCO_VERSION@/$version/" "$src/falco" > "$pkg/usr/bin/falco"
    install -m 0755 "$src/falcoctl" "$pkg/usr/bin/falcoctl"
    chmod 0755 "$pkg/usr/bin/falco"
    install -m 0644 "$src"/systemd/*.service "$pkg/usr/lib/systemd/system/"
    install -m 0644 "$src/falco.yaml" "$src/falco_rules.local.yaml" "$pkg/etc/falco/"
    install -m 0644 "$rules_src" "$pkg/etc/falco/falco_rules.yaml"
    install -m 0644 "$src/falco.container_plugin.yaml" "$pkg/etc/falco/config.d/"
    install -m 0644 "$src/falcoctl.yaml" "$pkg/etc/falcoctl/falcoctl.yaml"
    install -m 0644 "$src/STANDIN.md" "$pkg/usr/share/doc/falco/STANDIN.md"
    (cd "$engine_src/.." && find rules_engine -type f ! -path '*/__pycache__/*' ! -name '*.pyc' -print0 \
        | xargs -0 -I{} install -D -m 0644 {} "$pkg/usr/lib/falco-standin/{}")
    find "$pkg/usr/lib/falco-standin" -type d -exec chmod 0755 {} +
    install -m 0755 "$src"/debian/postinst "$src"/debian/prerm "$src"/debian/postrm "$pkg/DEBIAN/"
    (cd "$pkg" && find etc -type f | sed 's|^|/|' | LC_ALL=C sort) > "$pkg/DEBIAN/conffiles"
    size=$(du -sk --exclude=DEBIAN "$pkg" | cut -f1)
    cat > "$pkg/DEBIAN/control" <<EOF
Package: falco
Version: $version
Architecture: amd64
Maintainer: falco-deploy test bed <standin@falco-deploy.invalid>
Installed-Size: $size
Depends: python3 (>= 3.9), python3-yaml
Section: utils
Priority: optional
Homepage: https://falco.org
Description: falco-deploy stand-in for Falco (test bed only, never emits alerts)
 Mirrors the falco package's files, units, maintainer scripts and configuration
 handling so deployment tools can be tested without the real Falco. It opens no
 event source and loads no driver. See /usr/share/doc/falco/STANDIN.md.
EOF
    chmod 0644 "$pkg/DEBIAN/control" "$pkg/DEBIAN/conffiles"
    # The vendored validator must import on its own (no falco_deploy package on a host).
    PYTHONDONTWRITEBYTECODE=1 python3 - "$pkg/usr/lib/falco-standin" <<'PY' || die "vendored rules_engine does not import standalone (see above)"
import sys
sys.path.insert(0, sys.argv[1])
from rules_engine import validate  # noqa: F401
PY
    find "$pkg" -exec touch -h -d "@$epoch" {} +
    SOURCE_DATE_EPOCH=$epoch dpkg-deb --root-owner-group -Zxz --build "$pkg" \
        "$repo_new/stable/falco-$version-x86_64.deb" >/dev/null || die "dpkg-deb failed for $version"
done

# --- repository metadata and signatures ----------------------------------------------------------
bin=$repo_new/dists/stable/main/binary-amd64
mkdir -p "$bin"
(cd "$repo_new" && apt-ftparchive packages stable > "$bin/Packages") || die "apt-ftparchive packages failed"
gzip -9nk "$bin/Packages"
(cd "$repo_new/dists/stable" && apt-ftparchive \
    -o APT::FTPArchive::Release::Origin=falco-deploy-standin \
    -o APT::FTPArchive::Release::Label=falco-deploy-standin \
    -o APT::FTPArchive::Release::Suite=stable \
    -o APT::FTPArchive::Release::Codename=stable \
    -o APT::FTPArchive::Release::Components=main \
    -o APT::FTPArchive::Release::Architectures=amd64 \
    release . > "$work/Release") || die "apt-ftparchive release failed"
mv "$work/Release" "$repo_new/dists/stable/Release"
gpg --batch --yes --local-user "$fpr" --digest-algo SHA512 --clearsign \
    -o "$repo_new/dists/stable/InRelease" "$repo_new/dists/stable/Release" || die "signing InRelease failed"
gpg --batch --yes --local-user "$fpr" --digest-algo SHA512 --armor --detach-sign \
    -o "$repo_new/dists/stable/Release.gpg" "$repo_new/dists/stable/Release" || die "signing Release.gpg failed"
gpgv --keyring "$out/falco-standin.gpg" "$repo_new/dists/stable/InRelease" >/dev/null 2>&1 \
    || die "InRelease does not verify with the exported key"
cp "$out/falco-standin.asc" "$repo_new/falco-standin.asc"
find "$repo_new" -type d -exec chmod 0755 {} + && find "$repo_new" -type f -exec chmod 0644 {} +

rm -rf "$out/repo.old"
[ -d "$out/repo" ] && mv "$out/repo" "$out/repo.old"
mv "$repo_new" "$out/repo"
rm -rf "$out/repo.old"
chmod 0644 "$out/falco-standin.asc" "$out/falco-standin.gpg" "$out/fingerprint"
echo "$stamp" > "$out/stamp"
echo "build-standin-repo: built falco $VERSIONS into $out/repo (fingerprint $fpr)"
