#!/bin/sh
# The package and file state `uninstall` must restore: installed packages with versions, and
# every path under the folders an install touches with its type, mode and owner. Left out:
# Python byte-code caches (any Python run may write them) and apt's package lists, a cache that
# `apt-get update` refreshes for every repository (the Falco repository's own lists are checked
# on their own by the tests).
set -eu
out=$1
mkdir -p "$out"
dpkg-query -W -f='${Package} ${Version} ${db:Status-Status}\n' | sort > "$out/packages"
find /etc /usr /opt /var/lib/falco-deploy /var/log/falco /var/cache/falco-deploy -xdev \
    \( -name __pycache__ -o -name '*.pyc' \) -prune -o -printf '%p %y %m %u:%g\n' 2>/dev/null \
    | sort > "$out/files"
