"""Redaction of secrets in what falco-deploy shows or keeps: one helper for messages and artifacts.

What counts as a secret: the user:password part of a URL (a credentialed mirror
https://user:token@mirror/...), and the value of any variable whose name says it holds one
(TOKEN, SECRET, PASSWORD, PASSWD, KEY, CREDENTIAL, AUTH, COOKIE, SESSION).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
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
