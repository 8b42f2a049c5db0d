"""Falco's rule loader: read (YAML -> collector), then compile (lists, macros, rules).

Follows falcosecurity/falco userspace/engine:
- rule_loader_reader.cpp: item decoding, the LOAD_ERR_YAML_VALIDATE messages, append/override,
  exceptions, required_engine_version / required_plugin_versions;
- rule_loader_collector.cpp: define/append/selective_replace/enable, exception validation,
  engine version check (LOAD_ERR_VALIDATE);
- rule_loader_compiler.cpp: list expansion, textual list substitution in conditions
  (resolve_list), macro resolution with visibility, exception conditions, output and condition
  compilation, LOAD_NO_EVTTYPE, unused macros/lists;
- falco_engine.cpp load_rules(): every file is read into the same collector and the *whole*
  collector is compiled again, so compile-time messages of earlier files' items show up in the
  result of each later file, and compilation stops at the first error.
"""

from __future__ import annotations

import re

import yaml

from . import results as R
from .catalog import Catalog
from .parser import GRAMMARS

try:  # libyaml is much faster; the pure-Python loader gives the same nodes and marks.
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover - depends on the PyYAML build
    from yaml import SafeLoader as _Loader

_NULL_TAG = "tag:yaml.org,2002:null"
_RGX_IDENTIFIER = re.compile(r"[a-zA-Z]+[a-zA-Z0-9_]*\Z")
# RE2's [:space:] is ASCII only: [\t\n\v\f\r ]
_RGX_BARESTR = re.compile(r"[^()\"'\t\n\v\f\r =,]+\Z")
_SEMVER = re.compile(r"(\d+)\.(\d+)\.(\d+)")
_UINT = re.compile(r"\s*\+?\d+\s*\Z")

# rule_loader_reader.cpp read_item(): an invalid macro/list name is a warning
# (LOAD_INVALID_MACRO_NAME / LOAD_INVALID_LIST_NAME) and the item still loads.
WARNING_INVALID_MACRO_NAME = ("Macro has an invalid name. Macro names should match a regular "
                              "expression: ([a-zA-Z]+[a-zA-Z0-9_]*)")
WARNING_INVALID_LIST_NAME = ("List has an invalid name. List names should match a regular "
                             "expression: ([^()\"'[:space:]=,]+)")
WARNING_APPEND = ("'append' key is deprecated. Add an 'append' entry (e.g. 'condition: "
                  "append') under 'override' instead.")
WARNING_ENABLED = ("The standalone 'enabled' key usage is deprecated. The correct approach "
                   "requires also a 'replace' entry under the 'override' key (i.e. 'enabled: "
                   "replace').")
ERROR_OVERRIDE_APPEND = ("Keys 'override' and 'append: true' cannot be used together. Add an "
                         "'append' entry (e.g. 'condition: append') under 'override' instead.")
ERROR_NO_PREVIOUS_MACRO = ("Macro uses 'append' or 'override.condition: append' but no macro by "
                           "that name already exists")
ERROR_NO_PREVIOUS_LIST = ("List uses 'append' or 'override.items: append' but no list by that "
                          "name already exists")
ERROR_NO_PREVIOUS_RULE_APPEND = ("Rule uses 'append' or 'override.<key>: append' but no rule by "
                                 "that name already exists")
ERROR_NO_PREVIOUS_RULE_REPLACE = ("An 'override.<key>: replace' to a rule was requested but no "
                                  "rule by that name already exists")

# falco_common.cpp priority_names; "info" is accepted as an alias of Informational.
_PRIORITIES = {"emergency": 0, "alert": 1, "critical": 2, "error": 3, "warning": 4, "notice": 5,
               "informational": 6, "info": 6, "debug": 7}
_YAML_TRUE = frozenset(("y", "Y", "yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON"))
_YAML_FALSE = frozenset(("n", "N", "no", "No", "NO", "false", "False", "FALSE", "off", "Off",
                         "OFF"))

_RULE_APPENDABLE = ("condition", "output", "desc", "tags", "exceptions")
_RULE_REPLACEABLE = ("condition", "output", "desc", "priority", "tags", "exceptions", "enabled",
                     "warn_evttypes", "skip-if-unknown-filter")
_LIST_OPS = ("intersects", "in", "pmatch")
_SYSCALL = "syscall"
_CONTAINER_INFO = "%container.info"
_UNKNOWN_FIELD_MARKERS = ("nonexistent field", "invalid formatting token", "unknown event type",
                          "unknown filter:")


class LoadError(Exception):
    """rule_loader::rule_load_exception."""

    def __init__(self, code: str, msg: str, ctx: R.Context) -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg
        self.ctx = ctx


def _throw(msg: str, ctx: R.Context, code: str = "LOAD_ERR_YAML_VALIDATE"):
    raise LoadError(code, msg, ctx)


def _bad_conversion(node, ctx: R.Context):
    m = node.start_mark
    root = R.Context(ctx.locs[:1])
    raise LoadError("LOAD_ERR_VALIDATE", f"yaml-cpp: error at line {m.line + 1}, column "
                    f"{m.column + 1}: bad conversion", root)


def _mark(node) -> tuple[int, int, int]:
    m = node.start_mark
    return (m.index, m.line, m.column)


# --- YAML node helpers (yaml-cpp semantics on PyYAML composed nodes) ---

def _is_null(node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag == _NULL_TAG


def _is_map(node) -> bool:
    return isinstance(node, yaml.MappingNode)


def _is_seq(node) -> bool:
    return isinstance(node, yaml.SequenceNode)


def _is_scalar(node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag != _NULL_TAG


def _get(item, key: str):
    """item[key] like yaml-cpp: the first entry whose key is the scalar `key`, else None."""
    for k, v in item.value:
        if isinstance(k, yaml.ScalarNode) and k.value == key:
            return v
    return None


def _scalar_text(node) -> str:
    # yaml-cpp keeps the text of "~"/"null" scalars; composed nodes keep it too.
    return node.value


class Entry:
    """rule_exception_info::entry: a scalar or a (nested) list."""

    __slots__ = ("is_list", "item", "items")

    def __init__(self, item: str = "") -> None:
        self.is_list = False
        self.item = item
        self.items: list[Entry] = []

    @property
    def valid(self) -> bool:
        # entry::is_valid(): a non-empty list or a non-empty scalar (rule_loader.h)
        return bool(self.items) if self.is_list else bool(self.item)


class ExceptionInfo:
    __slots__ = ("name", "fields", "comps", "values", "ctx")

    def __init__(self, name: str, ctx: R.Context) -> None:
        self.name = name
        self.ctx = ctx
        self.fields = Entry()
        self.comps = Entry()
        self.values: list[Entry] = []


class ListInfo:
    __slots__ = ("name", "items", "ctx", "index", "visibility")

    def __init__(self, name, items, ctx) -> None:
        self.name, self.items, self.ctx = name, items, ctx
        self.index = self.visibility = 0


class MacroInfo:
    __slots__ = ("name", "cond", "ctx", "cond_ctx", "index", "visibility")

    def __init__(self, name, cond, ctx, cond_ctx) -> None:
        self.name, self.cond, self.ctx, self.cond_ctx = name, cond, ctx, cond_ctx
        self.index = self.visibility = 0


class RuleInfo:
    __slots__ = ("name", "ctx", "cond", "cond_ctx", "output", "output_ctx", "desc", "priority",
                 "source", "enabled", "warn_evttypes", "skip_if_unknown_filter", "tags",
                 "exceptions", "index", "visibility", "unknown_source")

    def __init__(self, name, ctx) -> None:
        self.name, self.ctx = name, ctx
        self.cond = self.output = self.desc = ""
        self.cond_ctx = self.output_ctx = ctx
        self.priority = 7
        self.source = _SYSCALL
        self.enabled = self.warn_evttypes = True
        self.skip_if_unknown_filter = False
        self.tags: set[str] = set()
        self.exceptions: list[ExceptionInfo] = []
        self.index = self.visibility = 0
        self.unknown_source = False


class RuleUpdate:
    """rule_update_info: only the keys that were given are set."""

    def __init__(self, name, ctx) -> None:
        self.name, self.ctx = name, ctx
        self.values: dict[str, object] = {}

    def has_any_value(self) -> bool:
        return bool(self.values)


class Engine:
    """One rules engine: files are loaded into it one after another (falco -V a -V b)."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.grammar = GRAMMARS[catalog.version]
        self.contents: dict[str, str] = {}
        self.lists: dict[str, ListInfo] = {}
        self.macros: dict[str, MacroInfo] = {}
        self.rules: dict[str, RuleInfo] = {}
        self.cur_index = 0
        self.plugins: set[str] = set()
        # required_plugin_versions entries, each a list of (name, version) alternatives
        self.required_plugins: list[list[tuple[str, str]]] = []
        self.required_engine_version = (0, 0, 0)
        self._parse_cache: dict[str, object] = {}
        # compiler.value_warnings() per constant value, for the current plugin set
        self._value_warn_cache: tuple[frozenset, dict[str, list]] = (frozenset(), {})
        self.res: R.FileResult | None = None

    # ------------------------------------------------------------------ loading
    def load(self, name: str, content: str) -> R.FileResult:
        res = R.FileResult(name)
        res.contents = self.contents
        self.contents[name] = content
        self.res = res
        if self._read(name, content):
            self._compile()
        return res

    def _read(self, name: str, content: str) -> bool:
        ctx = R.Context.root(name)
        res = self.res
        try:
            docs = list(yaml.compose_all(content, Loader=_Loader))
        except yaml.MarkedYAMLError as e:
            mark = e.problem_mark or e.context_mark
            line, col = (mark.line + 1, mark.column + 1) if mark else (0, 0)
            msg = f"yaml-cpp: error at line {line}, column {col}: {e.problem or e.context or e}"
            ictx = ctx.child((mark.index, mark.line, mark.column), R.VALUE_FOR) if mark else ctx
            res.add_error("LOAD_ERR_YAML_PARSE", msg, ictx)
            res.schema_valid = False
            return False
        except (yaml.YAMLError, ValueError) as e:
            res.add_error("LOAD_ERR_YAML_PARSE", str(e), ctx)
            res.schema_valid = False
            return False
        for doc in docs:
            if doc is None or _is_null(doc):
                continue
            try:
                if not _is_map(doc) and not _is_seq(doc):
                    _throw("Rules content is not yaml", ctx)
                if not _is_seq(doc):
                    _throw("Rules content is not yaml array of objects", ctx)
                for item in doc.value:
                    if not _is_null(item):
                        self._read_item(item, ctx)
            except LoadError as e:
                res.add_error(e.code, e.msg, e.ctx)
                if e.code == "LOAD_ERR_YAML_VALIDATE":
                    res.schema_valid = False
                return False
        return True

    # --- decoding helpers (decode_val / decode_seq) ---
    def _decode_val(self, item, key: str, ctx, optional: bool = False, kind: str = "str"):
        val = _get(item, key)
        if val is None:
            if optional:
                return None
            _throw(f"Item has no mapping for key '{key}'", ctx)
        if _is_null(val):
            _throw(f"Mapping for key '{key}' is empty", ctx)
        valctx = ctx.child(_mark(val), R.VALUE_FOR, key)
        if not _is_scalar(val):
            _throw("Value is not a scalar value", valctx)
        text = _scalar_text(val)
        if text == "":
            _throw("Value must be non-empty", valctx)
        if kind == "bool":
            if text in _YAML_TRUE:
                return True
            if text in _YAML_FALSE:
                return False
            _throw("Can't decode YAML scalar value", valctx)
        if kind == "uint":
            if not _UINT.match(text) or int(text) > 0xFFFFFFFF:
                _throw("Can't decode YAML scalar value", valctx)
            return int(text)
        return text

    def _decode_seq(self, item, key: str, ctx, optional: bool) -> list[str] | None:
        val = _get(item, key)
        if val is None:
            if optional:
                return None
            _throw(f"Item has no mapping for key '{key}'", ctx)
        valctx = ctx.child(_mark(val), R.VALUE_FOR, key)
        if not _is_seq(val):
            _throw("Value is not a sequence", valctx)
        out = []
        for v in val.value:
            if not _is_scalar(v):
                # yaml-cpp: a null entry is not a scalar either
                _throw("sequence value is not scalar", valctx.child(_mark(v), R.LIST_ITEM))
            out.append(_scalar_text(v))
        return out

    def _decode_overrides(self, item, appendable, replaceable, ctx):
        val = _get(item, "override")
        out_append: set[str] = set()
        out_replace: set[str] = set()
        if val is None:
            return out_append, out_replace
        octx = ctx.child(_mark(item), R.OVERRIDE)
        if not _is_map(val):
            if _is_seq(val) and val.value:
                # yaml-cpp: it->first of a sequence entry is not convertible; read() reports
                # the std::exception as LOAD_ERR_VALIDATE in the rules content context
                _bad_conversion(val.value[0], ctx)
            return out_append, out_replace  # null/scalar: nothing to iterate
        for k, v in val.value:
            if not _is_scalar(k):
                _bad_conversion(k, ctx)
            if not _is_scalar(v):
                _bad_conversion(v, ctx)
            key, op = k.value, v.value
            if op == "append":
                if key not in appendable:
                    _throw(f"Key '{key}' cannot be appended to, use 'replace' instead",
                           octx.child(_mark(k), R.OVERRIDE, key))
                out_append.add(key)
            elif op == "replace":
                if key not in replaceable:
                    _throw(f"Key '{key}' cannot be replaced",
                           octx.child(_mark(k), R.OVERRIDE, key))
                out_replace.add(key)
            else:
                allowed = ("append " if key in appendable else "") + (
                    "replace " if key in replaceable else "")
                _throw(f"Invalid override operation for key '{key}': '{op}'. "
                       f"Allowed values are: {allowed}", octx.child(_mark(v), R.VALUE_FOR, key))
        return out_append, out_replace

    def _exception_entry(self, node, key, ctx, optional: bool) -> Entry:
        val = node if key is None else _get(node, key)
        out = Entry()
        if val is None:
            if optional:
                return out
            _throw(f"Item has no mapping for key '{key}'", ctx)
        valctx = ctx.child(_mark(val), R.VALUE_FOR, key or "")
        if _is_scalar(val):
            if val.value == "":
                _throw("Value must be non-empty", valctx)
            out.item = val.value
        elif _is_seq(val):
            out.is_list = True
            for v in val.value:
                lctx = valctx.child(_mark(v), R.EXCEPTION)
                out.items.append(self._exception_entry(v, None, lctx, False))
        # a null or mapping node is neither: the entry stays empty (not valid)
        return out

    def _read_exceptions(self, item, parent, append: bool) -> list[ExceptionInfo] | None:
        exs = _get(item, "exceptions")
        if exs is None or _is_null(exs):
            return None
        exes_ctx = parent.child(_mark(exs), R.EXCEPTIONS)
        if not _is_seq(exs):
            _throw("Rule exceptions must be a sequence", exes_ctx)
        out: list[ExceptionInfo] = []
        for ex in exs.value:
            tmp = exes_ctx.child(_mark(ex), R.EXCEPTION)
            if not _is_map(ex):
                _throw("Rule exception must be a mapping", tmp)
            name = self._decode_val(ex, "name", tmp)
            ex_ctx = parent.child(_mark(ex), R.EXCEPTION, name)
            info = ExceptionInfo(name, ex_ctx)
            # rule_loader_reader.cpp read_rule_exceptions(): one LOAD_EXCEPTION_NAME_NOT_UNIQUE
            # warning per earlier exception of the same name; the exception is still kept.
            for e in out:
                if e.name == name:
                    self.res.add_warning("LOAD_EXCEPTION_NAME_NOT_UNIQUE",
                                         f"Multiple definitions of exception '{name}' in the "
                                         "same rule", ex_ctx)
            info.fields = self._exception_entry(ex, "fields", ex_ctx, append)
            info.comps = self._exception_entry(ex, "comps", ex_ctx, True)
            exvals = _get(ex, "values")
            if exvals is not None:
                vals_ctx = ex_ctx.child(_mark(exvals), R.EXCEPTION_VALUES)
                if not _is_seq(exvals):
                    _throw("Rule exception values must be a sequence", vals_ctx)
                for v in exvals.value:
                    vctx = vals_ctx.child(_mark(v), R.EXCEPTION_VALUE)
                    info.values.append(self._exception_entry(v, None, vctx, False))
            elif append:
                self.res.add_warning("LOAD_APPEND_NO_VALUES",
                                     "Overriding/appending exception with no values", ex_ctx)
            out.append(info)
        return out

    def _priority(self, item, ctx) -> int:
        text = self._decode_val(item, "priority", ctx)
        prio = _PRIORITIES.get(text.lower())
        if prio is None:
            _throw("Invalid priority", ctx.child(_mark(_get(item, "priority")), R.RULE_PRIORITY))
        return prio

    # --- items ---
    def _read_item(self, item, parent) -> None:
        if not _is_map(item):
            _throw("Unexpected element type. Each element should be a yaml associative array.",
                   parent.child(_mark(item), R.RULES_CONTENT_ITEM))
        if _get(item, "required_engine_version") is not None:
            self._read_engine_version(item, parent)
        elif _get(item, "required_plugin_versions") is not None:
            self._read_plugin_versions(item, parent)
        elif _get(item, "list") is not None:
            self._read_list(item, parent)
        elif _get(item, "macro") is not None:
            self._read_macro(item, parent)
        elif _get(item, "rule") is not None:
            self._read_rule(item, parent)
        else:
            self.res.add_warning("LOAD_UNKNOWN_ITEM", "Unknown top level item",
                                 parent.child(_mark(item), R.RULES_CONTENT_ITEM))

    def _read_engine_version(self, item, parent) -> None:
        ctx = parent.child(_mark(item), R.REQUIRED_ENGINE_VERSION)
        try:
            ver = (0, self._decode_val(item, "required_engine_version", ctx, kind="uint"), 0)
        except LoadError:
            text = self._decode_val(item, "required_engine_version", ctx)
            m = _SEMVER.match(text)
            if not m:
                _throw(f"Unable to parse engine version '{text}' as a semver string. Expected "
                       "\"x.y.z\" semver format.", ctx)
            ver = (int(m.group(1)), int(m.group(2)), int(m.group(3)))
        # collector::define(engine_version_info): sinsp_version::compatible_with
        have = self.catalog.engine_version
        if not (have[0] == ver[0] and have[1:] >= ver[1:]):
            _throw("Rules require engine version {}.{}.{}, but engine version is {}.{}.{}".format(
                *ver, *have), ctx, "LOAD_ERR_VALIDATE")
        if ver > self.required_engine_version:
            self.required_engine_version = ver

    def _read_plugin_versions(self, item, parent) -> None:
        node = _get(item, "required_plugin_versions")
        ctx = parent.child(_mark(node), R.REQUIRED_PLUGIN_VERSIONS)
        if not _is_seq(node):
            _throw("Value of required_plugin_versions must be a sequence", ctx)
        for plugin in node.value:
            tmp = ctx.child(_mark(plugin), R.REQUIRED_PLUGIN_VERSIONS_ENTRY)
            if not _is_map(plugin):
                _throw("Plugin version must be a mapping", tmp)
            name = self._decode_val(plugin, "name", tmp)
            pctx = ctx.child(_mark(plugin), R.REQUIRED_PLUGIN_VERSIONS_ENTRY, name)
            reqs = [(name, self._decode_val(plugin, "version", pctx))]
            alts = _get(plugin, "alternatives")
            if alts is not None:
                if not _is_seq(alts):
                    _throw("Value of plugin version alternatives must be a sequence", pctx)
                for req in alts.value:
                    tmp = pctx.child(_mark(req), R.REQUIRED_PLUGIN_VERSIONS_ALTERNATIVE)
                    if not _is_map(req):
                        _throw("Plugin version alternative must be a mapping", tmp)
                    aname = self._decode_val(req, "name", tmp)
                    tmp = pctx.child(_mark(req), R.REQUIRED_PLUGIN_VERSIONS_ALTERNATIVE, aname)
                    reqs.append((aname, self._decode_val(req, "version", tmp)))
            seen: set[str] = set()
            for rname, rver in reqs:
                if not _SEMVER.match(rver):
                    _throw(f"Invalid required version '{rver}' for plugin '{rname}'",
                           pctx, "LOAD_ERR_VALIDATE")
                if rname in seen:
                    _throw("Defined multiple alternative version requirements for plugin "
                           f"'{rname}'", pctx, "LOAD_ERR_VALIDATE")
                seen.add(rname)
            # A declared plugin is treated as loaded (as Falco runs with it configured): its
            # fields (container.* on Falco >= 0.41) become available.
            self.plugins.update(seen)
            # collector::define(plugin_version_info): kept for falco_engine::
            # check_plugin_requirements(), which Falco runs after each file (see validate()).
            self.required_plugins.append(reqs)

    def plugin_requirements_error(self) -> str | None:
        """falco_engine::check_plugin_requirements() against the plugins the Falco package loads
        (catalog.PACKAGE_PLUGINS): the first requirement no loaded plugin satisfies."""
        loaded = self.catalog.loaded_plugins
        for alternatives in self.required_plugins:
            ok = False
            for rname, rver in alternatives:
                if rname not in loaded:
                    continue
                have = loaded[rname]
                want = tuple(int(x) for x in _SEMVER.match(rver).groups())
                # sinsp_version::check(): same major, and at least the required minor.patch
                if have is not None and not (have[0] == want[0] and have[1:] >= want[1:]):
                    return ("Plugin '{}' version '{}.{}.{}' is not compatible with required "
                            "plugin version '{}'".format(rname, *have, rver))
                ok = True
                break
            if not ok:
                return "Plugin requirement not satisfied, must load one of: " + ", ".join(
                    f"{n} (>= {v})" for n, v in alternatives)
        return None

    def _next_index(self) -> int:
        i = self.cur_index
        self.cur_index += 1
        return i

    def _define(self, table: dict, info) -> None:
        idx = self._next_index()
        prev = table.get(info.name)
        if prev is not None:
            info.index = prev.index
            info.visibility = idx
        else:
            info.index = info.visibility = idx
        table[info.name] = info  # same slot when redefined: dict keeps the insertion order

    def _read_list(self, item, parent) -> None:
        tmp = parent.child(_mark(item), R.LIST)
        name = self._decode_val(item, "list", tmp)
        ctx = parent.child(_mark(item), R.LIST, name)
        if not _RGX_BARESTR.match(name):
            self.res.add_warning("LOAD_INVALID_LIST_NAME", WARNING_INVALID_LIST_NAME, ctx)
        items = self._decode_seq(item, "items", ctx, optional=False)
        append = self._decode_val(item, "append", ctx, optional=True, kind="bool") or False
        if append:
            self.res.add_warning("LOAD_DEPRECATED_ITEM", WARNING_APPEND, ctx)
        o_app, o_rep = self._decode_overrides(item, ("items",), ("items",), ctx)
        if append and (o_app or o_rep):
            _throw(ERROR_OVERRIDE_APPEND, ctx)
        info = ListInfo(name, items, ctx)
        if append or "items" in o_app:
            prev = self.lists.get(name)
            if prev is None:
                _throw(ERROR_NO_PREVIOUS_LIST, ctx, "LOAD_ERR_VALIDATE")
            prev.items = prev.items + items
            prev.visibility = self._next_index()
        else:
            self._define(self.lists, info)

    def _read_macro(self, item, parent) -> None:
        tmp = parent.child(_mark(item), R.MACRO)
        name = self._decode_val(item, "macro", tmp)
        ctx = parent.child(_mark(item), R.MACRO, name)
        if not _RGX_IDENTIFIER.match(name):
            self.res.add_warning("LOAD_INVALID_MACRO_NAME", WARNING_INVALID_MACRO_NAME, ctx)
        cond = self._decode_val(item, "condition", ctx)
        cond_ctx = ctx.child(_mark(_get(item, "condition")), R.MACRO_CONDITION)
        append = self._decode_val(item, "append", ctx, optional=True, kind="bool") or False
        if append:
            self.res.add_warning("LOAD_DEPRECATED_ITEM", WARNING_APPEND, ctx)
        o_app, o_rep = self._decode_overrides(item, ("condition",), ("condition",), ctx)
        if append and (o_app or o_rep):
            _throw(ERROR_OVERRIDE_APPEND, ctx)
        if append or "condition" in o_app:
            prev = self.macros.get(name)
            if prev is None:
                _throw(ERROR_NO_PREVIOUS_MACRO, ctx, "LOAD_ERR_VALIDATE")
            prev.cond = prev.cond + " " + cond
            prev.visibility = self._next_index()
        else:
            self._define(self.macros, MacroInfo(name, cond, ctx, cond_ctx))

    def _read_rule(self, item, parent) -> None:
        tmp = parent.child(_mark(item), R.RULE)
        name = self._decode_val(item, "rule", tmp)
        ctx = parent.child(_mark(item), R.RULE, name)
        has_append = self._decode_val(item, "append", ctx, optional=True, kind="bool") or False
        if has_append:
            self.res.add_warning("LOAD_DEPRECATED_ITEM", WARNING_APPEND, ctx)
        o_app, o_rep = self._decode_overrides(item, _RULE_APPENDABLE, _RULE_REPLACEABLE, ctx)
        if has_append and (o_app or o_rep):
            _throw(ERROR_OVERRIDE_APPEND, ctx)
        if o_app or o_rep:
            expected = {k for k in _RULE_APPENDABLE + _RULE_REPLACEABLE
                        if _get(item, k) is not None}
            for mode, keys in (("append", o_app), ("replace", o_rep)):
                if not keys:
                    continue
                upd = RuleUpdate(name, ctx)
                order = _RULE_APPENDABLE if mode == "append" else (
                    "condition", "exceptions", "output", "desc", "tags", "priority", "enabled",
                    "warn_evttypes", "skip-if-unknown-filter")
                for key in order:
                    if key not in keys:
                        continue
                    if key not in expected:
                        _throw(f"An {mode} override for '{key}' was specified but '{key}' is "
                               "not defined", ctx)
                    expected.discard(key)
                    upd.values[key] = self._rule_value(item, key, ctx)
                if mode == "append":
                    self._rule_append(upd)
                else:
                    self._rule_replace(upd)
            for key in sorted(expected):
                _throw(f"Unexpected key '{key}': no corresponding entry under 'override' is "
                       "defined.", ctx.child(_mark(_get(item, key)), R.OVERRIDE, key))
        elif has_append:
            upd = RuleUpdate(name, ctx)
            if _get(item, "condition") is not None:
                upd.values["condition"] = self._decode_val(item, "condition", ctx)
            if _get(item, "exceptions") is not None:
                upd.values["exceptions"] = self._read_exceptions(item, ctx, True)
            self._rule_append(upd)
        else:
            info = RuleInfo(name, ctx)
            if all(_get(item, k) is None for k in ("condition", "output", "desc", "priority")):
                info.enabled = self._decode_val(item, "enabled", ctx, kind="bool")
                self.res.add_warning("LOAD_DEPRECATED_ITEM", WARNING_ENABLED, ctx)
                prev = self.rules.get(name)
                if prev is None:
                    _throw("Rule has 'enabled' key but no rule by that name already exists",
                           ctx, "LOAD_ERR_VALIDATE")
                prev.enabled = info.enabled
                return
            info.cond = self._decode_val(item, "condition", ctx)
            info.cond_ctx = ctx.child(_mark(_get(item, "condition")), R.RULE_CONDITION)
            info.output = self._decode_val(item, "output", ctx)
            info.output_ctx = ctx.child(_mark(_get(item, "output")), R.RULE_OUTPUT)
            info.desc = self._decode_val(item, "desc", ctx)
            info.output = info.output.strip(" \t\n\r\f\v")
            info.priority = self._priority(item, ctx)
            src = self._decode_val(item, "source", ctx, optional=True)
            info.source = src if src is not None else _SYSCALL
            for key, attr in (("enabled", "enabled"), ("warn_evttypes", "warn_evttypes"),
                              ("skip-if-unknown-filter", "skip_if_unknown_filter")):
                v = self._decode_val(item, key, ctx, optional=True, kind="bool")
                if v is not None:
                    setattr(info, attr, v)
            tags = self._decode_seq(item, "tags", ctx, optional=True)
            info.tags = set(tags or ())
            info.exceptions = self._read_exceptions(item, ctx, has_append) or []
            self._rule_define(info)

    def _rule_value(self, item, key: str, ctx):
        if key == "exceptions":
            return self._read_exceptions(item, ctx, True) or []
        if key == "tags":
            return set(self._decode_seq(item, "tags", ctx, optional=True) or ())
        if key == "priority":
            return self._priority(item, ctx)
        if key in ("enabled", "warn_evttypes", "skip-if-unknown-filter"):
            return self._decode_val(item, key, ctx, kind="bool")
        return self._decode_val(item, key, ctx)

    # --- collector (rule_loader_collector.cpp) ---
    def _validate_exception(self, source_known: bool, ex: ExceptionInfo) -> None:
        def bad(msg):
            _throw(msg, ex.ctx, "LOAD_ERR_VALIDATE")

        if ex.fields.is_list:
            if not ex.comps.valid:
                ex.comps = Entry()
                ex.comps.is_list = True
                ex.comps.items = [Entry("=") for _ in ex.fields.items]
            if len(ex.fields.items) != len(ex.comps.items):
                bad("Fields and comps lists must have equal length")
            for c in ex.comps.items:
                if c.item not in self.grammar.operators:
                    bad(f"'{c.item}' is not a supported comparison operator")
            if source_known:
                for f in ex.fields.items:
                    if not self._field_defined(f.item):
                        bad(f"'{f.item}' is not a supported filter field")
        else:
            if not ex.comps.valid:
                ex.comps = Entry("in")
            if ex.comps.is_list:
                bad("Fields and comps must both be strings")
            if ex.comps.item not in ("in", "pmatch", "intersects"):
                bad("When fields is a single value, comps must be one of (in, pmatch, "
                    "intersects)")
            if source_known and not self._field_defined(ex.fields.item):
                bad(f"'{ex.fields.item}' is not a supported filter field")

    def _field_defined(self, text: str) -> bool:
        name = text.split("[", 1)[0]
        return self.catalog.lookup(name, frozenset(self.plugins)) is not None

    def _rule_define(self, info: RuleInfo) -> None:
        prev = self.rules.get(info.name)
        if prev is not None and prev.source != info.source:
            _throw("Rule has been re-defined with a different source", info.ctx,
                   "LOAD_ERR_VALIDATE")
        known = info.source == _SYSCALL
        if not known:
            info.unknown_source = True
            self.res.add_warning("LOAD_UNKNOWN_SOURCE",
                                 f"Unknown source {info.source}, skipping", info.ctx)
        for ex in info.exceptions:
            if not ex.fields.valid:
                _throw("Rule exception item must have fields property with a list of fields",
                       ex.ctx, "LOAD_ERR_VALIDATE")
            self._validate_exception(known, ex)
        self._define(self.rules, info)

    def _rule_prev(self, upd: RuleUpdate, msg: str, empty_msg: str) -> RuleInfo:
        prev = self.rules.get(upd.name)
        if prev is None:
            _throw(msg, upd.ctx, "LOAD_ERR_VALIDATE")
        if not upd.has_any_value():
            _throw(empty_msg, upd.ctx, "LOAD_ERR_VALIDATE")
        return prev

    def _rule_append(self, upd: RuleUpdate) -> None:
        prev = self._rule_prev(upd, ERROR_NO_PREVIOUS_RULE_APPEND,
                               "Appended rule must have exceptions or condition property")
        v = upd.values
        for key, attr in (("condition", "cond"), ("output", "output"), ("desc", "desc")):
            if v.get(key):
                setattr(prev, attr, getattr(prev, attr) + " " + v[key])
        if "tags" in v:
            prev.tags |= v["tags"]
        for ex in v.get("exceptions") or ():
            old = next((e for e in prev.exceptions if e.name == ex.name), None)
            if old is None:
                if not ex.fields.valid:
                    _throw("Rule exception must have fields property with a list of fields",
                           ex.ctx, "LOAD_ERR_VALIDATE")
                if not ex.values:
                    _throw("Rule exception must have values property with a list of values",
                           ex.ctx, "LOAD_ERR_VALIDATE")
                self._validate_exception(not prev.unknown_source, ex)
                prev.exceptions.append(ex)
            else:
                if ex.fields.valid:
                    _throw("Can not append exception fields to existing exception, only values",
                           ex.ctx, "LOAD_ERR_VALIDATE")
                if ex.comps.valid:
                    _throw("Can not append exception comps to existing exception, only values",
                           ex.ctx, "LOAD_ERR_VALIDATE")
                old.values = old.values + ex.values
        prev.visibility = self._next_index()

    def _rule_replace(self, upd: RuleUpdate) -> None:
        prev = self._rule_prev(upd, ERROR_NO_PREVIOUS_RULE_REPLACE,
                               "The rule must have at least one field that can be replaced")
        for key, val in upd.values.items():
            attr = {"condition": "cond", "skip-if-unknown-filter": "skip_if_unknown_filter"}.get(
                key, key)
            setattr(prev, attr, val)
        prev.visibility = self._next_index()

    # ------------------------------------------------------------------ compiling
    def _compile(self) -> None:
        from .compiler import Compiler

        try:
            Compiler(self).run()
        except LoadError as e:
            self.res.add_error(e.code, e.msg, e.ctx)
