"""The session's secret scan (tests/artifact_scan.py, run by tests/conftest.py): it finds a
planted secret with file and line, fails the session for it, and fails a session whose runs
left no artifact where it looks.

The planted secret is not one of tests/known_secrets.py: the scan of this very session must not
find it."""

from __future__ import annotations

import inspect
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import artifact_scan
import known_secrets

TESTS = Path(__file__).resolve().parents[1]
PLANTED = "fd-planted-secret-4711"


def _run_folder(folder: Path, stdout: str = "PLAY RECAP\n") -> Path:
    """What ansible-runner leaves of a finished run."""
    (folder / "job_events").mkdir(parents=True)
    (folder / "job_events" / "1-x.json").write_text('{"event": "playbook_on_start"}')
    (folder / "stdout").write_text(stdout)
    (folder / "status").write_text("successful")
    (folder / "rc").write_text("0")
    return folder


def test_a_planted_secret_is_reported_with_file_and_line():
    # Outside the session's base temporary folder: this stand-in is not a run of the session.
    with tempfile.TemporaryDirectory() as scratch:
        _planted_secret_is_reported(Path(scratch))


def _planted_secret_is_reported(tmp_path: Path) -> None:
    run = _run_folder(tmp_path / "runs" / "a", stdout=f"TASK [x]\nok: {PLANTED}\n{PLANTED}\n")
    (run / "job_events" / "2-y.json").write_text(f'{{"stdout": "{PLANTED} and {PLANTED}"}}')
    given = tmp_path / "vault-pass"
    given.write_text(PLANTED)
    (run / "link").symlink_to(given)  # never read through a link
    findings = artifact_scan.scan([tmp_path], [PLANTED, "fd-absent-0815"], skip={given})
    assert sorted(map(str, findings)) == [f"{run}/job_events/2-y.json:1: {PLANTED}",
                                          f"{run}/stdout:2: {PLANTED}",
                                          f"{run}/stdout:3: {PLANTED}"]
    assert artifact_scan.scan([tmp_path], [PLANTED]) != findings  # the input, once not skipped
    assert artifact_scan.run_folders([tmp_path]) == [run]


def test_what_a_session_looks_at_besides_its_base_temporary_folder(tmp_path):
    started = time.time() - 5  # file times may lag the clock by a tick
    runs = tmp_path / "state" / "falco-deploy" / "runs"
    old, new = runs / "20260101T000000Z-install", runs / "20260102T000000Z-install"
    old.mkdir(parents=True)
    new.mkdir()
    os.utime(old, (started - 3600, started - 3600))
    venv = tmp_path / "venv"
    molecule = artifact_scan.molecule_ephemeral_dirs({"VIRTUAL_ENV": str(venv)}, tmp_path)
    assert molecule[0].parent == venv / ".ansible" / "tmp"
    molecule[0].mkdir(parents=True)
    roots = artifact_scan.locations(tmp_path / "basetemp", started, {
        "HOME": str(tmp_path), "XDG_STATE_HOME": str(tmp_path / "state"),
        "VIRTUAL_ENV": str(venv)})
    assert roots[0] == tmp_path / "basetemp"
    assert new in roots and old not in roots  # another session's run is not this one's
    assert molecule[0] in roots


def _session(tmp_path: Path, test_source: str) -> subprocess.CompletedProcess:
    """A pytest session of its own with this suite's conftest and scan, whose known secret is
    PLANTED."""
    inner = tmp_path / "inner"
    (inner / "tests").mkdir(parents=True)
    (inner / "pytest.ini").write_text("[pytest]\n")
    for name in ("conftest.py", "artifact_scan.py"):
        shutil.copy(TESTS / name, inner / "tests" / name)
    # Only PLANTED, and the real write_input: a copy of known_secrets.py would put every test
    # secret under this session's base temporary folder.
    (inner / "tests" / "known_secrets.py").write_text(
        f"from pathlib import Path\n\nSECRETS = ({PLANTED!r},)\nINPUT_FILES: set[Path] = set()"
        f"\n\n\n{inspect.getsource(known_secrets.write_input)}")
    (inner / "tests" / "test_inner.py").write_text(test_source)
    env = {k: v for k, v in os.environ.items()
           if k not in ("VIRTUAL_ENV", "ANSIBLE_HOME", "PYTEST_ADDOPTS")}
    env.update(HOME=str(tmp_path / "home"), XDG_STATE_HOME=str(tmp_path / "state"),
               TMPDIR=str(tmp_path))
    try:
        return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                               "--basetemp", str(tmp_path / "basetemp"), "tests"],
                              cwd=inner, env=env, capture_output=True, text=True, timeout=120)
    finally:
        # The stand-in run folders must not count as this session's artifacts.
        shutil.rmtree(tmp_path / "basetemp", ignore_errors=True)


_RUN_FOLDER = '''
def run_folder(folder, stdout="PLAY RECAP\\n"):
    (folder / "job_events").mkdir(parents=True)
    (folder / "job_events" / "1-x.json").write_text("{}")
    for name, text in (("stdout", stdout), ("status", "successful"), ("rc", "0")):
        (folder / name).write_text(text)
'''


def test_a_secret_in_a_run_artifact_fails_the_session(tmp_path):
    """The suite passing shows the scan passes a clean session; here one test leaks."""
    proc = _session(tmp_path, "import known_secrets\nimport pytest\n" + _RUN_FOLDER + f'''
@pytest.mark.run_artifacts
def test_runs(tmp_path):
    run_folder(tmp_path / "run")
    known_secrets.write_input(tmp_path / "vault-pass", "{PLANTED}")  # an input: skipped

def test_leaks(tmp_path):
    run_folder(tmp_path / "run", stdout="ok\\n{PLANTED}\\n")
''')
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "2 passed" in proc.stdout
    leaked = tmp_path / "basetemp" / "test_leaks0" / "run" / "stdout"
    assert f"1 test secret(s) found in what the runs left behind:\n  {leaked}:2: {PLANTED}" \
        in proc.stdout, proc.stdout
    assert "no artifact folder" not in proc.stdout


def test_a_session_whose_runs_left_no_artifact_where_the_scan_looks_fails(tmp_path):
    proc = _session(tmp_path, '''import pytest

@pytest.mark.run_artifacts
def test_runs_elsewhere(tmp_path):
    pass
''')
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "1 passed" in proc.stdout
    assert "1 test(s) that leave run artifacts passed (e.g. tests/test_inner.py::" \
        "test_runs_elsewhere), but no artifact folder of a finished ansible-runner run was " \
        "found in: " in proc.stdout, proc.stdout
