#!/bin/bash
# Build the local Debian 12 systemd image that Molecule test hosts boot from, without any registry:
# debootstrap from the Debian mirror this machine's apt sources name, then `docker import`.
# Idempotent: an existing image with the current recipe hash is kept (the build takes 1-2 min).
#
# Usage: build-testhost-image.sh [--docker] [IMAGE]   (default: falco-deploy-testhost:bookworm)
#   --docker  also build the Docker-host variant (the image plus Debian's docker.io), named by
#             $FALCO_DEPLOY_TESTHOST_DOCKER_IMAGE (default falco-deploy-testhost-docker:bookworm),
#             for scenarios whose test hosts run containers themselves (molecule/verify). It is
#             layered on IMAGE with apt from the same mirror, and cached under its own label.
set -euo pipefail
docker_image=
if [ "${1:-}" = --docker ]; then
  docker_image=${FALCO_DEPLOY_TESTHOST_DOCKER_IMAGE:-falco-deploy-testhost-docker:bookworm}
  shift
fi
image=${1:-falco-deploy-testhost:bookworm}
# Packages the roles and the stand-in Falco need on a host; python3-yaml lets the stand-in
# validate rules, docker.io is installed later only on hosts that act as Docker hosts. strace
# reaches the verify scenario image (tarred from the test host) for
# scripts/record-scenario-traces.
include=systemd,systemd-sysv,dbus,python3,python3-yaml,sudo,procps,iproute2,ca-certificates,gnupg,curl,kmod,bpftool,strace
recipe_hash=$(printf '%s\n' "$include" "$(sed -n '/^# recipe-start/,/^# recipe-end/p' "$0")" | sha256sum | cut -c1-16)

# The variant's recipe: the base image's hash plus its packages; the base recipe is untouched by it.
docker_packages="docker.io"
build_docker_variant() {
  local hash
  hash=$(printf '%s\n' "$recipe_hash" "$docker_packages" | sha256sum | cut -c1-16)
  if [ "$(docker image inspect -f '{{ index .Config.Labels "falco-deploy.recipe" }}' "$docker_image" 2>/dev/null)" = "$hash" ]; then
    echo "testhost image: $docker_image is current ($hash)"
    return 0
  fi
  echo "testhost image: adding $docker_packages to $image (about 30 s)"
  # The postinst cannot start dockerd in a build container; the test host's systemd starts it.
  docker build -q -t "$docker_image" - >/dev/null <<DOCKERFILE
FROM $image
LABEL falco-deploy.recipe=$hash
RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $docker_packages >/dev/null \\
    && apt-get clean && rm -rf /var/lib/apt/lists/*
DOCKERFILE
  echo "testhost image: built $docker_image ($hash)"
}
finish() {
  if [ -n "$docker_image" ]; then build_docker_variant; fi
  exit 0
}

if [ "$(docker image inspect -f '{{ index .Config.Labels "falco-deploy.recipe" }}' "$image" 2>/dev/null)" = "$recipe_hash" ]; then
  echo "testhost image: $image is current ($recipe_hash)"
  finish
fi

mirror=${DEBIAN_MIRROR:-$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null \
  | grep -oE '^(URIs:|deb)[[:space:]]+(\[[^]]*\][[:space:]]+)?http[^[:space:]]+' | awk '{print $NF}' | grep -v security | head -1 || true)}
mirror=${mirror:-http://deb.debian.org/debian}
command -v debootstrap >/dev/null || {
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null; }

work=$(mktemp -d /var/tmp/falco-deploy-rootfs.XXXXXX)
trap 'rm -rf "$work"' EXIT
rootfs=$work/rootfs
echo "testhost image: debootstrap bookworm from $mirror (1-2 min)"
# recipe-start
debootstrap --variant=minbase --include="$include" bookworm "$rootfs" "$mirror" > "$work/debootstrap.log" 2>&1 \
  || { tail -30 "$work/debootstrap.log" >&2; exit 1; }
: > "$rootfs/etc/machine-id"
rm -f "$rootfs/var/lib/dbus/machine-id"
# Units that would touch the shared kernel or wait for a console: masked.
for unit in getty@tty1.service console-getty.service serial-getty@.service getty.target \
            systemd-binfmt.service proc-sys-fs-binfmt_misc.automount proc-sys-fs-binfmt_misc.mount \
            systemd-modules-load.service systemd-firstboot.service; do
  ln -sf /dev/null "$rootfs/etc/systemd/system/$unit"
done
chroot "$rootfs" apt-get clean
rm -rf "$rootfs"/var/lib/apt/lists/*
# recipe-end
tar --numeric-owner -C "$rootfs" -c . | docker import - "${image%%:*}-rootfs:${image##*:}" >/dev/null
docker build -q -t "$image" - >/dev/null <<DOCKERFILE
FROM ${image%%:*}-rootfs:${image##*:}
LABEL falco-deploy.recipe=$recipe_hash
ENV container=docker
STOPSIGNAL SIGRTMIN+3
CMD ["/lib/systemd/systemd"]
DOCKERFILE
echo "testhost image: built $image ($recipe_hash)"
finish
