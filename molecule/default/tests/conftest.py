"""The `default` scenario's hosts, shared by its test files: all of them, the ones preflight must
skip, and fixtures for the installed and the skipped ones."""

from __future__ import annotations

import os

import pytest
import testinfra.utils.ansible_runner

ALL_HOSTS = testinfra.utils.ansible_runner.AnsibleRunner(
    os.environ["MOLECULE_INVENTORY_FILE"]).get_hosts("all")
SKIPPED = {"fd-default-nobtf"}  # its BTF path points to a missing file: preflight must skip it
INSTALLED = sorted(set(ALL_HOSTS) - SKIPPED)


def host(name):
    return testinfra.get_host(f"ansible://{name}?ansible_inventory="
                              f"{os.environ['MOLECULE_INVENTORY_FILE']}")


@pytest.fixture(params=INSTALLED)
def installed(request):
    return host(request.param)


@pytest.fixture(params=sorted(SKIPPED))
def skipped(request):
    return host(request.param)
