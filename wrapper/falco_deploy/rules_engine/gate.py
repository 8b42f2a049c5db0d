"""The offline gate of a rules release: the set validated as the hosts will load it, and the
warnings policy applied to it.

A release lands in one rules.d folder, which Falco reads in file-name order after its base rules
(the package's falco_rules.yaml). The gate loads the same files in the same order into one
engine; the set passes when nothing fails and, unless warnings are allowed, the set's own files
have no warning (the upstream base's warnings are not the operator's to fix). A file with no
YAML content at all fails too: Falco accepts it, but it is a truncated or misnamed file far more
often than an intention, and the hosts refuse it as well (falco_rules_host.is_empty_rules).

Used by the collection's falco_rules_bundle action (every playbook run, plain ansible-playbook
and AWX included) and by nothing else: `falco-deploy rules deploy` relies on that action too.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from . import MAX_FILE_BYTES
from .catalog import DATA_DIR
from .results import Report, report_from_falco_json


def upstream_rules_file(falco_version: str) -> str:
    """The falco_rules.yaml the Falco package of that version installs (a copy made by
    scripts/gen_rules_catalog.py); ValueError for a version the engine does not know."""
    path = DATA_DIR / f"falco_rules-{falco_version}.yaml"
    if not path.is_file():
        raise ValueError(f"no packaged base rules for Falco {falco_version!r} ({path})")
    return str(path)


@dataclass
class Gate:
    """What was loaded and what the policy made of it."""

    report: Report
    base: list[str]
    files: list[str]  # the set, in host load order
    falco_version: str
    allow_warnings: bool
    empty_files: list[str] = field(default_factory=list)

    @property
    def own_warnings(self) -> int:
        base = set(self.base)
        return sum(len(r.warnings) for r in self.report.results if r.name not in base)

    @property
    def ok(self) -> bool:
        return self.report.ok and not self.empty_files and (
            self.allow_warnings or self.own_warnings == 0)

    @property
    def verdict(self) -> str:
        if not self.report.ok:
            return "the rules set is invalid"
        if self.empty_files:
            return ("the rules set has an empty rules file (no rules, macros or lists): "
                    + ", ".join(self.empty_files))
        if not self.ok:
            return (f"the rules set has {self.own_warnings} warning(s) and warnings fail "
                    "(allow them with --allow-warnings, or falco_rules_fail_on_warnings: false)")
        return "ok"

    @classmethod
    def from_dict(cls, doc: dict) -> Gate:
        """The gate again from its to_dict(), e.g. as a playbook run reported it."""
        return cls(report_from_falco_json(doc), list(doc.get("base") or []),
                   list(doc.get("files") or []), str(doc.get("falco_version") or ""),
                   bool(doc.get("allow_warnings")), list(doc.get("empty_files") or []))

    def to_dict(self) -> dict:
        return {"ok": self.ok, "falco_version": self.falco_version, "base": self.base,
                "files": self.files, "allow_warnings": self.allow_warnings,
                "empty_files": self.empty_files, **self.report.to_json()}

    def to_text(self) -> str:
        """The validator's own text: the per-file summary, plus warnings when they count."""
        text = self.report.to_text()
        for name in self.empty_files:
            text += f"\n{name}: empty rules file (no rules, macros or lists)"
        if not self.allow_warnings and self.report.ok and self.own_warnings:
            text += "\n" + self.report.warnings_text().rstrip("\n")
        return text


def check(files: list[str], base: list[str] | None, falco_version: str,
          allow_warnings: bool) -> Gate:
    """Validate `files` (already in load order) after `base`; None or [] for base means the
    packaged upstream rules of `falco_version`. ValueError for an unknown version."""
    from . import validate  # the package imports this module's siblings, not the other way

    base = list(base) if base else [upstream_rules_file(falco_version)]
    report = validate(list(files), base, falco_version)
    empty = [f for f in files if _no_content(f)]
    return Gate(report, base, list(files), falco_version, allow_warnings, empty)


def _no_content(path: str) -> bool:
    """Only blank lines, comments and document markers (unreadable files are the validator's
    to report)."""
    try:
        with open(path, "rb") as handle:
            text = handle.read(MAX_FILE_BYTES + 1).decode("utf-8", "replace")
    except OSError:
        return False
    return all(not line.strip() or line.strip().startswith("#") or line.strip() in ("---", "...")
               for line in text.splitlines())
