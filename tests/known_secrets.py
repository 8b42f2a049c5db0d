"""Every secret the test suite hands to falco-deploy, ansible or a rules folder, in one place.

Tests take their secrets from here, and at the end of each session tests/conftest.py greps every
artifact the session's runs left behind for each one of them (tests/artifact_scan.py): a value
that is not listed here is a value nobody looks for.

Each is distinctive enough that finding it means it leaked, never that it occurs by chance.
"""

from __future__ import annotations

from pathlib import Path

# The credentialed package mirror: the password goes into the root-only apt auth file only.
MIRROR_USER = "fd-user"
MIRROR_TOKEN = "fd-pass-0815"


def mirror_url(location: str) -> str:
    """https://user:token@location, e.g. mirror_url("127.0.0.1:9/falco/deb")."""
    return f"https://{MIRROR_USER}:{MIRROR_TOKEN}@{location}"


# A vault password: in a --vault-password-file (or the operator's vault_password_file), or
# typed at --ask-vault-pass.
VAULT_PASSWORD = "fd-test-password"
# Typed at the prompts of -K and --vault-id LABEL@prompt.
BECOME_PASSWORD = "fd-become-secret"
VAULT_ID_PASSWORD = "fd-vault-id-secret"
# The value of a secret-named -e variable, and of a secret-named variable of the operator's
# environment.
EXTRA_VAR_SECRET = "fd-secret-in-extra-vars"
ENV_SECRET = "fd-secret-in-the-environment"
# More of the operator's environment (cloud and CI credentials).
CLOUD_SECRET = "fd-cloud-secret-AKIA0815"
CI_TOKEN = "fd-ci-job-token-0815"
# What a file holds that a rules folder links to: such a link must never be followed.
LINKED_FILE_SECRET = "FD-SECRET-TOKEN-0123456789"

# The SIEM credentials of the Molecule scenario `forwarding` (molecule/forwarding/host_vars):
# an Elasticsearch password (Falcosidekick's config, rsyslog's omelasticsearch) and the token in
# the http transport's collector URL.
SIEM_PASSWORD = "fd-siem-password-4711"
COLLECTOR_TOKEN = "fd-collector-token-4711"

SECRETS = (MIRROR_TOKEN, VAULT_PASSWORD, BECOME_PASSWORD, VAULT_ID_PASSWORD, EXTRA_VAR_SECRET,
           ENV_SECRET, CLOUD_SECRET, CI_TOKEN, LINKED_FILE_SECRET, SIEM_PASSWORD, COLLECTOR_TOKEN)

# Files a test itself wrote a secret into, as the input of a run (a vault password file, the
# target of a link): the session's scan skips exactly these paths.
INPUT_FILES: set[Path] = set()


def write_input(path: Path, text: str) -> Path:
    """Write a test's input file that holds a secret, and tell the session's scan about it."""
    path.write_text(text)
    INPUT_FILES.add(path.resolve())
    return path
