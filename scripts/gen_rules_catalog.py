#!/usr/bin/env python3
"""Generate the rules engine's field and event catalogues from the Falco reference corpus.

Reads falco-fields/supported-{fields,events}-<version>.md of ../shared/corpus (or
$FALCO_DEPLOY_SHARED/corpus) (what
`falco --list=syscall --markdown` and `falco --list-events` print) and writes
wrapper/falco_deploy/rules_engine/data/catalog-<version>.json. The output is committed; the
test suite regenerates it in memory and fails when the committed file is stale.

It also copies the upstream base rules each Falco version ships (falcosecurity/rules
rules/falco_rules.yaml: `main` for 0.44, tag falco-rules-3.2.0 for 0.40) to
data/falco_rules-<version>.yaml, byte for byte, with a NOTICE beside them naming their origin
and licence (Apache-2.0, whose text is the project's own LICENSE: --check also checks that it is
upstream's LICENSE byte for byte): `falco-deploy rules deploy` validates a set after them.

Usage: gen_rules_catalog.py [--corpus DIR] [--out DIR] [--check]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CORPUS = (Path(os.environ.get("FALCO_DEPLOY_SHARED")
                       or Path(__file__).resolve().parents[1].parent / "shared")
                  / "corpus" / "falco-fields")
DEFAULT_OUT = ROOT / "wrapper" / "falco_deploy" / "rules_engine" / "data"
# Upstream rules per Falco version, relative to the corpus root (the parent of falco-fields/).
BASE_RULES = {
    "0.44": "falcosecurity-rules/main/falco_rules.yaml",
    "0.40": "falcosecurity-rules/falco-rules-3.2.0/falco_rules.yaml",
}
RULES_LICENSE = "falcosecurity-rules/LICENSE"
PROJECT_LICENSE = ROOT / "LICENSE"
NOTICE = """\
falco_rules-0.44.yaml and falco_rules-0.40.yaml are unmodified copies of rules/falco_rules.yaml
of falcosecurity/rules (https://github.com/falcosecurity/rules; main as of commit c72713ee for
Falco >= 0.41, tag falco-rules-3.2.0 for Falco 0.38-0.40), Copyright The Falco Authors,
licensed under the Apache License, Version 2.0. The licence text is the LICENSE file of this
distribution (falco-deploy's own licence, the same text).
"""
VERSIONS = ("0.44", "0.40")
# Fields Falco still accepts but no longer lists (--list hides deprecated fields): the
# deprecated_fields table of falcosecurity/falco userspace/engine/falco_load_result.cpp. Their
# type and description are taken from the oldest listing that still has them.
DEPRECATED_FIELDS = ("evt.dir", "evt.latency", "evt.latency.s", "evt.latency.ns",
                     "evt.latency.human", "evt.wait_latency")

_FIELD_ROW = re.compile(r"^`([^`]+)`\s*\|\s*([A-Z0-9_()]+)\s*\|\s*(.*)$")
_CLASS_HDR = re.compile(r"^#{2,3} Field Class: (.+?)\s*$")
# 0.44 events: "Yes | `>` | `open` | params"; 0.40 events: "> open(params)"
_EVENT_ROW_TABLE = re.compile(r"^(?:Yes|No)\s*\|\s*`([<>])`\s*\|\s*`([A-Za-z0-9_]+)`")
_EVENT_ROW_PLAIN = re.compile(r"^([<>]) ([A-Za-z0-9_]+)\(")


def parse_fields(text: str) -> dict[str, list]:
    """name -> [type, class, plugin, dot_arg].

    dot_arg: the description shows the field taking a `.name` suffix (evt.arg.fd,
    container.label.foo, evt.type.is.open), which libsinsp resolves to that field with an argument.
    """
    fields: dict[str, list] = {}
    cls, plugin = "", ""
    for line in text.splitlines():
        m = _CLASS_HDR.match(line)
        if m:
            cls = m.group(1)
            plugin = ""
            pm = re.match(r"^(\S+) \(plugin\)$", cls)
            if pm:
                cls = pm.group(1)
                plugin = pm.group(1)
            continue
        m = _FIELD_ROW.match(line)
        if not m:
            continue
        name, ftype, desc = m.group(1), m.group(2), m.group(3)
        dot_arg = re.search(re.escape(name) + r"\.[A-Za-z_]", desc) is not None
        fields.setdefault(name, [ftype, cls, plugin, dot_arg])
    return fields


def parse_events(text: str) -> dict[str, dict[str, int]]:
    """category -> {event name: number of (direction) entries}."""
    events: dict[str, dict[str, int]] = {}
    cat = ""
    for line in text.splitlines():
        if line.startswith("## "):
            cat = line[3:].strip()
            continue
        m = _EVENT_ROW_TABLE.match(line) or _EVENT_ROW_PLAIN.match(line)
        if m:
            bucket = events.setdefault(cat, {})
            bucket[m.group(2)] = bucket.get(m.group(2), 0) + 1
    return events


_EVENT_PARAM = re.compile(r"([A-Z][A-Z0-9_]*) \*\*([A-Za-z0-9_]+)\*\*")


def parse_event_params(text: str) -> dict[str, str]:
    """event parameter name -> type of its first occurrence, in event table order.

    libsinsp resolves `evt.arg.X` / `evt.rawarg.X` with
    sinsp_utils::find_longest_matching_evt_param() (the longest parameter name that prefixes X,
    first found in the event table), and
    `evt.rawarg.X` takes that parameter's type.
    """
    params: dict[str, str] = {}
    for line in text.splitlines():
        if _EVENT_ROW_TABLE.match(line) or _EVENT_ROW_PLAIN.match(line):
            for ptype, name in _EVENT_PARAM.findall(line):
                params.setdefault(name, ptype)
    return params


def build(corpus: Path, version: str) -> dict:
    fields_md = (corpus / f"supported-fields-{version}.md").read_text(encoding="utf-8")
    events_md = (corpus / f"supported-events-{version}.md").read_text(encoding="utf-8")
    schema = re.search(r"Schema Version\*?:?\s*([0-9.]+)", events_md)
    fields = parse_fields(fields_md)
    deprecated = []
    oldest = min(VERSIONS, key=lambda v: tuple(int(x) for x in v.split(".")))
    old_fields = parse_fields(
        (corpus / f"supported-fields-{oldest}.md").read_text(encoding="utf-8"))
    for name in DEPRECATED_FIELDS:
        if name not in fields and name in old_fields:
            fields[name] = old_fields[name]
            deprecated.append(name)
    return {
        "generated_from": [f"supported-fields-{version}.md", f"supported-events-{version}.md"],
        "falco_version": version,
        "event_schema": schema.group(1) if schema else "",
        "deprecated_fields": deprecated,
        "fields": fields,
        "events": parse_events(events_md),
        "event_params": parse_event_params(events_md),
    }


def render(data: dict) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":")) + "\n"


def base_rules_files(corpus: Path) -> dict[str, bytes]:
    """Output file name -> bytes, for the upstream base rules and the notice of their origin."""
    root = corpus.parent
    out = {f"falco_rules-{v}.yaml": (root / rel).read_bytes() for v, rel in BASE_RULES.items()}
    text = out["falco_rules-0.44.yaml"].decode("utf-8")
    assert "Licensed under the Apache License, Version 2.0" in text, "licence header missing"
    out["NOTICE"] = NOTICE.encode("utf-8")
    return out


def licence_is_upstreams(corpus: Path) -> bool:
    """The notice points at the project's LICENSE: it must be the text upstream ships."""
    return PROJECT_LICENSE.read_bytes() == (corpus.parent / RULES_LICENSE).read_bytes()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--check", action="store_true", help="exit 1 when the files are stale")
    args = ap.parse_args(argv)
    stale = []
    for version in VERSIONS:
        text = render(build(args.corpus, version))
        target = args.out / f"catalog-{version}.json"
        if args.check:
            if not target.exists() or target.read_text(encoding="utf-8") != text:
                stale.append(str(target))
            continue
        args.out.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        print(f"wrote {target}")
    for name, data in base_rules_files(args.corpus).items():
        target = args.out / name
        if args.check:
            if not target.exists() or target.read_bytes() != data:
                stale.append(str(target))
            continue
        target.write_bytes(data)
        print(f"wrote {target}")
    if not licence_is_upstreams(args.corpus):
        stale.append(f"{PROJECT_LICENSE} (not the Apache-2.0 text of {RULES_LICENSE})")
    if stale:
        print("stale: " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
