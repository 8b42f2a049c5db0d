"""Compile phase: falcosecurity/falco userspace/engine/rule_loader_compiler.cpp.

Condition fields/operators are checked the way libsinsp's sinsp_filter_compiler does it
(falcosecurity/libs userspace/libsinsp/filter.cpp: visit order, "filter_check called with
nonexistent field", check_op_type_compatibility -> "filter error: ..."), and the event types of
a rule are computed like libsinsp's ppm_event_codes (and = intersection, or = union,
not = complement, evt.type =/in/!= restrict, anything else matches every event).
"""

from __future__ import annotations

import re

from . import results as R
from .catalog import op_type_error
from .parser import ParseError, Parser

_LIST_DELIMS = " \t\n\r(),="
_LIST_BLANKS = " \t\n\r"
_TOKEN_SPLIT = re.compile(r"[ \t\n\r(),=]+")
_UNKNOWN_FIELD_MARKERS = ("nonexistent field", "invalid formatting token", "unknown event type",
                          "unknown filter:")
_OUTPUT_FIELD = re.compile(r"[a-zA-Z][a-zA-Z0-9_]*(?:\.[a-zA-Z0-9_]+)*(?:\[[^\]]*\])?")
_MAX_EVTTYPES = 100

# falco_load_result.cpp deprecated_field_descs (fields deprecated by the drop of enter events,
# warned about since Falco 0.42: falcosecurity/falco PRs #3690 and #3697).
_LATENCY_DESC = "field is not available due to the drop of enter events."
_DEPRECATED_DESCS = {
    "evt.dir": "due to the drop of enter events, 'evt.dir = <' always evaluates to true, and "
               "'evt.dir = >' always evaluates to false. The rule expression can be simplified "
               "by removing the condition on 'evt.dir'",
}


class _LoadError(Exception):
    pass


def _quote_item(e: str) -> str:
    if " " in e and e[:1] not in ("\"", "'"):
        return '"' + e + '"'
    return e


def _paren_item(e: str) -> str:
    return e if e[:1] == "(" else "(" + e + ")"


def _resolve_list(cnd: str, name: str, items: list[str]) -> tuple[str, bool]:
    """rule_loader_compiler.cpp resolve_list(): textual substitution of a list name."""
    used = False
    start = cnd.find(name)
    while start != -1:
        end = start + len(name)
        if (start == 0 or cnd[start - 1] in _LIST_DELIMS) and (
                end >= len(cnd) or cnd[end] in _LIST_DELIMS):
            while start > 0 and cnd[start - 1] in _LIST_BLANKS:
                start -= 1
            while end < len(cnd) and cnd[end] in _LIST_BLANKS:
                end += 1
            sub = ", ".join(_quote_item(v) for v in items)
            if not sub:
                if start > 0 and cnd[start - 1] == ",":
                    start -= 1
                elif end < len(cnd) and cnd[end] == ",":
                    end += 1
            new = ""
            if start > 0:
                new += cnd[:start] + " "
            new += sub + " "
            if end <= len(cnd):
                new += cnd[end:]
            cnd = new
            start += len(sub) + 1
            used = True
        start = cnd.find(name, start + 1)
    return cnd, used


class Compiler:
    def __init__(self, engine) -> None:
        self.e = engine
        self.res = engine.res
        self.cat = engine.catalog
        self.plugins = frozenset(engine.plugins)
        self.grammar = engine.grammar
        self.lists: dict[str, list[str]] = {}
        self.list_used: dict[str, bool] = {}
        self.macro_ast: dict[str, object] = {}
        self.macro_used: dict[str, bool] = {}
        self._macro_check: dict[str, object] = {}
        self._macro_evt: dict[str, frozenset] = {}
        self._macro_fields: dict[str, set] = {}
        self._all_events = frozenset(self.cat.event_codes)

    def fail(self, code: str, msg: str, ctx: R.Context):
        from .loader import LoadError

        raise LoadError(code, msg, ctx)

    # --- lists ---
    def compile_lists(self) -> None:
        col = self.e.lists
        used_names = []
        for info in col.values():
            items: list[str] = []
            for it in info.items:
                ref = col.get(it)
                if ref is not None and ref.index < info.visibility:
                    used_names.append(ref.name)
                    items.extend(ref.items)
                else:
                    items.append(it)
            self.lists[info.name] = items
            self.list_used[info.name] = False
        for n in used_names:
            self.list_used[n] = True

    def substitute_lists(self, cond: str) -> str:
        tokens = set(_TOKEN_SPLIT.split(cond))
        for name, items in self.lists.items():
            if name in tokens:
                cond, used = _resolve_list(cond, name, items)
                if used:
                    self.list_used[name] = True
                    tokens = set(_TOKEN_SPLIT.split(cond))
        return cond

    def parse_condition(self, cond: str, ctx: R.Context):
        cond = self.substitute_lists(cond)
        cache = self.e._parse_cache
        hit = cache.get(cond)
        if hit is None:
            try:
                hit = Parser(cond, self.grammar).parse()
            except ParseError as err:
                hit = err
            cache[cond] = hit
        if isinstance(hit, ParseError):
            self.fail("LOAD_ERR_COMPILE_CONDITION", hit.msg, ctx.condition(hit.pos, cond))
        return hit

    # --- macros ---
    def resolve_macros(self, ast, visibility: int | None, condition: str, ctx: R.Context):
        """Find macro references; the first undefined one is an error (filter_macro_resolver)."""
        refs: list[tuple[str, tuple]] = []
        _collect_ids(ast, refs)
        macros = self.e.macros
        for name, pos in refs:
            m = macros.get(name)
            if m is None or (visibility is not None and not m.index < visibility):
                self.fail("LOAD_ERR_VALIDATE", f"Undefined macro '{name}' used in filter.",
                          ctx.condition(pos, condition))
        for name, _pos in refs:
            self.macro_used[name] = True

    def compile_macros(self) -> None:
        for m in self.e.macros.values():
            self.macro_ast[m.name] = self.parse_condition(m.cond, m.cond_ctx)
            self.macro_used[m.name] = False
        for m in self.e.macros.values():
            self.resolve_macros(self.macro_ast[m.name], m.visibility, m.cond, m.ctx)

    # --- field checks (sinsp_filter_compiler) ---
    def check_ast(self, node):
        """First compile error of an AST as (message, pos), or None."""
        tag = node[0]
        if tag == "and" or tag == "or":
            for c in node[1]:
                err = self.check_ast(c)
                if err:
                    return err
            return None
        if tag == "not":
            return self.check_ast(node[1])
        if tag == "id":
            name = node[1]
            if name not in self._macro_check:
                self._macro_check[name] = None  # guards against self-reference loops
                self._macro_check[name] = self.check_ast(self.macro_ast[name])
            return self._macro_check[name]
        # check
        left, op, right, pos = node[1], node[2], node[3], node[4]
        ftype, err = self.check_field(left)
        if err:
            return (err, pos)
        terr = op_type_error(op, ftype)
        if terr:
            return ("filter error: " + terr, pos)
        if right is not None and right[0] in ("xform", "field"):
            _t, err = self.check_field(right)
            if err:
                return (err, right[3])
        return None

    def check_field(self, f):
        if f[0] == "field":
            info = self.cat.lookup(f[1], self.plugins)
            if info is None:
                return "", "filter_check called with nonexistent field " + f[1]
            return info[0], None
        ftype, err = self.check_field(f[2])
        if err:
            return ftype, err
        if f[1] == "len":
            return "UINT64", None
        if f[1] in ("val",):
            return ftype, None
        return ("CHARBUF" if not ftype.startswith("LIST(") else ftype), None

    # --- event types (falcosecurity/libs userspace/libsinsp/filter/ppm_codes.cpp) ---
    def evttypes(self, node, neg: bool = False) -> frozenset:
        """ppm_event_codes(): negations are pushed down to the leaves (De Morgan), checks that
        are not about evt.type match every event, inverted or not."""
        tag = node[0]
        all_ev = self._all_events
        if tag == "and" or tag == "or":
            if (tag == "and") != neg:  # conjunction
                out = all_ev
                for c in node[1]:
                    out = out & self.evttypes(c, neg)
            else:
                out = frozenset()
                for c in node[1]:
                    out = out | self.evttypes(c, neg)
            return out
        if tag == "not":
            return self.evttypes(node[1], not neg)
        if tag == "id":
            key = (node[1], neg)
            hit = self._macro_evt.get(key)
            if hit is None:
                self._macro_evt[key] = all_ev
                hit = self._macro_evt[key] = self.evttypes(self.macro_ast[node[1]], neg)
            return hit
        left, op, right = node[1], node[2], node[3]
        is_evttype = left[0] == "field" and left[1] == "evt.type" and left[2] is None
        if right is None:
            # "evt.type exists" has codes (all of them); inverted it matches nothing
            return frozenset() if (is_evttype and op == "exists" and neg) else all_ev
        if not is_evttype or op not in ("=", "==", "!=", "in") or right[0] not in (
                "value", "list"):
            return all_ev
        names = (right[1],) if right[0] == "value" else right[1]
        codes = frozenset(n for n in names if n in all_ev)
        if neg:
            codes = all_ev - codes
        if op == "!=":
            codes = all_ev - codes
        return codes

    def event_code_count(self, names: frozenset) -> int:
        codes = self.cat.event_codes
        return sum(codes[n] for n in names)

    # --- outputs (sinsp_evt_formatter) ---
    def output_error(self, fmt: str) -> str | None:
        i, n = 0, len(fmt)
        transformers = self.grammar.transformer_names
        while True:
            i = fmt.find("%", i)
            if i < 0 or i + 1 > n:
                return None
            j = i + 1
            if j < n and fmt[j] == "%":
                i = j + 1
                continue
            if j < n and fmt[j] == "*":
                j += 1
            name = None
            m = re.match(r"([a-z0-9]+)\(", fmt[j:]) if j < n else None
            if m and m.group(1) in transformers:
                inner = _OUTPUT_FIELD.match(fmt, j + len(m.group(0)))
                if inner:
                    name = inner.group(0)
                    i = inner.end()
            else:
                fm = _OUTPUT_FIELD.match(fmt, j)
                if fm:
                    name = fm.group(0)
                    i = fm.end()
            if name is None:
                return "invalid formatting token " + fmt[j:]
            base = name.split("[", 1)[0]
            if self.cat.lookup(base, self.plugins) is None:
                return "invalid formatting token " + fmt[j:]

    # --- exceptions (build_rule_exception_infos) ---
    def build_exceptions(self, exceptions, condition: str) -> str:
        condition = "(" + condition + ")"
        for ex in exceptions:
            icond = ""
            if not ex.fields.is_list:
                for val in ex.values:
                    if val.is_list:
                        self.fail("LOAD_ERR_VALIDATE",
                                  "Expected values array to contain a list of strings", ex.ctx)
                    icond += ("(" + ex.fields.item + " " + ex.comps.item + " (") if not icond \
                        else ", "
                    icond += _quote_item(val.item)
                icond += "))" if icond else ""
            else:
                icond = "("
                for values in ex.values:
                    if len(ex.fields.items) != len(values.items):
                        self.fail("LOAD_ERR_VALIDATE",
                                  "Fields and values lists must have equal length", ex.ctx)
                    icond += "" if icond == "(" else " or "
                    icond += "("
                    for k, field in enumerate(ex.fields.items):
                        icond += "" if k == 0 else " and "
                        v = values.items[k]
                        if v.is_list:
                            istr = "(" + ", ".join(_quote_item(x.item) for x in v.items) + ")"
                        else:
                            istr = v.item
                            if ex.comps.items[k].item in ("intersects", "in", "pmatch"):
                                istr = _paren_item(istr)
                            else:
                                istr = _quote_item(istr)
                        icond += " " + field.item + " " + ex.comps.items[k].item + " " + istr
                    icond += ")"
                icond += ")"
                if icond == "()":
                    icond = ""
            condition += (" and not " + icond) if icond else ""
        return condition

    # --- rules ---
    def compile_rules(self) -> None:
        version = self.cat.version
        for r in self.e.rules.values():
            if r.unknown_source:
                continue
            condition = r.cond
            if r.exceptions:
                condition = self.build_exceptions(r.exceptions, condition)
            output = r.output
            if "%container.info" in output:
                if version != "0.40":
                    self.res.add_warning(
                        "LOAD_DEPRECATED_ITEM",
                        "%container.info is deprecated and no more useful, and will be dropped "
                        "by Falco 1.0.0. The container plugin will automatically add required "
                        "fields to the output message.", r.ctx)
                    output = output.replace("%container.info", "")
                else:
                    output = output.replace("%container.info",
                                            "container_id=%container.id "
                                            "container_name=%container.name")
            err = self.output_error(output)
            if err:
                if r.skip_if_unknown_filter and any(k in err for k in _UNKNOWN_FIELD_MARKERS):
                    self.res.add_warning("LOAD_UNKNOWN_FILTER", err, r.output_ctx)
                    continue
                self.fail("LOAD_ERR_COMPILE_OUTPUT", err, r.output_ctx)
            for df in self.cat.deprecated_fields:
                if df in output:  # a substring test, as upstream does
                    self.deprecated_warning(
                        df, f"usage of deprecated field '{df}' has been detected in the rule "
                        "output", r.output_ctx)
            ast = self.parse_condition(condition, r.cond_ctx)
            self.resolve_macros(ast, None, condition, r.ctx)
            if self.cat.deprecated_fields:
                used: set[str] = set()
                self.fields_used(ast, used)
                for df in self.cat.deprecated_fields:
                    if df in used:
                        self.deprecated_warning(df, _DEPRECATED_DESCS.get(df, _LATENCY_DESC),
                                                r.cond_ctx)
            cerr = self.check_ast(ast)
            if cerr:
                msg, pos = cerr
                ctx = r.cond_ctx.condition(pos, condition)
                if r.skip_if_unknown_filter and any(k in msg for k in _UNKNOWN_FIELD_MARKERS):
                    self.res.add_warning("LOAD_UNKNOWN_FILTER", msg, ctx)
                    continue
                self.fail("LOAD_ERR_COMPILE_CONDITION", msg, ctx)
            if r.source == "syscall" and r.warn_evttypes:
                n = self.event_code_count(self.evttypes(ast))
                if n == 0 or n > _MAX_EVTTYPES:
                    self.res.add_warning("LOAD_NO_EVTTYPE",
                                         "Rule matches too many evt.type values. This has a "
                                         "significant performance penalty.", r.ctx)

    def deprecated_warning(self, field: str, msg: str, ctx: R.Context) -> None:
        self.res.add_warning("LOAD_DEPRECATED_ITEM", msg, ctx,
                             f"Used deprecated item: field '{field}' is deprecated")

    def fields_used(self, node, out: set) -> None:
        tag = node[0]
        if tag == "and" or tag == "or":
            for c in node[1]:
                self.fields_used(c, out)
        elif tag == "not":
            self.fields_used(node[1], out)
        elif tag == "id":
            name = node[1]
            cached = self._macro_fields.get(name)
            if cached is None:
                cached = self._macro_fields[name] = set()
                self.fields_used(self.macro_ast[name], cached)
            out |= cached
        elif tag == "check":
            for side in (node[1], node[3]):
                while side is not None and side[0] == "xform":
                    side = side[2]
                if side is not None and side[0] == "field":
                    out.add(side[1])

    def run(self) -> None:
        self.compile_lists()
        self.compile_macros()
        self.compile_rules()
        for m in self.e.macros.values():
            if not self.macro_used.get(m.name):
                self.res.add_warning("LOAD_UNUSED_MACRO",
                                     "Macro not referred to by any other rule/macro", m.ctx)
        for li in self.e.lists.values():
            if not self.list_used.get(li.name):
                self.res.add_warning("LOAD_UNUSED_LIST",
                                     "List not referred to by any other rule/macro", li.ctx)


def _collect_ids(node, out: list) -> None:
    tag = node[0]
    if tag == "and" or tag == "or":
        for c in node[1]:
            _collect_ids(c, out)
    elif tag == "not":
        _collect_ids(node[1], out)
    elif tag == "id":
        out.append((node[1], node[2]))
