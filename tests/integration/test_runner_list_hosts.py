"""runner.list_hosts asks a real `ansible-playbook --list-hosts` which hosts a run targets (it
contacts no host, but starts Ansible, so it lives here rather than in the unit tests); rules
deploy uses it to name the hosts a stopped --serial rollout never reached."""

from __future__ import annotations

from pathlib import Path

from falco_deploy import runner
from falco_deploy.project import Project


def _run(tmp_path: Path, limit: str | None = None, serial: bool = False) -> runner.PlaybookRun:
    root = tmp_path / "project"
    (root / "playbooks").mkdir(parents=True)
    (root / "roles").mkdir()
    play = "- hosts: all\n  gather_facts: false\n"
    if serial:
        play += "  serial: 1\n"
    (root / "playbooks" / "p.yml").write_text(play + "  tasks: []\n")
    inventory = tmp_path / "hosts.yml"
    inventory.write_text("all:\n  children:\n    web:\n      hosts:\n        web-2:\n"
                         "        web-1:\n    db:\n      hosts:\n        db-1:\n")
    return runner.PlaybookRun(Project(root, "option"), root / "playbooks" / "p.yml",
                              [inventory], tmp_path / "arts", limit=limit)


def test_lists_every_targeted_host_once(tmp_path):
    assert sorted(runner.list_hosts(_run(tmp_path))) == ["db-1", "web-1", "web-2"]


def test_honours_limit_and_serial_plays(tmp_path):
    assert sorted(runner.list_hosts(_run(tmp_path, limit="web", serial=True))) == [
        "web-1", "web-2"]


def test_unparsable_playbook_gives_no_hosts(tmp_path):
    run = _run(tmp_path)
    run.playbook.write_text("- hosts: [\n")
    assert runner.list_hosts(run) == []
