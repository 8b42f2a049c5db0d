"""Evaluate the conditions of loaded rules against one event given field by field.

A rules set is loaded exactly as `validate()` loads it (same parser, lists substituted, macros
and exceptions resolved by the same compiler), then each enabled rule's condition is evaluated on
an event: a mapping of filter field names (as Falco prints them in `output_fields`:
"evt.type", "fd.name", "proc.aname[2]", "evt.arg.flags") to values.

Operator semantics follow libsinsp (falcosecurity/libs 0.20, the libs of Falco 0.40;
userspace/libsinsp/filter_compare.cpp flt_compare() and sinsp_filter_check::compare()):
- a field that has no value for the event (`null` in Falco's JSON) fails every check, `exists`
  included: sinsp_filter_check::compare() returns false when extract() finds nothing;
- `=`/`in`/`intersects` on one value compare for equality (flt_compare_*: CO_IN and
  CO_INTERSECTS share CO_EQ's branch); on a list field `in` needs every value in the set and
  `intersects` one of them;
- strings: `contains` strstr(), `icontains` strcasestr(), `startswith` strncmp() on the
  constant's length, `endswith` sinsp_utils::endswith(), `glob`/`iglob`
  sinsp_utils::glob_match() (fnmatch-like; `*` crosses `/`), `<`... strcmp();
- `pmatch`: the value is one of the paths or lies below one of them, path component-wise
  (path_prefix_search, used by libsinsp for CO_PMATCH);
- numbers compare as 64-bit integers, booleans as 0/1, IP addresses by value, networks by
  prefix (flt_compare_ipv4net/ipv6net).
`regex` and `bcontains`/`bstartswith` are not modelled: a check using them is "unknown".

An event that lacks a field a rule needs makes that check *unknown*, never false: the result is
three-valued (True, False, None) with Kleene logic, so `true or unknown` is true and `false and
unknown` is false, and a fixture that does not say enough is reported, not silently passed.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import operator
import os
from dataclasses import dataclass, field

from . import expand_paths, load_engine
from . import values as V

# upstream's never_true macro is (evt.num=0): libsinsp numbers the events it reads from 1, so a
# fixture that does not give evt.num still never matches it.
_IMPLIED = {"evt.num": 1}

_FD_TYPECHARS = {"file": "f", "directory": "d", "ipv4": "4", "ipv6": "6", "unix": "u",
                 "pipe": "p", "event": "e", "signalfd": "s", "eventpoll": "l",
                 "inotify": "i", "timerfd": "t", "netlink": "n", "bpf": "b"}

_ZERO_ON_SUCCESS = frozenset(("setns", "connect", "mount", "umount", "umount2", "bind", "listen",
                              "unshare", "chroot", "chdir", "fchdir"))

_NUMERIC = frozenset((
    "INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64", "ERRNO", "FD",
    "PID", "SYSCALLID", "SIGTYPE", "RELTIME", "ABSTIME", "PORT", "FLAGS8", "FLAGS16", "FLAGS32",
    "DOUBLE", "MODE", "ENUMFLAGS8", "ENUMFLAGS16", "ENUMFLAGS32"))
_IP = frozenset(("IPV4ADDR", "IPV6ADDR", "IPADDR", "IPV4NET", "IPV6NET", "IPNET"))


class RulesLoadError(Exception):
    """The rules set does not load (the validator's report says why)."""

    def __init__(self, report_text: str) -> None:
        super().__init__(report_text)
        self.report_text = report_text


@dataclass
class Rule:
    name: str
    ast: object
    file: str  # the file that defined the rule


@dataclass
class Outcome:
    """One rule on one event: matched True/False/None (unknown), and the fields it lacked."""

    rule: str
    matched: bool | None
    missing: set[str] = field(default_factory=set)
    unmodelled: set[str] = field(default_factory=set)


class RuleSet:
    """Enabled syscall rules of a loaded set, in load order, ready to evaluate."""

    def __init__(self, paths, base=(), falco_version: str = "0.44") -> None:
        from .compiler import Compiler

        engine, report = load_engine(paths, base, falco_version)
        if not report.ok:
            raise RulesLoadError(report.to_text())
        self.catalog = engine.catalog
        self.plugins = frozenset(engine.plugins)
        compiler = Compiler(engine)
        compiler.compile_lists()
        compiler.compile_macros()
        self.macros = compiler.macro_ast
        self.rules: list[Rule] = []
        for info in sorted(engine.rules.values(), key=lambda r: r.index):
            if not info.enabled or info.unknown_source or info.source != "syscall":
                continue
            condition = info.cond
            if info.exceptions:
                condition = compiler.build_exceptions(info.exceptions, condition)
            ast = compiler.parse_condition(condition, info.cond_ctx)
            self.rules.append(Rule(info.name, ast, info.ctx.name if info.ctx else ""))
        self.by_name = {r.name: r for r in self.rules}
        self._types: dict[tuple, str] = {}

    def rules_from(self, paths) -> list[Rule]:
        """The rules whose definition is in one of these files (`paths` as given: files or
        folders)."""
        wanted = {os.path.abspath(f) for f, _ in expand_paths(list(paths))}
        return [r for r in self.rules if os.path.abspath(r.file) in wanted]

    def evaluate(self, rule: Rule, event: dict) -> Outcome:
        ev = _Eval(self, event)
        return Outcome(rule.name, ev.node(rule.ast), ev.missing, ev.unmodelled)

    # -- field types ------------------------------------------------------------------------
    def field_type(self, name: str, arg: str | None) -> str:
        key = (name, arg)
        t = self._types.get(key)
        if t is None:
            t, err = V.resolve_field(self.catalog, name, arg, self.plugins)
            t = t if not err else "CHARBUF"
            self._types[key] = t
        return t


def field_key(name: str, arg: str | None) -> str:
    """The name Falco's output_fields use for a field: proc.aname[2], evt.arg.flags."""
    return f"{name}[{arg}]" if arg is not None else name


class _Unknown(Exception):
    pass


class _Eval:
    def __init__(self, rs: RuleSet, event: dict) -> None:
        self.rs = rs
        self.event = event
        self.missing: set[str] = set()
        self.unmodelled: set[str] = set()

    def node(self, n) -> bool | None:
        tag = n[0]
        if tag == "and" or tag == "or":
            # Kleene logic: one decisive child (false for and, true for or) settles it, an
            # unknown one leaves it unknown unless another settles it
            decisive = tag == "or"
            unknown = False
            for child in n[1]:
                r = self.node(child)
                if r is decisive:
                    return decisive
                unknown |= r is None
            return None if unknown else not decisive
        if tag == "not":
            r = self.node(n[1])
            return None if r is None else not r
        if tag == "id":
            return self.node(self.rs.macros[n[1]])
        if tag == "check":
            try:
                return self.check(n[1], n[2], n[3])
            except _Unknown:
                return None
        raise ValueError(f"unexpected condition node {tag!r}")

    # -- values -----------------------------------------------------------------------------
    def extract(self, f):
        """(values, type): the field's values as a list ([] when it has none), or _Unknown."""
        if f[0] == "xform":
            name = f[1]
            vals, ftype = self.extract(f[2])
            if name == "val":
                return vals, ftype
            return _transform(name, vals, ftype, self)
        name, arg = f[1], f[2]
        key = field_key(name, arg)
        ftype = self.rs.field_type(name, arg)
        if key in self.event:
            raw = self.event[key]
        elif key in _IMPLIED:
            raw = _IMPLIED[key]
        elif _derivable(key, self.event):
            raw = _derive(key, self.event)
        else:
            self.missing.add(key)
            raise _Unknown
        if raw is None:
            return [], ftype
        if isinstance(raw, list):
            return list(raw), ftype
        return [raw], ftype

    def check(self, left, op: str, right) -> bool:
        vals, ftype = self.extract(left)
        base, is_list = V.split_type(ftype)
        if not vals:
            return False  # no value: every check fails (sinsp_filter_check::compare)
        if op == "exists":
            return True
        if op in ("regex", "bcontains", "bstartswith"):
            self.unmodelled.add(op)
            raise _Unknown
        if right[0] == "list":
            consts = list(right[1])
        elif right[0] == "value":
            consts = [right[1]]
        else:  # a field on the right (val() or a transformer)
            consts, _ = self.extract(right)
            if not consts:
                return False
        if is_list:
            hits = [any(_compare("=", base, v, c) for c in consts) for v in vals]
            if op == "in":
                return all(hits)
            if op == "intersects":
                return any(hits)
            return False
        v = vals[0]
        if op in ("in", "intersects"):
            return any(_compare("=", base, v, c) for c in consts)
        if op == "pmatch":
            return any(_path_under(str(v), str(c)) for c in consts)
        return _compare(op, base, v, consts[0])


def _derivable(key: str, event: dict) -> bool:
    if key == "proc.args":
        cmd, name = event.get("proc.cmdline"), event.get("proc.name")
        return isinstance(cmd, str) and isinstance(name, str) and (
            cmd == name or cmd.startswith(name + " "))
    if key == "evt.rawres":
        return event.get("evt.res") == "SUCCESS" and event.get("evt.type") in _ZERO_ON_SUCCESS
    if key == "fd.typechar":
        return event.get("fd.type") in _FD_TYPECHARS
    return False


def _derive(key: str, event: dict):
    """Fields that follow exactly from others Falco printed:
    - proc.args: libsinsp builds proc.cmdline as the process name, a blank and the arguments
      joined by blanks (sinsp_threadinfo::populate_cmdline());
    - evt.rawres: evt.res prints "SUCCESS" for any return value >= 0; the calls of
      _ZERO_ON_SUCCESS return exactly 0 when they succeed (their man pages: "On success, zero is
      returned"), so for them SUCCESS means evt.rawres 0;
    - fd.typechar: one letter per fd.type (sinsp_fdinfo::get_typechar())."""
    if key == "proc.args":
        return event["proc.cmdline"][len(event["proc.name"]) + 1:]
    if key == "fd.typechar":
        return _FD_TYPECHARS[event["fd.type"]]
    return 0


def _transform(name: str, vals: list, ftype: str, ev: _Eval):
    base, is_list = V.split_type(ftype)
    if name == "tolower":
        return [str(v).lower() for v in vals], ftype
    if name == "toupper":
        return [str(v).upper() for v in vals], ftype
    if name == "basename":
        return [str(v).rsplit("/", 1)[-1] for v in vals], ftype
    if name == "len":
        if is_list:
            return [len(vals)], "UINT64"
        return [len(str(v)) for v in vals], "UINT64"
    ev.unmodelled.add(name + "()")
    raise _Unknown


def _path_under(value: str, prefix: str) -> bool:
    prefix = prefix.rstrip("/") or "/"
    if prefix == "/":
        return value.startswith("/")
    return value == prefix or value.startswith(prefix + "/")


def _to_int(v) -> int:
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, int):
        return v
    s = str(v).strip()
    return int(s, 0) if s.lower().startswith(("0x", "-0x")) else int(s)


def _to_bool(v) -> int:
    if isinstance(v, bool):
        return int(v)
    s = str(v).strip().lower()
    if s in ("true", "1"):
        return 1
    if s in ("false", "0"):
        return 0
    raise ValueError(v)


def _compare(op: str, ftype: str, v, c) -> bool:
    if ftype in _NUMERIC:
        try:
            a, b = _to_int(v), _to_int(c)
        except ValueError:
            # e.g. a flags field printed as text: compare the text as Falco's output shows it
            return _compare_str(op, str(v), str(c))
        return _num_op(op, a, b)
    if ftype == "BOOL":
        try:
            a, b = _to_bool(v), _to_bool(c)
        except ValueError:
            return op == "!="
        return a == b if op in ("=", "==") else a != b if op == "!=" else False
    if ftype in _IP:
        try:
            addr = ipaddress.ip_address(str(v))
            net = ipaddress.ip_network(str(c), strict=False)
        except ValueError:
            return op == "!="
        inside = addr.version == net.version and addr in net
        return inside if op in ("=", "==") else (not inside) if op == "!=" else False
    s = v if isinstance(v, str) else _render(v)
    return _compare_str(op, s, str(c))


def _render(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


# equality and ordering, the same for numbers and for strings (flt_compare_numeric(), and
# strcmp() in flt_compare_string())
_ORDER = {"=": operator.eq, "==": operator.eq, "!=": operator.ne, "<": operator.lt,
          "<=": operator.le, ">": operator.gt, ">=": operator.ge}


def _num_op(op: str, a: int, b: int) -> bool:
    compare = _ORDER.get(op)
    return compare(a, b) if compare else False


def _compare_str(op: str, s: str, c: str) -> bool:
    # values are C strings in libsinsp: nothing after a NUL
    s, c = s.split("\0", 1)[0], c.split("\0", 1)[0]
    if op in _ORDER:
        return _ORDER[op](s, c)
    if op == "contains":
        return c in s
    if op == "icontains":
        return c.lower() in s.lower()
    if op == "startswith":
        return s.startswith(c)
    if op == "endswith":
        return s.endswith(c)
    if op == "glob":
        return fnmatch.fnmatchcase(s, c)
    if op == "iglob":
        return fnmatch.fnmatchcase(s.lower(), c.lower())
    return False
