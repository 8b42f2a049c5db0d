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
from . import values as V
from .catalog import op_type_error
from .parser import ParseError, Parser

_LIST_DELIMS = " \t\n\r(),="
_LIST_BLANKS = " \t\n\r"
_TOKEN_SPLIT = re.compile(r"[ \t\n\r(),=]+")
_UNKNOWN_FIELD_MARKERS = ("nonexistent field", "invalid formatting token", "unknown event type",
                          "unknown filter:")
_MAX_EVTTYPES = 100

# evt.type values libsinsp accepts that `falco --list-events` (the catalogue) does not print:
# the name of the generic syscall event (driver/event_table.c PPME_GENERIC_E "syscall") and the
# ppm_sc names of tracepoints (driver/ppm_events_public.h PPM_SC_FIELDS, scap_get_ppm_sc_name),
# both checked by sinsp_filter_check_event::validate_filter_value.
_EVTTYPE_EXTRA_NAMES = frozenset(("syscall", "sched_process_exit", "sched_switch",
                                  "page_fault_user", "page_fault_kernel", "signal_deliver"))

# libs filter.cpp sinsp_filter_compiler::check_value_and_add_warnings() and its helpers.
_RGX_SPECIAL = ".+*?^$()[]{}|\\"
_RGX_OCCURRENCE = "+*?"
_RGX_SUGGESTED_OPS = "'=', 'contains', 'startswith', 'endswith'"
_DEL_SPACES = str.maketrans("", "", " \t\n\v\f\r")  # std::remove_if(..., isspace)
_FIELD_NAME = re.compile(r"[a-zA-Z]+[a-zA-Z0-9_]*(?:\.[a-zA-Z]+[a-zA-Z0-9_]*)+")


def _base_field(node) -> str | None:
    """The field name under any transformers of a check's left-hand side."""
    while node[0] == "xform":
        node = node[2]
    return node[1] if node[0] == "field" else None


def _rhs_field_error(left, ltype: str, right, rtype: str) -> str | None:
    """sinsp_filter_check::add_filter_value(rhs check) (libs sinsp_filtercheck.cpp): a network
    field takes no right-hand side field, and check_rhs_field_type_consistency() wants the
    same type (and list-ness) on both sides, transformers applied."""
    if ltype in ("IPNET", "IPV4NET", "IPV6NET"):
        return "field type 'IPNET' doesn't support right-hand side fields"
    if ltype != rtype:
        return (f"field '{_base_field(left)}' has type '{V.type_label(ltype)}' while the "
                f"right-hand side field '{_base_field(right)}' has incompatible type "
                f"'{V.type_label(rtype)}'")
    return None


def _regex_warning(v: str) -> str | None:
    """check_warnings_regex_value(): a regex with no special character (ignoring ^ and $
    anchors at the ends and a `.*`/`.+`/`.?` at either end) may use a simpler operator."""
    n = len(v)
    i = 0
    while i < n:
        c = v[i]
        if (i == 0 and c == "^") or (i == n - 1 and c == "$"):
            i += 1
            continue
        if ((i == 0 and n > 1) or i == n - 2) and c == "." and v[i + 1] in _RGX_OCCURRENCE:
            i += 2  # also skip the occurrence indicator
            continue
        if c in _RGX_SPECIAL:
            return None
        i += 1
    return (f"regex check with '{v}' may be optimized with simpler operators such as "
            + _RGX_SUGGESTED_OPS)

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


# How large a condition may grow while lists are substituted into it. Falco has no limit: a
# chain of lists whose items name lists defined after them ("list bomb": l0 = [l1 x 10],
# l1 = [l2 x 10], ...) multiplies a condition tenfold per step and costs every host's Falco its
# memory. The longest condition of the official rules, lists substituted, is a few thousand
# characters. The second bound keeps the substitution itself (a copy of the condition per
# occurrence, as resolve_list() does) from taking minutes.
MAX_CONDITION_CHARS = 1_000_000
MAX_SUBSTITUTION_COPY = 300_000_000


class ConditionTooLong(Exception):
    """Substituting a list would make a condition too large: (name, occurrences)."""


def _resolve_list(cnd: str, name: str, items: list[str]) -> tuple[str, bool]:
    """rule_loader_compiler.cpp resolve_list(): textual substitution of a list name."""
    used = False
    occurrences = cnd.count(name)
    if occurrences:
        grown = len(cnd) + occurrences * (sum(len(v) + 4 for v in items) + 2)
        if grown > MAX_CONDITION_CHARS or occurrences * grown > MAX_SUBSTITUTION_COPY:
            raise ConditionTooLong(name, occurrences)
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
        self._macro_evt: dict[tuple, int] = {}
        self._macro_fields: dict[str, set] = {}
        self._all_events = frozenset(self.cat.event_codes)
        self._evt_names = self._all_events | _EVTTYPE_EXTRA_NAMES
        # Sets of event types as bit masks (one bit per event name): the set algebra of
        # evttypes() runs for every node of every rule.
        names = sorted(self._all_events)
        self._evt_bit = {name: 1 << i for i, name in enumerate(names)}
        self._evt_weight = [self.cat.event_codes[name] for name in names]
        self._all_mask = (1 << len(names)) - 1
        self._macro_warn: dict[str, list] = {}
        # value warnings depend on the fields known (plugins): kept on the engine across files
        if engine._value_warn_cache[0] != self.plugins:
            engine._value_warn_cache = (self.plugins, {})
        self._value_warn: dict[str, list] = engine._value_warn_cache[1]

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
        # names with delimiters in them (invalid list names, only a warning) are never one token
        self._untokenized_lists = frozenset(
            n for n in self.lists if _TOKEN_SPLIT.search(n) is not None)
        self._list_order = {name: i for i, name in enumerate(self.lists)}

    def substitute_lists(self, cond: str) -> str:
        """Every list, in definition order, replaced where the condition names it (a list's
        items may name lists defined after it, which are then replaced in their turn)."""
        order = self._list_order
        names = list(order)
        tokens = set(_TOKEN_SPLIT.split(cond))
        start = 0
        while True:
            # The next list in definition order that the condition names; resolve_list() also
            # finds a name that is not one token in the text.
            turns = [order[t] for t in tokens if order.get(t, -1) >= start]
            turns += [order[n] for n in self._untokenized_lists
                      if order[n] >= start and n in cond]
            if not turns:
                return cond
            turn = min(turns)
            name = names[turn]
            cond, used = _resolve_list(cond, name, self.lists[name])
            if used:
                self.list_used[name] = True
                tokens = set(_TOKEN_SPLIT.split(cond))
            start = turn + 1

    def parse_condition(self, cond: str, ctx: R.Context):
        try:
            cond = self.substitute_lists(cond)
        except ConditionTooLong as exc:
            name, occurrences = exc.args
            self.fail("LOAD_ERR_COMPILE_CONDITION",
                      f"substituting list '{name}' ({occurrences} times) would make the "
                      f"condition larger than {MAX_CONDITION_CHARS} characters (lists whose "
                      "items name other lists multiply it): refused, it would exhaust Falco's "
                      "memory", ctx)
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
            rtype, err = self.check_field(right)
            if err:
                return (err, right[3])
            err = _rhs_field_error(left, ftype, right, rtype)
            if err:
                return (err, right[3])
        if right is not None and right[0] in ("value", "list"):
            err = self.check_values(left, ftype, op, right)
            if err:
                return err
        if right is not None and right[0] in ("value", "list") and _base_field(left) == "evt.type":
            err = self.check_evttype_values(right)
            if err:
                return err
        return None

    def check_values(self, left, ftype: str, op: str, right):
        """filter.cpp add_filtercheck_value() for each constant of a check, in order: the hex
        check of bcontains/bstartswith, then sinsp_filter_check::parse_filter_value() with the
        type of the (transformed) field (values.py value_error), then the event filtercheck's
        validate_filter_value() for evt.around (only '=', sinsp_filtercheck_event.cpp).
        Errors are at the position of the right-hand side (the compiler's m_pos)."""
        binary = op in ("bcontains", "bstartswith")
        if not binary and not V.parses_values(ftype):
            return None  # strings and buffers are copied as they are (and evt.around is not)
        values = (right[1],) if right[0] == "value" else right[1]
        around = _base_field(left) == "evt.around"
        for v in values:
            err = V.hex_error(v) if binary else V.value_error(ftype, v)
            if err is None and around and op not in ("=", "=="):
                err = "evt.around supports only '=' comparison operator"
            if err:
                return (err, right[2])
        return None

    def check_evttype_values(self, right):
        """libs sinsp_filtercheck_event.cpp sinsp_filter_check_event::validate_filter_value():
        each constant compared with evt.type (whatever the operator or transformer) must be an
        event name of the event table, a ppm_sc name or a plugin async event name, else
        "unknown event type <value>" (thrown while the value is added, at the value's
        position)."""
        names = self._evt_names
        for v in ((right[1],) if right[0] == "value" else right[1]):
            if v not in names:
                return ("unknown event type " + v, right[2])
        return None

    # --- compiler warnings (libs filter.cpp sinsp_filter_compiler::m_warnings) ---
    def condition_warnings(self, node) -> list:
        """(message, pos) of every warning check_value_and_add_warnings() gives while the
        condition compiles, in visit order: each constant value of a binary check, at the
        position of the right-hand side."""
        out: list = []
        self._collect_warnings(node, out)
        return out

    def _collect_warnings(self, node, out: list) -> None:
        tag = node[0]
        if tag == "and" or tag == "or":
            for c in node[1]:
                self._collect_warnings(c, out)
        elif tag == "not":
            self._collect_warnings(node[1], out)
        elif tag == "id":
            name = node[1]
            hit = self._macro_warn.get(name)
            if hit is None:
                self._macro_warn[name] = []  # guards against self-reference loops
                hit = self._macro_warn[name] = self.condition_warnings(self.macro_ast[name])
            if hit:
                out.extend(hit)
        else:
            right = node[3]
            if right is None:
                return
            kind = right[0]
            if kind == "value":
                values = (right[1],)
            elif kind == "list":
                values = right[1]
            else:
                return
            op, pos = node[2], right[2]
            cache = self._value_warn
            for v in values:
                if op == "regex":
                    msg = _regex_warning(v)
                    if msg:
                        out.append((msg, pos))
                msgs = cache.get(v)
                if msgs is None:
                    msgs = cache[v] = self.value_warnings(v)
                for m in msgs:
                    out.append((m, pos))

    def value_warnings(self, v: str) -> list:
        """check_warnings_field_value() and check_warnings_transformer_value() on the value
        with its blanks removed (the messages quote the value as written)."""
        out = []
        ns = v.translate(_DEL_SPACES)
        if "." in ns and self.value_is_field(ns):
            out.append(f"'{v}' may be a valid field misused as a const string value")
        if ns.endswith(")"):
            for t in self.grammar.transformer_names:
                if len(ns) >= len(t) + 2 and ns.startswith(t) and ns[len(t)] == "(":
                    out.append(f"'{v}' may be a valid field transformer misused as a const "
                               "string value")
        return out

    def value_is_field(self, text: str) -> bool:
        """sinsp_filter_factory::new_filtercheck(text) != nullptr: the whole text names a
        field (with an optional [argument]) known to this engine."""
        m = _FIELD_NAME.match(text)
        if m is None:
            return False
        rest = text[m.end():]
        arg = None
        if rest:
            if len(rest) < 3 or rest[0] != "[" or rest[-1] != "]" or "]" in rest[1:-1]:
                return False
            arg = rest[1:-1]
        try:  # check_value_and_add_warnings() ignores any failure (catch(...))
            _t, err = self.check_field(("field", m.group(0), arg, (0, 1, 1)))
        except Exception:
            return False
        return err is None

    def check_field(self, f):
        """(type, error) of a field node (its filtercheck, with its argument: values.py
        resolve_field) or of a transformer node (sinsp_filter_check::add_transformer checks
        the type each transformer gets: values.py transformed_type)."""
        if f[0] == "field":
            return V.resolve_field(self.cat, f[1], f[2], self.plugins)
        ftype, err = self.check_field(f[2])
        if err:
            return ftype, err
        if f[1] == "join":  # 0.44's join(): not modelled, as before
            return ("CHARBUF" if not ftype.startswith("LIST(") else ftype), None
        return V.transformed_type(f[1], ftype, _base_field(f))

    # --- event types (falcosecurity/libs userspace/libsinsp/filter/ppm_codes.cpp) ---
    def evttypes(self, node, neg: bool = False) -> int:
        """ppm_event_codes() as a bit mask of event names: negations are pushed down to the
        leaves (De Morgan), checks that are not about evt.type match every event, inverted or
        not."""
        tag = node[0]
        all_ev = self._all_mask
        if tag == "and" or tag == "or":
            if (tag == "and") != neg:  # conjunction
                out = all_ev
                for c in node[1]:
                    out &= self.evttypes(c, neg)
            else:
                out = 0
                for c in node[1]:
                    out |= self.evttypes(c, neg)
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
            return 0 if (is_evttype and op == "exists" and neg) else all_ev
        if not is_evttype or op not in ("=", "==", "!=", "in") or right[0] not in (
                "value", "list"):
            return all_ev
        names = (right[1],) if right[0] == "value" else right[1]
        bits = self._evt_bit
        codes = 0
        for n in names:
            codes |= bits.get(n, 0)
        if neg:
            codes = all_ev & ~codes
        if op == "!=":
            codes = all_ev & ~codes
        return codes

    def event_code_count(self, mask: int, stop: int) -> int:
        """How many event codes the names in `mask` stand for, counted up to more than
        `stop` (set bits one by one: a rule names few events, or too many to count on)."""
        weights = self._evt_weight
        total = 0
        while mask and total <= stop:
            low = mask & -mask
            total += weights[low.bit_length() - 1]
            mask ^= low
        return total

    # --- outputs (sinsp_evt_formatter) ---
    def output_error(self, fmt: str) -> str | None:
        """sinsp_evt_formatter::set_format(): values.py output_error (the transformers an
        output takes are the parser's, without val())."""
        transformers = self.grammar.transformer_names[1:]
        return V.output_error(self.cat, self.plugins, transformers, fmt)

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
            # rule_loader_compiler.cpp compile_condition(): the filter compiler's warnings,
            # once the condition compiled, as LOAD_COMPILE_CONDITION at each value's position
            for wmsg, wpos in self.condition_warnings(ast):
                self.res.add_warning("LOAD_COMPILE_CONDITION", wmsg,
                                     r.cond_ctx.condition(wpos, condition))
            if r.source == "syscall" and r.warn_evttypes:
                n = self.event_code_count(self.evttypes(ast), _MAX_EVTTYPES)
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
