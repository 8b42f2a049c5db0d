"""build-standin-repo.sh: signed apt repository with two `falco` versions, idempotent rebuild."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from standin_support import DEFAULT_RULES, ROOT, SHARED, VALIDATOR_PARENT

BUILD = ROOT / "molecule" / "shared" / "build-standin-repo.sh"
TOOLS = ("dpkg-deb", "apt-ftparchive", "gpg", "gpgv")


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    if missing := [t for t in TOOLS if shutil.which(t) is None]:
        pytest.skip(f"missing tools: {missing} (Debian packages dpkg-dev, apt-utils, gnupg)")
    if not (VALIDATOR_PARENT / "rules_engine" / "__init__.py").is_file():
        pytest.skip("wrapper/falco_deploy/rules_engine is not in this tree")
    out = tmp_path_factory.mktemp("standin-repo")
    res = subprocess.run(["bash", str(BUILD), str(out)], capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    return out


def _run(*cmd: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=120, **kw)


def test_release_is_signed_by_the_exported_key(built):
    fingerprint = (built / "fingerprint").read_text().strip()
    assert re.fullmatch(r"[0-9A-F]{40}", fingerprint)
    keyring = built / "falco-standin.gpg"
    dists = built / "repo" / "dists" / "stable"
    res = _run("gpgv", "--status-fd", "1", "--keyring", str(keyring), str(dists / "InRelease"))
    assert f"VALIDSIG {fingerprint}" in res.stdout
    res = _run("gpgv", "--status-fd", "1", "--keyring", str(keyring),
               str(dists / "Release.gpg"), str(dists / "Release"))
    assert f"VALIDSIG {fingerprint}" in res.stdout
    # The armored key is the same key.
    home = built / "verify-home"
    home.mkdir(mode=0o700)
    res = _run("gpg", "--homedir", str(home), "--batch", "--with-colons", "--import-options",
               "show-only", "--import", str(built / "falco-standin.asc"))
    assert fingerprint in res.stdout
    release = (dists / "Release").read_text()
    assert "Suite: stable" in release and "Components: main" in release
    assert "main/binary-amd64/Packages.gz" in release


def test_packages_index_matches_a_fresh_scan(built):
    repo = built / "repo"
    index = (repo / "dists/stable/main/binary-amd64/Packages").read_text()
    fresh = _run("apt-ftparchive", "packages", "stable", cwd=repo).stdout
    assert index == fresh
    stanzas = [s for s in index.split("\n\n") if s.strip()]
    versions = sorted(re.search(r"^Version: (.+)$", s, re.M).group(1) for s in stanzas)
    assert versions == ["0.43.0", "0.44.0"]
    for stanza in stanzas:
        assert re.search(r"^Package: falco$", stanza, re.M)
        assert re.search(r"^Architecture: amd64$", stanza, re.M)
        assert re.search(r"^Filename: stable/falco-0\.4[34]\.0-x86_64\.deb$", stanza, re.M)


def test_package_contents_owners_and_modes(built, tmp_path):
    deb = built / "repo" / "stable" / "falco-0.44.0-x86_64.deb"
    listing = _run("dpkg-deb", "-c", str(deb)).stdout.splitlines()
    entries = {line.split()[-1].lstrip("."): line.split()[:2] for line in listing}
    for path in ("/usr/bin/falco", "/usr/bin/falcoctl", "/etc/falco/falco.yaml",
                 "/etc/falco/falco_rules.yaml", "/etc/falco/falco_rules.local.yaml",
                 "/etc/falcoctl/falcoctl.yaml", "/usr/lib/falco-standin/rules_engine/__init__.py",
                 "/usr/lib/systemd/system/falco-modern-bpf.service",
                 "/usr/lib/systemd/system/falco-kmod.service",
                 "/usr/lib/systemd/system/falco-custom.service",
                 "/usr/lib/systemd/system/falcoctl-artifact-follow.service"):
        assert path in entries, path
    for path, (mode, owner) in entries.items():
        assert owner == "root/root", path
        assert mode[8] != "w", f"{path} is world-writable"
    assert entries["/usr/bin/falco"][0] == "-rwxr-xr-x"
    assert entries["/etc/falco/falco.yaml"][0] == "-rw-r--r--"
    root = tmp_path / "root"
    _run("dpkg-deb", "-x", str(deb), str(root))
    assert (root / "etc/falco/falco_rules.yaml").read_bytes() == DEFAULT_RULES.read_bytes()
    for version in ("0.43.0", "0.44.0"):
        vroot = tmp_path / version
        _run("dpkg-deb", "-x", str(built / "repo" / "stable" / f"falco-{version}-x86_64.deb"),
             str(vroot))
        out = _run(sys.executable, str(vroot / "usr/bin/falco"), "-c", "/dev/null", "--version",
                   env={"FALCO_STANDIN_LIB": str(vroot / "usr/lib/falco-standin")}).stdout
        assert out.splitlines()[0] == f"Falco version: {version}"
    # The vendored validator works from the package alone.
    res = subprocess.run([sys.executable, str(root / "usr/bin/falco"), "-c", "/dev/null",
                          "-V", str(root / "etc/falco/falco_rules.yaml")],
                         env={"FALCO_STANDIN_LIB": str(root / "usr/lib/falco-standin"),
                              "PYTHONDONTWRITEBYTECODE": "1"},
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr


def test_rebuild_with_unchanged_inputs_changes_nothing(built):
    files = {p: p.stat().st_mtime_ns for p in (built / "repo").rglob("*") if p.is_file()}
    fingerprint = (built / "fingerprint").read_text()
    res = subprocess.run(["bash", str(BUILD), str(built)], capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0 and "is current" in res.stdout
    assert {p: p.stat().st_mtime_ns for p in (built / "repo").rglob("*") if p.is_file()} == files
    assert (built / "fingerprint").read_text() == fingerprint


def test_missing_validator_fails_clearly(tmp_path):
    # A copy of the tree without wrapper/falco_deploy/rules_engine.
    fake = tmp_path / "checkout"
    (fake / "molecule" / "shared").mkdir(parents=True)
    shutil.copy(BUILD, fake / "molecule" / "shared" / BUILD.name)
    shutil.copytree(BUILD.parent / "standin-falco", fake / "molecule/shared/standin-falco")
    res = subprocess.run(["bash", str(fake / "molecule/shared" / BUILD.name), str(tmp_path / "o")],
                         capture_output=True, text=True, timeout=60,
                         env={"PATH": "/usr/bin:/bin",
                              "FALCO_DEPLOY_SHARED": str(SHARED)})
    assert res.returncode != 0
    assert "validator package missing" in res.stderr
