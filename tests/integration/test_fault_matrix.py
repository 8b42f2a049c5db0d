"""The fault matrix: `falco-deploy rules deploy` on three systemd test hosts (stand-in Falco) meets
one fault after another - eight kinds of bad rule sets, a run killed with SIGKILL between staging
and switch, an unreachable host, a hung host, a host whose Falco was stopped, a full disk while
staging.

After each fault, every reachable host is on exactly the old or the new release (live files =
the active release's manifest = one whole known set), its Falco runs and loaded exactly those
files (unless the fault was stopping it), nothing outside falco-deploy's folders changed, and a
rerun converges (one rerun covers the seven bad sets that the gate or the CLI refused, since no
host saw them: each is checked to have run no task beyond the gate). The test prints the
matrix, fault x host -> end state, whether it passes or not."""

from __future__ import annotations

import json
import os
import select
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from falco_deploy.exitcodes import ExitCode

from .conftest import booted_hosts, make_inventory
from .fleet import (
    FALCO_DEPLOY,
    LOCAL_RULES,
    REPO_ROOT,
    RULES_D,
    STATE_DIR,
    active_release,
    by_host,
    cli,
    deploy,
    exception_tuning,
    kill_playbook,
    live_manifest,
    loaded_rules_d,
    make_set,
    probe_rule,
    python_processes,
    set_manifest,
    settle,
    sh,
    staging_watcher,
)

# Their runs leave artifacts in the base temporary folder for the session's secret scan.
pytestmark = pytest.mark.run_artifacts

UNIT = "falco-modern-bpf.service"
# The full-disk host's releases folder: a tmpfs that holds several ordinary releases, not the
# padded one below.
TMPFS_SIZE = "2m"
PADDING_BYTES = 3 * 1024 * 1024  # under the gate's 4 MiB per file, over TMPFS_SIZE

# Everything on a host's root file system outside falco-deploy's folders: files with mtime, size
# and mode, folders with mode (a folder's mtime changes with its entries, which are listed).
# It must not change. Pruned: our folders, the journal, systemd's state and private temporary
# folders (stopping a unit writes there), temporary folders, ansible's remote temp folder.
OUTSIDE_OUR_FOLDERS = (
    "find / -xdev \\( -path /proc -o -path /var/lib/falco-deploy -o -path /etc/falco/rules.d "
    "-o -path /var/log/journal -o -path /var/lib/systemd -o -path /root/.ansible -o -path /tmp "
    "-o -path /var/tmp \\) -prune -o -type d -printf '%p/ %m %U\\n' "
    "-o -printf '%p %T@ %s %m %U\\n' | sort")


def bad_sets() -> dict[str, tuple[str, str]]:
    """Kind -> (file name, text) of a set that must never reach a running Falco."""
    bomb = [f"- list: fd_bomb_{i}\n  items: [{', '.join([f'fd_bomb_{i + 1}'] * 10)}]\n"
            for i in range(8)]
    bomb.append("- list: fd_bomb_8\n  items: [fd-bomb]\n")
    bomb.append(probe_rule("bomb").replace("proc.name = fd-probe-bomb", "proc.name in (fd_bomb_0)"))
    return {
        "YAML error": ("zz_yaml.yaml", "- rule: Fd broken\n  desc: [unclosed\n"),
        "unknown field": ("zz_field.yaml", probe_rule("field").replace(
            "proc.name = fd-probe-field", "proc.nosuchfield = x")),
        "undefined macro": ("zz_macro.yaml", probe_rule("macro").replace(
            "spawned_process and", "fd_no_such_macro and")),
        "override of a missing rule": ("zz_override.yaml", (
            "- rule: Fd no such upstream rule\n  condition: and proc.name = x\n"
            "  override:\n    condition: append\n")),
        "empty file": ("zz_empty.yaml", ""),
        # Valid alone and after the official rules (the offline gate passes it); every host's
        # falco_rules.local.yaml appends the same exception with other fields first, so the
        # host's own `falco -V` over the whole set refuses it.
        "fails only after the base rules": ("zz_tuning.yaml", exception_tuning(
            ["proc.name", "proc.pname"], ["fd-site-b", "fd-site-parent"])),
        "list bomb": ("zz_bomb.yaml", "".join(bomb)),
        "symlink": ("zz_link.yaml", ""),  # made a link to /etc/passwd below
    }


@dataclass
class Matrix:
    hosts: list[str]
    inventory: Path
    workdir: Path
    sets: dict[str, dict[str, str]] = field(default_factory=dict)  # set name -> manifest
    rows: list[tuple[str, list[str]]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    outside: dict[str, str] = field(default_factory=dict)  # host -> OUTSIDE_OUR_FOLDERS

    def new_set(self, name: str) -> Path:
        folder = make_set(self.workdir, name.replace(" ", "-"),
                          {"zz_matrix.yaml": probe_rule(name.replace(" ", "-"))})
        self.sets[name] = set_manifest(folder)
        return folder

    def deploy(self, folder: Path, *args: str) -> tuple[int, dict, str]:
        return deploy(self.workdir, self.inventory, folder, *args)

    def expect(self, condition: bool, what: str) -> None:
        if not condition:
            self.problems.append(what)

    def look(self, fault: str, allowed: dict[str, set[str]], envelope: dict | None = None,
             falco_stopped_by_fault: frozenset[str] = frozenset()) -> None:
        """Record each host's end state (and the run's verdict for it); a problem for any host
        not on exactly one allowed set."""
        verdicts = ({h: r["verdict"] for h, r in by_host(envelope).items()}
                    if envelope and envelope.get("hosts") else {})
        cells = []
        for host in self.hosts:
            settle(host)
            live = live_manifest(host)
            on = [name for name, manifest in self.sets.items() if manifest == live]
            manifest = json.loads(sh(host, f"cat {RULES_D}/../manifest.json"))
            recorded = {f["name"]: f["sha256"] for f in manifest["files"]}
            running = sh(host, f"systemctl is-active {UNIT}", check=False).strip() == "active"
            cell = (on[0] if on else "MIXED") + ("" if running else ", falco stopped") + (
                f" [{verdicts[host]}]" if host in verdicts else "")
            cells.append(cell)
            where = f"{fault} / {host}"
            self.expect(bool(on) and on[0] in allowed[host],
                        f"{where}: live set {on or live} not one of {sorted(allowed[host])}")
            self.expect(recorded == live, f"{where}: live files differ from the manifest")
            if host in falco_stopped_by_fault:
                self.expect(not running, f"{where}: Falco runs again though it was stopped")
            else:
                self.expect(running, f"{where}: Falco is not running")
                self.expect(loaded_rules_d(host) == live,
                            f"{where}: Falco loaded other files than the live set")
            outside = sh(host, OUTSIDE_OUR_FOLDERS)
            self.expect(outside == self.outside[host],
                        f"{where}: files outside falco-deploy's folders changed: "
                        f"{changed_lines(self.outside[host], outside)}")
        self.rows.append((fault, cells))

    def converge(self, fault: str, folder: Path, target: str) -> None:
        """A rerun of the deploy brings every host to the target set."""
        rc, envelope, stderr = self.deploy(folder)
        verdicts = {h: r["verdict"] for h, r in by_host(envelope).items()} if envelope else {}
        self.expect(rc == ExitCode.OK, f"{fault}: the rerun exited {rc}: {verdicts} "
                                       f"{stderr[-2000:]}")
        self.look(f"  rerun after {fault}", {h: {target} for h in self.hosts}, envelope)

    def table(self) -> str:
        width = max(len(fault) for fault, _ in self.rows)
        cols = [max(len(h), *(len(cells[i]) for _, cells in self.rows))
                for i, h in enumerate(self.hosts)]
        lines = ["fault".ljust(width) + " | " + " | ".join(
            h.ljust(c) for h, c in zip(self.hosts, cols, strict=True))]
        lines.append("-" * len(lines[0]))
        for fault, cells in self.rows:
            lines.append(fault.ljust(width) + " | " + " | ".join(
                cell.ljust(c) for cell, c in zip(cells, cols, strict=True)))
        return "\n".join(lines)


def changed_lines(before: str, after: str) -> list[str]:
    old, new = set(before.splitlines()), set(after.splitlines())
    return ([f"-{line}" for line in sorted(old - new)][:5]
            + [f"+{line}" for line in sorted(new - old)][:5])


@pytest.fixture(scope="module")
def matrix(testbed: Path, tmp_path_factory):
    """Three installed hosts; the last one's releases folder is a small tmpfs from the start."""
    with booted_hosts(testbed, "fd-fault", ["a", "b", "c"]) as hosts:
        workdir = tmp_path_factory.mktemp("matrix")
        sh(hosts[-1], f"mkdir -p {STATE_DIR}/releases && "
                      f"mount -t tmpfs -o size={TMPFS_SIZE},mode=0755 tmpfs {STATE_DIR}/releases")
        inventory = make_inventory(workdir, {h: {} for h in hosts})
        rc, envelope, stderr = cli(workdir, "install", "--inventory", str(inventory))
        assert rc == ExitCode.OK, f"{envelope}\n{stderr[-3000:]}"
        for host in hosts:  # a site's own tuning of an upstream rule (see bad_sets)
            subprocess.run(["docker", "exec", "-i", host, "sh", "-c", f"cat > {LOCAL_RULES}"],
                           input=exception_tuning(["proc.name"], ["fd-site-a"]), text=True,
                           check=True)
        yield Matrix(hosts, inventory, workdir)


def test_fault_matrix(matrix: Matrix, capsys):
    m, hosts = matrix, matrix.hosts
    a, b, c = hosts
    # The start: the project's rules, deployed by `install`.
    current = REPO_ROOT / "rules"
    m.sets["S0 installed"] = set_manifest(current)
    for host in hosts:
        settle(host)
        m.outside[host] = sh(host, OUTSIDE_OUR_FOLDERS)
    m.look("(start)", {h: {"S0 installed"} for h in hosts})
    old = "S0 installed"
    try:
        # 1-8: bad sets. The offline gate or each host's own `falco -V` refuses them whole.
        for kind, (name, text) in bad_sets().items():
            folder = make_set(m.workdir, "bad", {name: text})
            if kind == "symlink":
                (folder / name).unlink()
                os.symlink("/etc/passwd", folder / name)
            rc, envelope, stderr = m.deploy(folder)
            # The gate refuses (exit 1); a link is a bad source, refused before ansible starts
            # (exit 2); what only the hosts refuse fails every host (exit 4).
            expected = {"symlink": ExitCode.USAGE,
                        "fails only after the base rules": ExitCode.FAILED}.get(
                kind, ExitCode.RULES_INVALID)
            m.expect(rc == expected, f"{kind}: exit {rc}, not {expected.value}: {stderr[-1500:]}")
            if envelope.get("hosts"):
                for host, result in by_host(envelope).items():
                    m.expect(result["verdict"] in ("refused", "not run"),
                             f"{kind} / {host}: verdict {result['verdict']}")
            m.look(f"{kind} (exit {rc})", {h: {old} for h in hosts}, envelope)
            if expected == ExitCode.RULES_INVALID:
                # The gate ended the play: no task but the control node's ran.
                events = Path(envelope["artifacts_dir"]).glob("job_events/*.json")
                actions = {json.loads(e.read_text())["event_data"].get("task_action")
                           for e in events} - {None}
                m.expect(actions <= {"ansible.builtin.validate_argument_spec",
                                     "falco_deploy.falco.falco_rules_bundle"},
                         f"{kind}: tasks ran beyond the gate: {sorted(actions)}")
            if expected == ExitCode.FAILED:
                m.converge(kind, current, old)
        # The sets that no host saw (the gate or the CLI refused them): one rerun for all.
        m.converge("the sets no host saw", current, old)

        # 9: SIGKILL of the run (controller and host-side processes) once staging began.
        new_folder = m.new_set("S1 after kill")
        idle = {h: python_processes(h) for h in hosts}
        watchers = {h: staging_watcher(h, kill_run=True) for h in hosts}
        proc = subprocess.Popen(
            [str(FALCO_DEPLOY), "rules", "deploy", "--inventory", str(m.inventory), "--rules",
             str(new_folder), "--output", "json", "--artifacts-dir",
             str(m.workdir / f"run-kill-{uuid.uuid4().hex[:6]}")],
            cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            ready, _, _ = select.select([w.stdout for w in watchers.values()], [], [], 300)
            assert ready, "kill -9: no staging folder appeared on any host"
            kill_playbook(proc)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            # Hosts whose module was already running stage, and their watcher kills it there.
            deadline = time.monotonic() + 30
            for host in hosts:
                while time.monotonic() < deadline and python_processes(host) != idle[host]:
                    time.sleep(0.2)
            for watcher in watchers.values():
                watcher.kill()
                watcher.wait()
        m.look("kill -9 between staging and switch",
               {h: {old, "S1 after kill"} for h in hosts})  # the killed run left no envelope
        m.converge("kill -9", new_folder, "S1 after kill")
        old, current = "S1 after kill", new_folder

        # 10: one host unreachable: a network partition (its address in this run's inventory
        # leads nowhere), while the host itself runs on.
        new_folder = m.new_set("S2 unreachable")
        cut_off = m.workdir / "partition"
        cut_off.mkdir()
        partition = make_inventory(cut_off, {a: {}, b: {
            "ansible_connection": "ssh", "ansible_host": "127.0.0.1", "ansible_port": 1,
            "ansible_ssh_timeout": 3}, c: {}})
        rc, envelope, stderr = deploy(m.workdir, partition, new_folder)
        verdicts = {h: r["verdict"] for h, r in by_host(envelope).items()}
        m.expect(rc == ExitCode.PARTIAL and verdicts == {
            a: "deployed", b: "unreachable", c: "deployed"}, f"unreachable: exit {rc}, {verdicts}")
        m.look("one host unreachable", {a: {"S2 unreachable"}, b: {old}, c: {"S2 unreachable"}},
               envelope)
        m.converge("unreachable", new_folder, "S2 unreachable")
        old, current = "S2 unreachable", new_folder

        # 11: one host hung (its container frozen) during the deploy: its call fails, and the
        # other hosts of the batch still finish and report.
        new_folder = m.new_set("S3 hung")
        subprocess.run(["docker", "pause", b], check=True, capture_output=True)
        try:
            rc, envelope, stderr = m.deploy(new_folder)
        finally:
            subprocess.run(["docker", "unpause", b], check=True, capture_output=True)
        results = by_host(envelope)
        m.expect(rc == ExitCode.PARTIAL and results[b]["verdict"] == "failed"
                 and "is paused" in results[b]["reason"]
                 and results[a]["verdict"] == results[c]["verdict"] == "deployed",
                 f"hung: exit {rc}, {results}")
        m.look("one host hung", {a: {"S3 hung"}, b: {old}, c: {"S3 hung"}}, envelope)
        m.converge("hung", new_folder, "S3 hung")
        old, current = "S3 hung", new_folder

        # 12: a host whose Falco was stopped (by its operator): the release may go live on disk,
        # Falco is not started behind the operator's back, and it loads that release once started.
        new_folder = m.new_set("S4 falco stopped")
        sh(a, f"systemctl stop {UNIT}")
        rc, envelope, stderr = m.deploy(new_folder)
        verdicts = {h: r["verdict"] for h, r in by_host(envelope).items()}
        m.expect(verdicts.get(b) == verdicts.get(c) == "deployed", f"falco stopped: {verdicts}")
        m.expect(rc != ExitCode.OK, f"falco stopped: exit {rc} hides a host without Falco")
        m.look("one host's Falco stopped", {a: {old, "S4 falco stopped"},
                                            b: {"S4 falco stopped"}, c: {"S4 falco stopped"}},
               envelope, falco_stopped_by_fault=frozenset({a}))
        sh(a, f"systemctl start {UNIT}")
        m.converge("Falco stopped (started again)", new_folder, "S4 falco stopped")
        old, current = "S4 falco stopped", new_folder

        # 13: the disk fills up while the last host stages (its releases folder is a small
        # tmpfs); then space is freed and the rerun converges.
        new_folder = m.new_set("S5 disk full")
        (new_folder / "zz_padding.yaml").write_text(
            "# padding\n" * (PADDING_BYTES // 10) + probe_rule("padding"))
        m.sets["S5 disk full"] = set_manifest(new_folder)
        rc, envelope, stderr = m.deploy(new_folder)
        results = by_host(envelope) if envelope.get("hosts") else {h: {} for h in hosts}
        m.expect(results[c].get("verdict") == "failed"
                 and "No space left on device" in results[c]["reason"],
                 f"disk full: {c}: {results[c]} {stderr[-1500:]}")
        m.expect(rc == ExitCode.PARTIAL, f"disk full: exit {rc}")
        m.expect(not [d for d in sh(c, f"ls -A {STATE_DIR}/releases").split()
                      if d.startswith(".staging")], "disk full: staging leftovers")
        m.look("disk full while staging", {a: {"S5 disk full"}, b: {"S5 disk full"}, c: {old}},
               envelope)
        sh(c, f"mount -o remount,size=32m {STATE_DIR}/releases")
        m.converge("disk full (space freed)", new_folder, "S5 disk full")
    finally:
        with capsys.disabled():
            print("\n\nfault matrix: fault x host -> end state (the set live on disk and loaded)")
            print(m.table())
            print(f"problems: {len(m.problems)}", *m.problems, sep="\n")
    assert not m.problems, "\n".join(m.problems)
    # The whole matrix ran: 1 start + 13 faults + a rerun after each fault that reached the
    # hosts (6) and one after the seven that none reached.
    assert len(m.rows) == 1 + 13 + 6 + 1
    for host in hosts:
        assert active_release(host)
