"""The one redaction helper (falco_deploy/redact.py) for messages and artifacts."""

from __future__ import annotations

import json
import os

from falco_deploy.redact import (
    MASK,
    Redactor,
    extra_vars_secrets,
    redact_env,
    redact_text,
    redact_value,
)
from known_secrets import (
    CI_TOKEN,
    EXTRA_VAR_SECRET,
    MIRROR_TOKEN,
    MIRROR_USER,
    VAULT_PASSWORD,
    mirror_url,
    write_input,
)


def test_url_credentials_are_masked_and_the_rest_kept():
    text = (f"E: Failed to fetch {mirror_url('mirror.example/falco/deb')}/dists/stable 401")
    assert redact_text(text) == ("E: Failed to fetch https://********@mirror.example/falco/deb"
                                 "/dists/stable 401")
    assert redact_text("deb [signed-by=/k.asc] https://user@m.example/d stable main") == \
        "deb [signed-by=/k.asc] https://********@m.example/d stable main"
    assert redact_text("file:/mnt/falco-repo and https://download.falco.org/x") == \
        "file:/mnt/falco-repo and https://download.falco.org/x"


def test_secret_named_pairs_are_masked():
    assert redact_text(f"vault_password={VAULT_PASSWORD} other=x") == \
        f"vault_password={MASK} other=x"
    assert redact_text(f'{{"api_token": "{CI_TOKEN}", "name": "n"}}') == \
        f'{{"api_token": "{MASK}", "name": "n"}}'
    assert redact_text("AUTH_HEADER=Bearer") == f"AUTH_HEADER={MASK}"
    assert redact_text("keyring: /etc/apt/keyrings/x.asc") == f"keyring: {MASK}"  # over-masks


def test_environment_keeps_only_what_explains_a_run():
    env = {"ANSIBLE_CONFIG": "/p/a.cfg", "ANSIBLE_VAULT_PASSWORD_FILE": "/p/pass",
           "GITHUB_TOKEN": CI_TOKEN, "PATH": "/bin", "LANG": "C", "OURS": "1"}
    assert redact_env(env, keep={"OURS"}) == {
        "ANSIBLE_CONFIG": "/p/a.cfg", "ANSIBLE_VAULT_PASSWORD_FILE": MASK, "PATH": "/bin",
        "OURS": "1"}


def test_values_are_walked():
    value = {"repo": mirror_url("m/x"), "db_password": VAULT_PASSWORD,
             "list": [{"token": CI_TOKEN}], "empty_secret": ""}
    assert redact_value(value) == {"repo": "https://********@m/x", "db_password": MASK,
                                   "list": [{"token": MASK}], "empty_secret": ""}


# --- what a run was given, masked in ansible's own output and events -------------------------

def test_the_secrets_of_extra_vars_are_found_as_ansible_parses_them():
    assert extra_vars_secrets([
        f"fd_test_password={EXTRA_VAR_SECRET} falco_version=0.44.0",
        f"falco_package_repo_url={mirror_url('m.example/deb')}",
        json.dumps({"outer": {"api_token": CI_TOKEN, "deep": {"db_password": [VAULT_PASSWORD]}},
                    "pin": 4711, "falco_package_key_url": "https://m.example/k.asc"}),
        "{db_password: 'yaml value', port: 8080}",
        "ansible_become_password='with spaces'",
        "@/nowhere/secrets.yml",  # not read: its values stay unknown
    ]) == {EXTRA_VAR_SECRET, MIRROR_TOKEN, CI_TOKEN, VAULT_PASSWORD, "yaml value",
           "with spaces", "https://m.example/k.asc"}
    # Percent-encoded in the URL, as the password the host gets.
    assert extra_vars_secrets(["u=https://bob:p%40ss-word@m.example/"]) == \
        {"p%40ss-word", "p@ss-word"}
    assert extra_vars_secrets(['{"not": yaml: ['])  == set()


def test_known_secrets_and_url_credentials_are_masked_and_nothing_by_name():
    quoted = 'pa"ss\\word'  # printed inside ansible's JSON as pa\"ss\\word
    redactor = Redactor({EXTRA_VAR_SECRET, quoted, "abc", "true"})
    as_json = json.dumps({"pw": quoted})
    text = (f"{EXTRA_VAR_SECRET} {mirror_url('m/x')} {as_json} "
            "abc true keyring: /etc/apt/keyrings/x.asc")
    assert redactor.text(text) == (f'{MASK} https://{MASK}@m/x {{"pw": "{MASK}"}} abc true '
                                   "keyring: /etc/apt/keyrings/x.asc")
    # Longest first: a secret that holds another is masked whole.
    assert Redactor({"fd-long-secret", "long"}).text("x fd-long-secret y long") == \
        f"x {MASK} y {MASK}"
    assert Redactor().text(f"login {MIRROR_USER} {mirror_url('m/x')}") == \
        f"login {MIRROR_USER} https://{MASK}@m/x"


def test_a_json_artifact_is_redacted_inside_its_strings_and_still_loads(tmp_path):
    path = tmp_path / "1-event.json"
    event = {"stdout": f'ok: [h1] => {{"msg": "{EXTRA_VAR_SECRET}"}}',
             "event_data": {"res": {"cmd": ["x", mirror_url("m/x")], EXTRA_VAR_SECRET: 1}},
             "counter": 1}
    path.write_text(json.dumps(event))
    path.chmod(0o600)
    assert Redactor({EXTRA_VAR_SECRET}).file(path)
    assert json.loads(path.read_text()) == {
        "stdout": f'ok: [h1] => {{"msg": "{MASK}"}}',
        "event_data": {"res": {"cmd": ["x", f"https://{MASK}@m/x"], MASK: 1}}, "counter": 1}
    assert path.stat().st_mode & 0o777 == 0o600
    assert os.listdir(tmp_path) == ["1-event.json"]


def test_a_text_artifact_keeps_every_other_byte(tmp_path):
    path = tmp_path / "stdout"
    path.write_bytes(b"\x1b[0;31m\xff\xfe " + EXTRA_VAR_SECRET.encode() + b" \xc3\xa9\r\n")
    assert Redactor({EXTRA_VAR_SECRET}).file(path)
    assert path.read_bytes() == b"\x1b[0;31m\xff\xfe " + MASK.encode() + b" \xc3\xa9\r\n"


def test_a_file_without_secrets_is_not_rewritten_and_a_link_not_followed(tmp_path):
    clean = tmp_path / "stdout"
    clean.write_text("PLAY RECAP\n")
    inode = clean.stat().st_ino
    assert not Redactor({EXTRA_VAR_SECRET}).file(clean)
    assert clean.stat().st_ino == inode
    target = write_input(tmp_path / "elsewhere", EXTRA_VAR_SECRET)
    link = tmp_path / "link"
    link.symlink_to(target)
    assert not Redactor({EXTRA_VAR_SECRET}).file(link)
    assert target.read_text() == EXTRA_VAR_SECRET
