"""A throwaway falco-deploy project and inventory for the in-process CLI tests: the commands find
their playbooks there (each a bare play, never run: the runner is replaced by recorded events)."""

from __future__ import annotations

from pathlib import Path


def fake_project(tmp_path: Path, *playbooks: str) -> Path:
    """tmp_path/project with roles/ and playbooks/<name>.yml for each name."""
    root = tmp_path / "project"
    (root / "playbooks").mkdir(parents=True)
    (root / "roles").mkdir()
    for name in playbooks:
        (root / "playbooks" / f"{name}.yml").write_text("- hosts: all\n")
    return root


def hosts_inventory(tmp_path: Path, *hosts: str) -> Path:
    """tmp_path/hosts.yml listing these hosts under `all`."""
    path = tmp_path / "hosts.yml"
    path.write_text("all:\n  hosts:\n" + "".join(f"    {host}:\n" for host in hosts))
    return path
