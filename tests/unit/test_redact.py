"""The one redaction helper (falco_deploy/redact.py) for messages and artifacts."""

from __future__ import annotations

from falco_deploy.redact import MASK, redact_env, redact_text, redact_value


def test_url_credentials_are_masked_and_the_rest_kept():
    text = "E: Failed to fetch https://bob:t0k3n@mirror.example/falco/deb/dists/stable 401"
    assert redact_text(text) == ("E: Failed to fetch https://********@mirror.example/falco/deb"
                                 "/dists/stable 401")
    assert redact_text("deb [signed-by=/k.asc] https://user@m.example/d stable main") == \
        "deb [signed-by=/k.asc] https://********@m.example/d stable main"
    assert redact_text("file:/mnt/falco-repo and https://download.falco.org/x") == \
        "file:/mnt/falco-repo and https://download.falco.org/x"


def test_secret_named_pairs_are_masked():
    assert redact_text("vault_password=hunter2 other=x") == f"vault_password={MASK} other=x"
    assert redact_text('{"api_token": "abc", "name": "n"}') == \
        f'{{"api_token": "{MASK}", "name": "n"}}'
    assert redact_text("AUTH_HEADER=Bearer") == f"AUTH_HEADER={MASK}"
    assert redact_text("keyring: /etc/apt/keyrings/x.asc") == f"keyring: {MASK}"  # over-masks


def test_environment_keeps_only_what_explains_a_run():
    env = {"ANSIBLE_CONFIG": "/p/a.cfg", "ANSIBLE_VAULT_PASSWORD_FILE": "/p/pass",
           "GITHUB_TOKEN": "ghp_x", "PATH": "/bin", "LANG": "C", "OURS": "1"}
    assert redact_env(env, keep={"OURS"}) == {
        "ANSIBLE_CONFIG": "/p/a.cfg", "ANSIBLE_VAULT_PASSWORD_FILE": MASK, "PATH": "/bin",
        "OURS": "1"}


def test_values_are_walked():
    value = {"repo": "https://u:p@m/x", "db_password": "pw", "list": [{"token": "t"}],
             "empty_secret": ""}
    assert redact_value(value) == {"repo": "https://********@m/x", "db_password": MASK,
                                   "list": [{"token": MASK}], "empty_secret": ""}
