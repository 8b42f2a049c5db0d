"""Rule test fixtures: events that must fire a named rule, or must fire none of ours.

A fixture file is YAML:

    events: events/falco-0.40-purple.jsonl   # optional: the default file `from` reads
    with_rules: [tuning/dind-host.yaml]       # optional: rules files loaded after the rules
                                              # under test, for every fixture of this file
    fixtures:
      - name: release_agent/notify_on_release only
        technique: release_agent              # optional label, for reports
        from: {where: {evt.time: 1796165942312345678}}  # events of a Falco JSON file
        fires: Container Escape via cgroup release_agent Write
      - name: benign/apt-get --version
        from: {file: events/other.jsonl, where: {container.name: purple-x-b2_apt_get_version}}
        quiet: true
      - name: a hand-written event
        event: {evt.type: setns, evt.rawres: 0, container.id: 0123456789ab, ...}
        quiet: true
      - name: events of an strace recording
        strace: {file: traces/nsenter.strace, syscalls: [setns],
                 context: {container.id: 0123456789ab, container.privileged: true},
                 match: {evt.rawres: 0}, unless: {fd.name: /proc/1/ns/net}}
        fires: Namespace Change via setns to Host

Each fixture names its events one way: `event` (one event, field by field), `from` (every line
of a Falco JSON file - `{"output_fields": {...}}` per line, as Falco writes with json_output -
whose fields equal all of `where`; a list there means one of its values) or `strace` (the exit
of every call of `syscalls` in an `strace -f -yy` recording, see strace_events.py;
`match`/`unless` keep or drop events by field values; `context` may name an entry of the file's
`contexts`). `assume` adds fields an event lacks; it needs `because`, which the report shows.
Every selected event must meet the expectation:
- `fires: RULE` (or a list): each named rule matches the event; the rule may be ours or
  upstream's (with `rule_matching: first` the earlier rule takes the event, and the report says
  which rule would alert);
- `quiet: true`: none of the rules under test matches.
A check that needs a field the event does not have is "unknown" and fails the fixture with the
fields it lacked: a fixture never passes for want of data.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

import yaml

from .evaluate import RuleSet
from .strace_events import StraceError, events_from_strace, selected

FIXTURE_KEYS = frozenset(("name", "technique", "variant", "event", "from", "strace", "assume",
                          "because", "fires", "quiet", "source"))
FILE_KEYS = frozenset(("events", "with_rules", "contexts", "fixtures"))


class FixtureError(Exception):
    """A fixture file that cannot be used: the message names the file and the fixture."""


@dataclass
class Fixture:
    name: str
    path: str  # the fixture file
    events: list[dict]
    fires: list[str]
    quiet: bool
    technique: str = ""
    because: str = ""
    assumed: list[str] = field(default_factory=list)
    with_rules: list[str] = field(default_factory=list)


@dataclass
class EventResult:
    ok: bool
    problems: list[str]
    first: str  # the first rule in load order that matches ("" when none does)
    undecided: list[str]  # rules before `first` the event cannot decide (fields missing)


@dataclass
class FixtureResult:
    fixture: Fixture
    events: list[EventResult]

    @property
    def ok(self) -> bool:
        return bool(self.events) and all(e.ok for e in self.events)


def _read_jsonl(path: str) -> list[dict]:
    out = []
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            line = line.strip()
            if not line:
                continue
            try:
                doc = json.loads(line)
            except ValueError as e:
                raise FixtureError(f"{path}:{n}: not JSON: {e}") from None
            fields = doc.get("output_fields") if isinstance(doc, dict) else None
            if not isinstance(fields, dict):
                raise FixtureError(f"{path}:{n}: no output_fields object")
            out.append(fields)
    return out


def load_file(path: str) -> list[Fixture]:
    """The fixtures of one file; FixtureError for anything malformed."""
    try:
        with open(path, encoding="utf-8") as fh:
            doc = yaml.safe_load(fh)
    except OSError as e:
        raise FixtureError(f"{path}: cannot be read: {e.strerror or e}") from None
    except yaml.YAMLError as e:
        raise FixtureError(f"{path}: not YAML: {e}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("fixtures"), list):
        raise FixtureError(f"{path}: expected a mapping with a `fixtures` list")
    unknown = set(doc) - FILE_KEYS
    if unknown:
        raise FixtureError(f"{path}: unknown key(s): {', '.join(sorted(unknown))}")
    here = os.path.dirname(os.path.abspath(path))
    default_events = doc.get("events")
    with_rules = [os.path.join(here, p) for p in (doc.get("with_rules") or [])]
    cache: dict[str, list[dict]] = {}
    out: list[Fixture] = []
    for i, item in enumerate(doc["fixtures"], 1):
        where = f"{path}: fixture {i}"
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise FixtureError(f"{where}: each fixture is a mapping with a `name`")
        where = f"{path}: fixture {item['name']!r}"
        unknown = set(item) - FIXTURE_KEYS
        if unknown:
            raise FixtureError(f"{where}: unknown key(s): {', '.join(sorted(unknown))}")
        sources = [k for k in ("event", "from", "strace") if k in item]
        if len(sources) != 1:
            raise FixtureError(f"{where}: give exactly one of `event`, `from`, `strace`")
        if ("fires" in item) == bool(item.get("quiet")):
            raise FixtureError(f"{where}: give exactly one of `fires: RULE` and `quiet: true`")
        fires = item.get("fires") or []
        fires = [fires] if isinstance(fires, str) else list(fires)
        if not all(isinstance(r, str) for r in fires):
            raise FixtureError(f"{where}: `fires` is a rule name or a list of them")
        if "event" in item:
            if not isinstance(item["event"], dict):
                raise FixtureError(f"{where}: `event` is a mapping of field names to values")
            events = [dict(item["event"])]
        elif "from" in item:
            spec = item["from"]
            if not isinstance(spec, dict) or not isinstance(spec.get("where"), dict):
                raise FixtureError(f"{where}: `from` needs `where: {{field: value, ...}}`")
            file = spec.get("file") or default_events
            if not file:
                raise FixtureError(f"{where}: `from` needs a `file` (or the file's `events`)")
            file = os.path.join(here, file)
            if file not in cache:
                try:
                    cache[file] = _read_jsonl(file)
                except OSError as e:
                    raise FixtureError(f"{where}: {file}: {e.strerror or e}") from None
            cond = spec["where"]
            events = [dict(e) for e in cache[file] if selected(e, cond)]
            if not events:
                raise FixtureError(f"{where}: no event of {file} has {cond}")
        else:
            spec = item["strace"]
            if not isinstance(spec, dict) or not spec.get("file") or not spec.get("syscalls"):
                raise FixtureError(f"{where}: `strace` needs `file` and `syscalls`")
            context = spec.get("context") or {}
            if isinstance(context, str):
                named = (doc.get("contexts") or {}).get(context)
                if not isinstance(named, dict):
                    raise FixtureError(f"{where}: no context named {context!r} in `contexts`")
                context = named
            try:
                events = events_from_strace(os.path.join(here, spec["file"]),
                                            spec["syscalls"], context, spec.get("match") or {},
                                            spec.get("unless") or {})
            except (OSError, StraceError) as e:
                raise FixtureError(f"{where}: {e}") from None
            if not events:
                raise FixtureError(f"{where}: no {'/'.join(spec['syscalls'])} call in "
                                   f"{spec['file']} matches")
        assumed: list[str] = []
        assume = item.get("assume") or {}
        if assume:
            if not isinstance(assume, dict) or not item.get("because"):
                raise FixtureError(f"{where}: `assume` is a mapping and needs `because`")
            for e in events:
                for k, v in assume.items():
                    if k not in e:
                        e[k] = v
            assumed = sorted(assume)
        out.append(Fixture(item["name"], path, events, fires, bool(item.get("quiet")),
                           str(item.get("technique") or ""), str(item.get("because") or ""),
                           assumed, with_rules))
    return out


def fixture_files(paths) -> list[str]:
    """Fixture files in order: a folder gives its *.yaml/*.yml files in name order."""
    out = []
    for p in paths:
        if os.path.isdir(p):
            out.extend(os.path.join(p, n) for n in sorted(os.listdir(p))
                       if n.endswith((".yaml", ".yml")) and os.path.isfile(os.path.join(p, n)))
        else:
            out.append(p)
    return out


def run_fixture(rs: RuleSet, ours: list, fx: Fixture) -> FixtureResult:
    our_names = {r.name for r in ours}
    results = []
    for event in fx.events:
        problems: list[str] = []
        outcomes = {r.name: rs.evaluate(r, event) for r in rs.rules}
        for name in fx.fires:
            o = outcomes.get(name)
            if o is None:
                problems.append(f"no enabled rule named {name!r} in the loaded set")
            elif o.matched is None:
                problems.append(f"{name}: unknown, the event lacks "
                                + ", ".join(sorted(o.missing | o.unmodelled)))
            elif not o.matched:
                problems.append(f"{name}: did not match")
        if fx.quiet:
            for n in sorted(our_names):
                o = outcomes[n]
                if o.matched:
                    problems.append(f"{n}: matched")
                elif o.matched is None:
                    problems.append(f"{n}: unknown, the event lacks "
                                    + ", ".join(sorted(o.missing | o.unmodelled)))
        # load order: with `rule_matching: first` the first matching rule alerts; a rule before
        # it that the event cannot decide might take the event instead
        first, undecided = "", []
        for r in rs.rules:
            m = outcomes[r.name].matched
            if m:
                first = r.name
                break
            if m is None:
                undecided.append(r.name)
        results.append(EventResult(not problems, problems, first, undecided))
    return FixtureResult(fx, results)


@dataclass
class Summary:
    results: list[FixtureResult]

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)

    def counts(self) -> tuple[int, int, int]:
        events = sum(len(r.events) for r in self.results)
        failed = sum(1 for r in self.results if not r.ok)
        return len(self.results), events, failed

    def to_json(self) -> dict:
        return {
            "ok": self.ok,
            "fixtures": [{
                "name": r.fixture.name, "file": r.fixture.path,
                "technique": r.fixture.technique,
                "expect": ({"fires": r.fixture.fires} if r.fixture.fires
                           else {"quiet": True}),
                "ok": r.ok, "events": len(r.events),
                "assumed": r.fixture.assumed,
                "first_rule": sorted({e.first for e in r.events if e.first}),
                "undecided_before_first": sorted({u for e in r.events if e.first
                                                  for u in e.undecided}),
                "problems": sorted({p for e in r.events for p in e.problems}),
            } for r in self.results],
        }


def run(rule_paths, fixture_paths, base=(), falco_version: str = "0.44") -> Summary:
    """Load the rules (after `base`), then every fixture file; FixtureError or
    evaluate.RulesLoadError when something cannot be loaded."""
    sets: dict[tuple, tuple[RuleSet, list]] = {}
    results = []
    for path in fixture_files(fixture_paths):
        for fx in load_file(path):
            key = tuple(fx.with_rules)
            if key not in sets:
                rs = RuleSet(list(rule_paths) + list(key), base, falco_version)
                sets[key] = (rs, rs.rules_from(rule_paths))
            rs, ours = sets[key]
            results.append(run_fixture(rs, ours, fx))
    return Summary(results)
