"""runner.py without starting Ansible: artifacts location, command line, environment."""

from __future__ import annotations

import json
import os
import shlex
import stat
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

from falco_deploy import redact, runner
from falco_deploy.errors import FalcoDeployError
from falco_deploy.exitcodes import ExitCode
from falco_deploy.project import Project
from falco_deploy.redact import MASK
from known_secrets import (
    BECOME_PASSWORD,
    CI_TOKEN,
    CLOUD_SECRET,
    EXTRA_VAR_SECRET,
    MIRROR_TOKEN,
    MIRROR_USER,
    VAULT_PASSWORD,
    mirror_url,
)

NOW = datetime(2026, 11, 29, 20, 15, 3, tzinfo=timezone.utc)


def test_artifacts_default_under_xdg_state_home(tmp_path):
    env = {"XDG_STATE_HOME": str(tmp_path / "state"), "HOME": str(tmp_path / "home")}
    path = runner.artifacts_dir_for("install", environ=env, now=NOW)
    assert path == tmp_path / "state" / "falco-deploy" / "runs" / "20261129T201503Z-install"


@pytest.mark.parametrize("xdg", [None, "", "relative/dir"])
def test_artifacts_fall_back_to_local_state(tmp_path, xdg):
    env = {"HOME": str(tmp_path)}
    if xdg is not None:
        env["XDG_STATE_HOME"] = xdg
    path = runner.artifacts_dir_for("install", environ=env, now=NOW)
    assert path.parent == tmp_path / ".local" / "state" / "falco-deploy" / "runs"


def test_artifacts_same_second_get_a_suffix(tmp_path):
    env = {"XDG_STATE_HOME": str(tmp_path)}
    first = runner.artifacts_dir_for("install", environ=env, now=NOW)
    first.mkdir(parents=True)
    second = runner.artifacts_dir_for("install", environ=env, now=NOW)
    assert second.name == "20261129T201503Z-install-2"


def test_chosen_artifacts_dir_is_made_private(tmp_path):
    path = runner.artifacts_dir_for("install", tmp_path / "mine")
    assert path == tmp_path / "mine"
    assert path.is_dir() and (path.stat().st_mode & 0o777) == 0o700


def test_chosen_artifacts_dir_must_not_hold_a_run(tmp_path):
    (tmp_path / "old" / "job_events").mkdir(parents=True)
    (tmp_path / "old").chmod(0o700)
    with pytest.raises(FalcoDeployError) as err:
        runner.artifacts_dir_for("install", tmp_path / "old")
    assert err.value.exit_code is ExitCode.USAGE


def test_an_existing_private_artifacts_dir_of_ours_is_used(tmp_path):
    (tmp_path / "mine").mkdir(mode=0o700)
    assert runner.artifacts_dir_for("install", tmp_path / "mine") == tmp_path / "mine"


@pytest.mark.parametrize("kind", ["link", "world-writable", "group-readable", "file"])
def test_an_unsafe_artifacts_dir_is_refused(tmp_path, kind):
    path = tmp_path / "arts"
    if kind == "link":
        (tmp_path / "elsewhere").mkdir(mode=0o700)
        path.symlink_to(tmp_path / "elsewhere")
    elif kind == "file":
        path.write_text("")
    else:
        path.mkdir()
        path.chmod(0o777 if kind == "world-writable" else 0o750)
    with pytest.raises(FalcoDeployError) as err:
        runner.artifacts_dir_for("install", path)
    assert err.value.exit_code is ExitCode.USAGE
    assert str(path) in err.value.message


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give the folder away")
def test_another_users_artifacts_dir_is_refused(tmp_path):
    path = tmp_path / "theirs"
    path.mkdir(mode=0o700)
    os.chown(path, 65534, 65534)
    with pytest.raises(FalcoDeployError, match="must be yours"):
        runner.artifacts_dir_for("install", path)


def test_old_runs_are_pruned_to_the_newest(tmp_path):
    runs = tmp_path / "runs"
    for day in range(1, 8):
        (runs / f"202611{day:02d}T120000Z-install").mkdir(parents=True)
    (runs / "notes").mkdir()  # not a run: never touched
    (runs / "20261101T000000Z-install-link").symlink_to(tmp_path)
    gone = runner.prune_runs(runs, keep=3)
    assert [p.name for p in gone] == [f"202611{d:02d}T120000Z-install" for d in range(1, 5)]
    assert sorted(p.name for p in runs.iterdir()) == [
        "20261101T000000Z-install-link", "20261105T120000Z-install",
        "20261106T120000Z-install", "20261107T120000Z-install", "notes"]
    assert runner.prune_runs(runs, keep=0) == []  # 0 keeps everything


@pytest.mark.parametrize(("value", "keep"), [("", 50), ("7", 7), ("0", 0)])
def test_run_retention_comes_from_the_environment(value, keep):
    assert runner.keep_runs({"FALCO_DEPLOY_KEEP_RUNS": value}) == keep


def test_a_bad_run_retention_is_a_usage_error():
    with pytest.raises(FalcoDeployError, match="FALCO_DEPLOY_KEEP_RUNS"):
        runner.keep_runs({"FALCO_DEPLOY_KEEP_RUNS": "many"})


def test_the_command_artifact_keeps_no_secret(tmp_path):
    (tmp_path / "command").write_text(json.dumps({
        "command": ["ansible-playbook", "-e", f"vault_password={VAULT_PASSWORD}", "-e",
                    json.dumps({"falco_package_repo_url": mirror_url("mirror.example/falco")}),
                    "/p/install.yml"],
        "cwd": "/p",
        "env": {"AWS_SECRET_ACCESS_KEY": CLOUD_SECRET, "CI_JOB_TOKEN": CI_TOKEN,
                "ANSIBLE_CONFIG": "/p/ansible.cfg", "PATH": "/usr/bin",
                "ANSIBLE_VAULT_PASSWORD_FILE": "/p/pass", "SOME_OTHER": "x"}}))
    runner.redact_artifacts(tmp_path, {"ANSIBLE_CONFIG": "/p/ansible.cfg"})
    text = (tmp_path / "command").read_text()
    for secret in (VAULT_PASSWORD, MIRROR_TOKEN, MIRROR_USER, CLOUD_SECRET, CI_TOKEN):
        assert secret not in text
    doc = json.loads(text)
    assert doc["env"]["ANSIBLE_CONFIG"] == "/p/ansible.cfg" and doc["env"]["PATH"] == "/usr/bin"
    assert "SOME_OTHER" not in doc["env"]
    assert doc["command"][-1] == "/p/install.yml"
    assert "https://********@mirror.example/falco" in doc["command"][4]
    assert (tmp_path / "command").stat().st_mode & 0o077 == 0


def _event(counter: int, stdout: str, **data) -> dict:
    return {"uuid": f"00000000-0000-0000-0000-{counter:012d}", "counter": counter,
            "event": "runner_on_failed", "stdout": stdout,
            "event_data": {"host": "h1", "task": "Update the package index", **data}}


def _write_event(folder: Path, event: dict, suffix: str = "") -> Path:
    """As ansible-runner writes one: job_events/<counter>-<uuid>.json, mode 0600."""
    path = folder / "job_events" / f"{event['counter']}-{event['uuid']}{suffix}.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(event))
    path.chmod(0o600)
    return path


def test_ansibles_output_and_events_in_the_artifacts_keep_no_secret_of_the_run(tmp_path):
    url = mirror_url("mirror.example/falco/deb")
    message = (f"E: Failed to fetch {url}/dists/stable 401; login {MIRROR_USER} password "
               f"{MIRROR_TOKEN}; fd_test_password={EXTRA_VAR_SECRET}")
    event = _event(7, f"\x1b[0;31mfatal: [h1]: FAILED! => {json.dumps({'msg': message})}\x1b[0m",
                   res={"msg": message, "cmd": ["curl", "-u", f"u:{EXTRA_VAR_SECRET}", url]})
    events = [_write_event(tmp_path, event), _write_event(tmp_path, event, "-partial")]
    (tmp_path / "stdout").write_text(f"TASK [Update the package index]\n{event['stdout']}\n")
    (tmp_path / "stdout").chmod(0o600)
    (tmp_path / "fact_cache").mkdir()
    (tmp_path / "fact_cache" / "h1").write_text(json.dumps({"repo": url}, indent=4))
    files = [*events, tmp_path / "stdout", tmp_path / "fact_cache" / "h1"]
    modes = {path: stat.S_IMODE(path.stat().st_mode) for path in files}
    known = redact.extra_vars_secrets([f"falco_package_repo_url={url}",
                                       f"fd_test_password={EXTRA_VAR_SECRET}"])
    runner.redact_artifacts(tmp_path, {}, redact.Redactor(known))

    for path in files:
        text = path.read_text()
        for secret in (MIRROR_TOKEN, EXTRA_VAR_SECRET):
            assert secret not in text, path
        assert stat.S_IMODE(path.stat().st_mode) == modes[path], path
    assert modes[events[0]] == 0o600
    doc = json.loads(events[0].read_text())  # still JSON, still the same event
    assert doc["event_data"]["res"]["msg"] == (
        f"E: Failed to fetch https://{MASK}@mirror.example/falco/deb/dists/stable 401; login "
        f"{MIRROR_USER} password {MASK}; fd_test_password={MASK}")
    assert doc["event_data"]["res"]["cmd"][2] == f"u:{MASK}"
    assert f"https://{MASK}@mirror.example" in (tmp_path / "stdout").read_text()
    assert json.loads((tmp_path / "fact_cache" / "h1").read_text()) == {
        "repo": f"https://{MASK}@mirror.example/falco/deb"}
    assert not [p for p in tmp_path.rglob(".*") if p.is_file()]  # no temporary file left


def _fake_ansible_runner(monkeypatch, tmp_path, events: list[dict], stdout: str,
                         raises: type[BaseException] | None = None) -> None:
    """ansible_runner.run as far as the artifacts go: stdout as ansible printed it, each event
    through the event handler and, when it says so, into job_events/."""

    class Done:
        status, rc = "failed", 2

    def fake_run(**kwargs):
        artifacts = Path(kwargs["artifact_dir"]) / kwargs["ident"]
        artifacts.mkdir(mode=0o700)
        (artifacts / "stdout").write_text(stdout)
        for event in events:
            if kwargs["event_handler"](event):
                _write_event(artifacts, event)
        if raises is not None:
            raise raises()
        return Done()

    fake = type(sys)("ansible_runner")
    fake.run = fake_run
    monkeypatch.setitem(sys.modules, "ansible_runner", fake)
    monkeypatch.setattr(runner, "_ansible_playbook_dir", lambda: tmp_path)


@pytest.mark.parametrize("raises", [None, KeyboardInterrupt])
def test_a_run_masks_its_secrets_in_events_and_artifacts(tmp_path, monkeypatch, raises):
    """What the progress lines, the summary and the envelope are made of (the events handed
    on) and what stays on disk, also when the run ends in an exception."""
    url = mirror_url("mirror.example/falco/deb")
    said = f"sudo: {BECOME_PASSWORD} rejected; {url}; {EXTRA_VAR_SECRET}"
    _fake_ansible_runner(monkeypatch, tmp_path, [_event(1, said, res={"msg": said})],
                         stdout=f"fatal: [h1]: FAILED! => {said}\n", raises=raises)
    run = _run(tmp_path, extra_vars=[json.dumps({"falco_package_repo_url": url}),
                                     f"fd_test_password={EXTRA_VAR_SECRET}"],
               passwords={"^BECOME password:": BECOME_PASSWORD})
    seen: list[dict] = []
    if raises is None:
        outcome = runner.run_playbook(run, seen.append)
        assert MIRROR_TOKEN not in outcome.stdout_tail()
    else:
        with pytest.raises(raises):
            runner.run_playbook(run, seen.append)
    handed_on = json.dumps(seen)
    files = {p: p.read_text() for p in run.artifacts_dir.rglob("*") if p.is_file()}
    assert len(files) == 2
    for text in [handed_on, *files.values()]:
        for secret in (BECOME_PASSWORD, MIRROR_TOKEN, EXTRA_VAR_SECRET):
            assert secret not in text
    assert seen[0]["event_data"]["res"]["msg"] == \
        f"sudo: {MASK} rejected; https://{MASK}@mirror.example/falco/deb; {MASK}"


def test_cmdline_quotes_extra_vars_like_a_shell(tmp_path):
    run = runner.PlaybookRun(
        project=Project(tmp_path, "option"), playbook=tmp_path / "p.yml", inventories=[],
        artifacts_dir=tmp_path / "a", check=True, diff=True,
        extra_vars=["falco_version=0.40.0", '{"falco_preflight_checks": ["btf"]}', "@/x y.yml"],
    )
    assert shlex.split(runner.build_cmdline(run)) == [
        "--check", "--diff", "-e", "falco_version=0.40.0",
        "-e", '{"falco_preflight_checks": ["btf"]}', "-e", "@/x y.yml",
    ]


def _run(tmp_path, **fields) -> runner.PlaybookRun:
    return runner.PlaybookRun(project=Project(tmp_path, "option"), playbook=tmp_path / "p.yml",
                              inventories=[tmp_path / "hosts.yml"], artifacts_dir=tmp_path / "a",
                              **fields)


def test_cmdline_carries_ansible_playbooks_own_options(tmp_path):
    run = _run(tmp_path, remote_user="deploy", private_key=tmp_path / "id ed25519",
               ask_become_pass=True, ask_vault_pass=True,
               vault_ids=["prod@prompt", f"dev@{tmp_path}/dev.pass"],
               vault_password_files=[tmp_path / "v.pass"], tags=["falco_package", "falco_driver"],
               skip_tags=["falco_rules"], passwords={"^BECOME password:": BECOME_PASSWORD})
    assert shlex.split(runner.build_cmdline(run)) == [
        "--user", "deploy", "--private-key", f"{tmp_path}/id ed25519", "--ask-become-pass",
        "--ask-vault-pass", "--vault-id", "prod@prompt", "--vault-id", f"dev@{tmp_path}/dev.pass",
        "--vault-password-file", f"{tmp_path}/v.pass", "--tags", "falco_package,falco_driver",
        "--skip-tags", "falco_rules",
    ]
    assert BECOME_PASSWORD not in runner.build_cmdline(run) and BECOME_PASSWORD not in repr(run)
    # --list-hosts cannot answer prompts: only the vault secrets that need none.
    assert runner.vault_args(run, interactive=False) == [
        "--vault-id", f"dev@{tmp_path}/dev.pass", "--vault-password-file", f"{tmp_path}/v.pass"]


def test_runner_gets_forks_limit_and_the_prompt_answers_in_memory(tmp_path, monkeypatch):
    seen: dict = {}

    class Done:
        status, rc = "successful", 0

    def fake_run(**kwargs):
        seen.update(kwargs)
        return Done()

    fake = type(sys)("ansible_runner")
    fake.run = fake_run
    monkeypatch.setitem(sys.modules, "ansible_runner", fake)
    monkeypatch.setattr(runner, "_ansible_playbook_dir", lambda: tmp_path)
    run = _run(tmp_path, limit="web*", forks=7, verbosity=2,
               passwords={"^BECOME password:": BECOME_PASSWORD})
    runner.run_playbook(run)
    assert (seen["limit"], seen["forks"], seen["verbosity"]) == ("web*", 7, 2)
    assert seen["passwords"] == {"^BECOME password:": BECOME_PASSWORD}
    assert seen["suppress_env_files"] is True  # ansible-runner writes no env/passwords file
    assert BECOME_PASSWORD not in str(seen["cmdline"])


def test_env_points_ansible_at_the_project(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    (project / "ansible.cfg").write_text("[defaults]\n")
    env = runner.build_env(Project(project, "option"), Path("/venv/bin"),
                           {"PATH": "/usr/bin", "XDG_STATE_HOME": str(tmp_path / "state")},
                           cwd=tmp_path)
    collections = env.pop("ANSIBLE_COLLECTIONS_PATH").split(":")
    assert env == {"PATH": "/venv/bin:/usr/bin", "ANSIBLE_CONFIG": str(project / "ansible.cfg"),
                   "ANSIBLE_INVENTORY_UNPARSED_FAILED": "True"}
    link = Path(collections[0]) / "ansible_collections" / "falco_deploy" / "falco"
    assert link.resolve() == project.resolve()


def test_env_without_any_ansible_cfg_leaves_config_alone(tmp_path):
    env = runner.build_env(Project(tmp_path, "option"), Path("/b"),
                           {"HOME": str(tmp_path / "home"), "XDG_STATE_HOME": str(tmp_path)},
                           cwd=tmp_path / "elsewhere")
    assert "ANSIBLE_CONFIG" not in env or env["ANSIBLE_CONFIG"] == "/etc/ansible/ansible.cfg"


def test_ansible_playbook_found_next_to_interpreter(tmp_path, monkeypatch):
    # A venv's scripts are not on PATH unless it is activated.
    script = tmp_path / "ansible-playbook"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    assert runner._ansible_playbook_dir() == tmp_path


def test_ansible_playbook_missing_is_environment_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    with pytest.raises(FalcoDeployError) as err:
        runner._ansible_playbook_dir()
    assert err.value.exit_code is ExitCode.ENVIRONMENT


def test_stdout_tail_strips_colour(tmp_path):
    (tmp_path / "stdout").write_text("\x1b[0;31mERROR! bad\x1b[0m\r\n\r\nlast line\r\n")
    outcome = runner.RunnerOutcome("failed", 4, tmp_path)
    assert outcome.stdout_tail() == "ERROR! bad\nlast line"
    assert runner.RunnerOutcome("failed", 1, tmp_path / "none").stdout_tail() == ""


def test_first_ctrl_c_forwards_sigint_then_second_forces():
    import signal
    import subprocess

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        stop = runner._Interrupt()
        stop.pid = child.pid
        assert stop() is False
        stop._on_sigint()
        assert child.wait(timeout=10) == -signal.SIGINT or child.returncode == 1
        assert stop.requested and stop() is False  # grace period: let ansible clean up
        stop._on_sigint()
        assert stop() is True
    finally:
        child.kill()


def test_ctrl_c_before_ansible_started_cancels_at_once():
    stop = runner._Interrupt()
    stop._on_sigint()
    assert stop() is True


def test_ctrl_c_when_ansible_is_gone_cancels_at_once():
    stop = runner._Interrupt()
    stop.pid = 2**22 + 12345  # no such process: forwarding fails
    stop._on_sigint()
    assert stop() is True


def test_ctrl_c_grace_runs_out(monkeypatch):
    import subprocess

    clock = [100.0]
    monkeypatch.setattr(runner.time, "monotonic", lambda: clock[0])
    # A child that ignores SIGINT, like an ansible-playbook stuck in a task.
    child = subprocess.Popen([sys.executable, "-c", "import signal, time; "
                              "signal.signal(signal.SIGINT, signal.SIG_IGN); time.sleep(30)"])
    try:
        stop = runner._Interrupt()
        stop.pid = child.pid
        stop._on_sigint()
        assert stop() is False
        clock[0] += runner._Interrupt.GRACE + 1
        assert stop() is True
    finally:
        child.kill()


@pytest.mark.parametrize("name", ["SIGTERM", "SIGHUP"])
def test_sigterm_and_sighup_stop_the_run_like_ctrl_c(name):
    import signal
    import subprocess

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        with runner._Interrupt() as stop:
            stop.pid = child.pid
            # The handler is installed for this signal too.
            assert signal.getsignal(getattr(signal, name)) == stop._on_sigint
            stop._on_sigint(getattr(signal, name))
            assert child.wait(timeout=10) == -signal.SIGINT  # forwarded as SIGINT
            assert stop.signum == getattr(signal, name)
            assert stop.requested and stop() is False
        assert signal.getsignal(getattr(signal, name)) != stop._on_sigint  # restored
    finally:
        child.kill()
