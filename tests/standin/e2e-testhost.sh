#!/bin/bash
# End-to-end check of the stand-in package on a systemd test host (needs Docker and the image
# falco-deploy-testhost:bookworm). Usage: tests/standin/e2e-testhost.sh OUT_DIR  (from build-standin-repo.sh)
set -u
OUT=${1:-/tmp/standin-out}
C=sfb-e2e
docker rm -f $C >/dev/null 2>&1
docker run -d --name $C --privileged --cgroupns=private --tmpfs /run --tmpfs /tmp \
  -v "$OUT/repo":/mnt/falco-repo:ro falco-deploy-testhost:bookworm /lib/systemd/systemd >/dev/null
sleep 2
x() { echo "+ $*"; docker exec $C sh -c "$*"; echo "  -> rc=$?"; }
x 'gpg --dearmor < /mnt/falco-repo/falco-standin.asc > /usr/share/keyrings/falco-standin.gpg && chmod 0644 /usr/share/keyrings/falco-standin.gpg'
x 'echo "deb [signed-by=/usr/share/keyrings/falco-standin.gpg] file:/mnt/falco-repo stable main" > /etc/apt/sources.list.d/falcosecurity.list'
x 'apt-get update -o Dir::Etc::sourcelist=/etc/apt/sources.list.d/falcosecurity.list -o Dir::Etc::sourceparts=- -o APT::Get::List-Cleanup=0 2>&1 | tail -2'
x 'FALCO_FRONTEND=noninteractive FALCO_DRIVER_CHOICE=none DEBIAN_FRONTEND=noninteractive apt-get install -y -q falco=0.44.0 2>&1 | grep -E "POST-INSTALL|Setting up"'
x 'dpkg-query -W falco; falco --version | head -1; systemctl is-enabled falco-modern-bpf falcoctl-artifact-follow'
x 'falcoctl driver config --type modern_ebpf >/dev/null && cat /etc/falco/config.d/engine-kind-falcoctl.yaml'
x 'systemctl enable --now falco-modern-bpf 2>&1; sleep 1; systemctl is-active falco-modern-bpf; readlink /etc/systemd/system/falco.service'
STATE='python3 -c "import json;s=json.load(open(\"/run/falco/standin-state.json\"));print(\"pid\",s[\"pid\"],s[\"engine_kind\"],\"files\",[r[\"path\"] for r in s[\"rules_files\"]],\"rules\",len(s[\"rules\"]),\"reloads\",s[\"reload_count\"],\"failures\",s[\"reload_failures\"],\"last\",(s[\"last_reload\"] or {}).get(\"result\"),(s[\"last_reload\"] or {}).get(\"trigger\"))"'
x "$STATE"
x 'journalctl -u falco-modern-bpf --no-pager -o cat | grep -E "Opening|ring buffer|Loading rules"'
x 'mkdir -p /etc/falco/rules.d && printf -- "- rule: Broken\n  desc: bad field\n  condition: evt.type = open and proc.nosuchfield = x\n  output: x\n  priority: WARNING\n" > /etc/falco/rules.d/broken.yaml; sleep 1'
x "$STATE"
x 'systemctl is-active falco-modern-bpf; journalctl -u falco-modern-bpf --no-pager -o cat | grep -A3 "hot restart failure" | head -4'
x 'systemctl reload falco-modern-bpf; echo reload-rc=$?; sleep 0.5'
x "$STATE"
x 'rm /etc/falco/rules.d/broken.yaml; printf -- "- rule: Standin good\n  desc: A shell ran in a container. Tune with exceptions.\n  condition: evt.type = execve and container.id != host and proc.name = bash\n  output: Shell (container=%%container.name)\n  priority: WARNING\n" > /etc/falco/rules.d/good.yaml; sleep 1'
x "$STATE"
x 'systemctl reload falco-modern-bpf; echo reload-rc=$?; sleep 0.5'
x "$STATE"
x 'journalctl -u falco-modern-bpf --no-pager -o cat | grep -c "SIGHUP received, restarting..."'
x 'stat -c "%U:%G %a %n" /usr/bin/falco /usr/bin/falcoctl /etc/falco/falco.yaml /etc/falco/falco_rules.yaml /usr/lib/systemd/system/falco-modern-bpf.service /run/falco/standin-state.json; find / -xdev -path /proc -prune -o -perm -0002 -type f -print 2>/dev/null | grep -E "falco" || echo no-world-writable-falco-files'
x 'DEBIAN_FRONTEND=noninteractive FALCO_FRONTEND=noninteractive FALCO_DRIVER_CHOICE=none apt-get install -y -q --allow-downgrades falco=0.43.0 2>&1 | grep -E "POST-INSTALL|Setting up"; falco --version | head -1; systemctl is-active falco-modern-bpf; systemctl is-enabled falco-modern-bpf'
x 'apt-get remove -y -q falco 2>&1 | grep -E "POST-REMOVE|Removing"; ls /etc/systemd/system/falco.service 2>&1 | tail -1'
docker rm -f $C >/dev/null && echo "container $C removed"
