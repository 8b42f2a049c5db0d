"""Redaction of secrets in what falco-deploy shows or keeps: one helper for messages and artifacts.

What counts as a secret: the user:password part of a URL (a credentialed mirror
https://user:token@mirror/...), and the value of any variable whose name says it holds one
(TOKEN, SECRET, PASSWORD, PASSWD, KEY, CREDENTIAL, AUTH, COOKIE, SESSION). In ansible's own
output and events (Redactor) the values are the ones the run was given: what -e set such
variables to, URL passwords, passwords typed at the prompts.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

MASK = "********"
# scheme://user[:password]@host: keep the scheme and host, mask what is in between.
_URL_USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<userinfo>[^/\s@'\"]+)@")
_SECRET_NAME = re.compile(r"token|secret|passw(or)?d|passwd|key|credential|auth|cookie|session",
                          re.IGNORECASE)
# name=value and "name": "value" pairs whose name says secret (extra-vars, env dumps).
_PAIR = re.compile(r"""(?P<name>[A-Za-z_][A-Za-z0-9_.-]*)(?P<sep>["']?\s*[=:]\s*)(?P<q>["']?)"""
                   r"""(?P<value>[^"'\s,}]*)(?P=q)""")


def is_secret_name(name: str) -> bool:
    return bool(_SECRET_NAME.search(name))


def redact_text(text: str) -> str:
    """URL credentials and the values of secret-named pairs masked."""
    text = _URL_USERINFO.sub(lambda m: f"{m.group('scheme')}{MASK}@", text)

    def pair(m: re.Match[str]) -> str:
        if not is_secret_name(m.group("name")) or not m.group("value"):
            return m.group(0)
        return f"{m.group('name')}{m.group('sep')}{m.group('q')}{MASK}{m.group('q')}"

    return _PAIR.sub(pair, text)


def redact_env(env: Mapping[str, str], keep: frozenset[str] | set[str] = frozenset()) -> dict:
    """Only the variables that explain a run (those in `keep`, ANSIBLE_*, PATH), secrets
    masked: an operator's shell environment (cloud tokens, CI secrets) stays out of artifacts."""
    out = {}
    for name, value in env.items():
        if name in keep or name.startswith("ANSIBLE_") or name in ("PATH", "HOME"):
            out[name] = MASK if is_secret_name(name) else redact_text(str(value))
    return out


def redact_value(value: Any) -> Any:
    """A JSON-like value with secret-named keys masked and URL credentials removed."""
    if isinstance(value, dict):
        return {k: (MASK if is_secret_name(str(k)) and v not in ("", None)
                    else redact_value(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [redact_value(v) for v in value]
    if isinstance(value, str):
        return redact_text(value)
    return value


# A known secret shorter than this is not searched for: masking every "abc" of ansible's output
# would leave it unreadable. Nor are these words, which a secret-named flag may be set to.
MIN_KNOWN_LENGTH = 4
_NOT_SECRETS = frozenset({"true", "false", "none", "null"})


def url_passwords(text: str) -> set[str]:
    """The passwords of credentialed URLs in `text`, as written and percent-decoded."""
    from urllib.parse import unquote

    found = set()
    for m in _URL_USERINFO.finditer(text):
        _, colon, password = m.group("userinfo").partition(":")
        if colon and password:
            found.update({password, unquote(password)})
    return found


def extra_vars_secrets(values: Iterable[str]) -> set[str]:
    """The secrets in ansible-playbook -e values as ansible parses them (key=value pairs, inline
    YAML/JSON): values of secret-named variables, at any depth, and URL passwords. An @file is
    not read: what it holds stays unknown."""
    import shlex

    import yaml

    found: set[str] = set()

    def walk(value: Any, secret: bool) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                walk(item, secret or is_secret_name(str(key)))
        elif isinstance(value, list):
            for item in value:
                walk(item, secret)
        elif isinstance(value, str):
            found.update(url_passwords(value))
            if secret:
                found.add(value)
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and secret:
            found.add(str(value))

    for raw in values:
        if raw.startswith("@"):
            continue
        # ansible-playbook's own rule (ansible/utils/vars.py, load_extra_vars): a value that
        # opens like YAML is YAML, anything else key=value pairs.
        if raw.lstrip()[:1] in ("{", "["):
            try:
                walk(yaml.safe_load(raw), False)
            except yaml.YAMLError:
                found.update(url_passwords(raw))
            continue
        try:
            words = shlex.split(raw)
        except ValueError:
            words = raw.split()
        for word in words:
            name, equals, value = word.partition("=")
            if equals:
                walk({name: value}, False)
            else:
                found.update(url_passwords(word))
    return found


class Redactor:
    """Masks URL credentials and the secrets a run was given (-e values, prompt answers) in what
    ansible wrote: its output and its events. Unlike redact_text it does not mask by name, which
    would take every "keyring" path out of ansible's own report."""

    def __init__(self, known: Iterable[str] = ()) -> None:
        import json

        forms: set[str] = set()
        for secret in known:
            if len(secret) < MIN_KNOWN_LENGTH or secret.lower() in _NOT_SECRETS:
                continue
            # As given, and as it reads inside JSON text (ansible prints results as JSON).
            forms.update({secret, json.dumps(secret)[1:-1],
                          json.dumps(secret, ensure_ascii=False)[1:-1]})
        # Longest first, so a secret that contains another is masked whole.
        self._known = re.compile("|".join(
            re.escape(f) for f in sorted(forms, key=len, reverse=True))) if forms else None

    def text(self, text: str) -> str:
        text = _URL_USERINFO.sub(lambda m: f"{m.group('scheme')}{MASK}@", text)
        return self._known.sub(MASK, text) if self._known is not None else text

    def value(self, value: Any) -> Any:
        """A JSON-like value with every string in it (keys too) redacted; the shape is kept."""
        if isinstance(value, dict):
            return {self.text(k) if isinstance(k, str) else k: self.value(v)
                    for k, v in value.items()}
        if isinstance(value, list):
            return [self.value(v) for v in value]
        if isinstance(value, str):
            return self.text(value)
        return value

    def file(self, path: Path) -> bool:
        """Redact one artifact file in place: a JSON document inside its strings (so it still
        loads), anything else as text. Rewritten only when something was masked, through a new
        file renamed over the old one, with the old one's mode and owner; a link is left
        alone. True when the file changed."""
        import contextlib
        import json
        import os
        import stat
        import tempfile

        try:
            info = os.lstat(path)
        except OSError:
            return False
        if not stat.S_ISREG(info.st_mode):
            return False
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            return False
        with os.fdopen(fd, "rb") as handle:
            data = handle.read()
        text = data.decode("utf-8", errors="surrogateescape")
        try:
            doc = json.loads(text) if text.lstrip()[:1] in ("{", "[") else None
        except ValueError:
            doc = None
        if doc is not None:
            # Never as text: a mask laid over an escape sequence would break the document.
            clean = self.value(doc)
            new = json.dumps(clean) if clean != doc else None
        else:
            redacted = self.text(text)
            new = redacted if redacted != text else None
        if new is None:
            return False
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(new.encode("utf-8", errors="surrogateescape"))
                os.fchmod(handle.fileno(), stat.S_IMODE(info.st_mode))
                if (info.st_uid, info.st_gid) != (os.getuid(), os.getgid()):
                    os.fchown(handle.fileno(), info.st_uid, info.st_gid)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        return True
