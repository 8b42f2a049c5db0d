"""Load results in Falco's shapes: JSON (`falco -V ... -o json_output=true`) and human text.

Follows falcosecurity/falco userspace/engine/rule_loader.cpp (context, as_string, as_json,
snippet), falco_load_result.cpp (codes and descriptions) and
userspace/falco/app/actions/validate_rules_files.cpp (the per-file summary and the envelope).
"""

from __future__ import annotations

import json

ERROR_STRINGS = {
    "LOAD_ERR_FILE_READ": "File read error",
    "LOAD_ERR_YAML_PARSE": "YAML parse error",
    "LOAD_ERR_YAML_VALIDATE": "Error validating internal structure of YAML file",
    "LOAD_ERR_COMPILE_CONDITION": "Error compiling condition",
    "LOAD_ERR_COMPILE_OUTPUT": "Error compiling output",
    "LOAD_ERR_VALIDATE": "Error validating rule/macro/list/exception objects",
    "LOAD_ERR_EXTENSION": "Error in extension item",
}

WARNING_STRINGS = {
    "LOAD_UNKNOWN_SOURCE": "Unknown event source",
    "LOAD_UNSAFE_NA_CHECK": "Unsafe <NA> comparison in condition",
    "LOAD_NO_EVTTYPE": "Condition has no event-type restriction",
    "LOAD_UNKNOWN_FILTER": "Unknown field or event-type in condition or output",
    "LOAD_UNUSED_MACRO": "Unused macro",
    "LOAD_UNUSED_LIST": "Unused list",
    "LOAD_UNKNOWN_ITEM": "Unknown rules file item",
    "LOAD_DEPRECATED_ITEM": "Used deprecated item",
    "LOAD_WARNING_EXTENSION": "Warning in extension item",
    "LOAD_APPEND_NO_VALUES": "Overriding/appending with no values",
    "LOAD_EXCEPTION_NAME_NOT_UNIQUE": "Multiple exceptions defined with the same name",
    "LOAD_INVALID_MACRO_NAME": "Invalid macro name",
    "LOAD_INVALID_LIST_NAME": "Invalid list name",
    "LOAD_COMPILE_CONDITION": "Warning in rule condition",
    "LOAD_UNKNOWN_KEY": "Unknown key in item definition",
}

# Falco's error_desc() returns the short error string (an upstream quirk the real JSON shows:
# "codedesc":"Error compiling condition"), while warning_desc() returns the long description.
WARNING_DESCS = {
    "LOAD_UNKNOWN_SOURCE": "A rule has a unknown event source. This can occur when reading rules "
    "content without having a corresponding plugin loaded, etc. The rule will be silently "
    "ignored.",
    "LOAD_UNSAFE_NA_CHECK": "Comparing a field value with <NA> is unsafe and can lead to "
    "unpredictable behavior of the rule condition. If you need to check for the existence of a "
    "field, consider using the 'exists' operator instead.",
    "LOAD_NO_EVTTYPE": "A rule condition matches too many evt.type values. This has a "
    "significant performance penalty. Make the condition more specific by adding an evt.type "
    "field or further restricting the number of evt.type values in the condition.",
    "LOAD_UNKNOWN_FILTER": "A rule condition or output refers to a field or evt.type that does "
    "not exist. This is normally an error, but if a rule has a skip-if-unknown-filter property, "
    "the error is downgraded to a warning.",
    "LOAD_UNUSED_MACRO": "A macro is defined in the rules content but is not used by any other "
    "macro or rule.",
    "LOAD_UNUSED_LIST": "A list is defined in the rules content but is not used by any other "
    "list, macro, or rule.",
    "LOAD_UNKNOWN_ITEM": "An unknown top-level object is in the rules content. It will be "
    "ignored.",
    "LOAD_DEPRECATED_ITEM": "A deprecated item is employed by lists, macros, or rules.",
    "LOAD_WARNING_EXTENSION": "An extension item has a warning",
    "LOAD_APPEND_NO_VALUES": "A rule exception is overriding/appending with no values",
    "LOAD_EXCEPTION_NAME_NOT_UNIQUE": "A rule is defining multiple exceptions with the same name",
    "LOAD_INVALID_MACRO_NAME": "A macro is defined with an invalid name",
    "LOAD_INVALID_LIST_NAME": "A list is defined with an invalid name",
    "LOAD_COMPILE_CONDITION": "A rule condition or output have been parsed with a warning",
    "LOAD_UNKNOWN_KEY": "An item in the rules content contains an unrecognized key. The key will "
    "be ignored. This may indicate a typo or a property placed on the wrong item type.",
}

# rule_loader.cpp item_type_strings
VALUE_FOR = "value for"
EXCEPTIONS = "exceptions"
EXCEPTION = "exception"
EXCEPTION_VALUES = "exception values"
EXCEPTION_VALUE = "exception value"
RULES_CONTENT = "rules content"
RULES_CONTENT_ITEM = "rules content item"
REQUIRED_ENGINE_VERSION = "required_engine_version"
REQUIRED_PLUGIN_VERSIONS = "required plugin versions"
REQUIRED_PLUGIN_VERSIONS_ENTRY = "required plugin versions entry"
REQUIRED_PLUGIN_VERSIONS_ALTERNATIVE = "required plugin versions alternative"
LIST = "list"
LIST_ITEM = "list item"
MACRO = "macro"
MACRO_CONDITION = "macro condition"
RULE = "rule"
RULE_CONDITION = "rule condition"
CONDITION_EXPRESSION = "condition expression"
RULE_OUTPUT = "rule output"
RULE_OUTPUT_EXPRESSION = "rule output expression"
RULE_PRIORITY = "rule priority"
OVERRIDE = "overrides"

SNIPPET_WIDTH = 160


class Context:
    """A chain of locations: (name, offset, line, column, item_type, item_name).

    alt_content replaces the file text for the snippet (condition expressions).
    """

    __slots__ = ("locs", "alt_content")

    def __init__(self, locs: tuple, alt_content: str = "") -> None:
        self.locs = locs
        self.alt_content = alt_content

    @classmethod
    def root(cls, name: str) -> Context:
        return cls(((name, 0, 0, 0, RULES_CONTENT, ""),))

    @property
    def name(self) -> str:
        return self.locs[0][0]

    def child(self, mark: tuple, item_type: str, item_name: str = "") -> Context:
        """A location for a YAML node; mark = (offset, line, column), all 0-based like yaml-cpp."""
        return Context(self.locs + ((self.name, mark[0], mark[1], mark[2], item_type,
                                     item_name),))

    def condition(self, pos: tuple, condition: str) -> Context:
        """rule_loader::context(pos_info, condition, parent): parser positions (1-based line and
        column) added to the parent's last location."""
        last = self.locs[-1]
        cname = '"' + (condition[:17] + '..."' if len(condition) > 20 else condition + '"')
        cname = cname.replace("\n", " ").replace("\r", " ")
        loc = (cname, pos[0] + last[1], pos[1] + last[2], pos[2] + last[3],
               CONDITION_EXPRESSION, "")
        return Context(self.locs + (loc,), condition)

    def as_string(self) -> str:
        out = []
        for i, (name, _off, line, col, itype, iname) in enumerate(self.locs):
            prefix = "In " if i == 0 else "    "
            label = itype + (" '" + iname + "'" if iname else "")
            out.append(f"{prefix}{label}: ({name}:{line}:{col})\n")
        return "".join(out)

    def as_json(self) -> dict:
        return {"locations": [
            {"item_type": itype, "item_name": iname,
             "position": {"name": name, "line": line, "column": col, "offset": off}}
            for (name, off, line, col, itype, iname) in self.locs]}

    def snippet(self, contents: dict[str, str], width: int = SNIPPET_WIDTH) -> str:
        name, pos = self.locs[-1][0], self.locs[-1][1]
        if self.alt_content:
            content = self.alt_content
        else:
            if name not in contents:
                return "<No context for file + " + name + ">\n"
            content = contents[name]
        if not content:
            return "<No context available>\n"
        n = len(content)
        half = width // 2
        while pos > 0 and (pos >= n or content[pos] == "\n"):
            pos -= 1
        frm = pos
        while frm > 0 and content[frm] != "\n" and (pos - frm) < half:
            frm -= 1
        to = pos
        while to < n - 1 and content[to] != "\n" and (to - pos) < half:
            to += 1
        if frm < n and content[frm] == "\n":
            frm += 1
        if to < n and content[to] == "\n":
            to -= 1
        ret = content[frm:to + 1]
        if not ret:
            return "<No context available>\n"
        if pos - frm >= half:
            ret = "..." + ret[3:]
        if to - pos >= half:
            ret = ret[:-3] + "..."
        ret += "\n"
        if pos - frm <= len(ret) - 1:
            ret += " " * (pos - frm) + "^\n"
        return ret


class Message:
    __slots__ = ("code", "msg", "ctx", "label")

    def __init__(self, code: str, msg: str, ctx: Context, label: str = "") -> None:
        self.code = code
        self.msg = msg
        self.ctx = ctx
        self.label = label  # replaces the code's short text in the human output


class FileResult:
    """The load result of one rules file (rule_loader::result)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.errors: list[Message] = []
        self.warnings: list[Message] = []
        self.schema_valid = True
        self.schema_warnings: list[str] = []
        self.contents: dict[str, str] = {}

    @property
    def successful(self) -> bool:
        return not self.errors

    def add_error(self, code: str, msg: str, ctx: Context) -> None:
        self.errors.append(Message(code, msg, ctx))

    def add_warning(self, code: str, msg: str, ctx: Context, label: str = "") -> None:
        self.warnings.append(Message(code, msg, ctx, label))

    @property
    def error_codes(self) -> list[str]:
        return [m.code for m in self.errors]

    @property
    def warning_codes(self) -> list[str]:
        return [m.code for m in self.warnings]

    def as_json(self) -> dict:
        def one(m: Message, desc: str) -> dict:
            ctx = m.ctx.as_json()
            ctx["snippet"] = m.ctx.snippet(self.contents)
            return {"context": ctx, "code": m.code, "codedesc": desc, "message": m.msg}

        return {
            "name": self.name,
            "successful": self.successful,
            "errors": [one(e, ERROR_STRINGS[e.code]) for e in self.errors],
            "warnings": [one(w, WARNING_DESCS[w.code]) for w in self.warnings],
            "schema_valid": self.schema_valid,
            "schema_warnings": list(self.schema_warnings),
        }

    def as_verbose_string(self) -> str:
        out = [self.name + ": " if self.name else ""]
        if self.successful:
            out.append("Ok" + (", with warnings" if self.warnings else ""))
        else:
            out.append("Invalid")
        if self.errors:
            out.append(f"\n{len(self.errors)} Errors:\n")
            for e in self.errors:
                out.append(e.ctx.as_string())
                out.append("------\n" + e.ctx.snippet(self.contents) + "------\n")
                out.append(f"{e.code} ({ERROR_STRINGS[e.code]}): {e.msg}\n")
        if self.warnings:
            out.append(f"\n{len(self.warnings)} Warnings:\n")
            for w in self.warnings:
                out.append(w.ctx.as_string())
                out.append("------\n" + w.ctx.snippet(self.contents) + "------\n")
                out.append(f"{w.code} ({w.label or WARNING_STRINGS[w.code]}): {w.msg}\n")
        return "".join(out)

    def summary(self) -> str:
        """What `falco -V` puts on stdout for this file (warnings go to the log instead)."""
        if not self.successful or not self.warnings:
            return self.as_verbose_string()
        return self.name + ": Ok, with warnings"


class Report:
    """Results of loading a list of files into one engine, in load order."""

    def __init__(self, results: list[FileResult], fatal: str | None = None) -> None:
        self.results = results
        # Set when Falco stops before printing any result (validate_rules_files.cpp returns
        # run_result::fatal: "Error: <fatal>" on stderr, exit 1), e.g. an unsatisfied
        # required_plugin_versions; `results` then holds the files loaded up to that point.
        self.fatal = fatal

    @property
    def ok(self) -> bool:
        return self.fatal is None and all(r.successful for r in self.results)

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 1

    def to_json(self) -> dict:
        return {"falco_load_results": [r.as_json() for r in self.results]}

    def to_json_text(self) -> str:
        # nlohmann::json objects are std::map: keys sorted, compact dump, UTF-8 as is.
        return json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"),
                          ensure_ascii=False)

    def to_text(self) -> str:
        """The summary `falco -V` prints on stdout (one block per file); after a fatal stop,
        Falco prints no summary, only the error."""
        if self.fatal is not None:
            return self.fatal
        return "\n".join(r.summary() for r in self.results)

    def warnings_text(self) -> str:
        """What Falco logs for files that are Ok with warnings (its stderr)."""
        return "".join(r.as_verbose_string() + "\n"
                       for r in self.results if r.successful and r.warnings)


class _FixedContext(Context):
    """A context read back from Falco's JSON: the snippet is already rendered."""

    __slots__ = ("fixed_snippet",)

    def __init__(self, locs: tuple, snippet: str) -> None:
        super().__init__(locs)
        self.fixed_snippet = snippet

    def snippet(self, contents: dict[str, str], width: int = SNIPPET_WIDTH) -> str:
        return self.fixed_snippet


def report_from_falco_json(doc: dict) -> Report:
    """Rebuild a Report from real `falco -V ... -o json_output=true` output, so both engines
    render through the same code."""
    out = []
    for fr in doc.get("falco_load_results", []):
        res = FileResult(str(fr.get("name", "")))
        res.schema_valid = bool(fr.get("schema_valid", True))
        res.schema_warnings = list(fr.get("schema_warnings", []))
        for key, add, known in (("errors", res.errors, ERROR_STRINGS),
                                ("warnings", res.warnings, WARNING_STRINGS)):
            for m in fr.get(key, []):
                ctx = m.get("context", {})
                locs = tuple(
                    (loc["position"]["name"], loc["position"]["offset"], loc["position"]["line"],
                     loc["position"]["column"], loc["item_type"], loc["item_name"])
                    for loc in ctx.get("locations", []))
                code = str(m.get("code", ""))
                known.setdefault(code, str(m.get("codedesc", "")))
                if key == "warnings":
                    WARNING_DESCS.setdefault(code, str(m.get("codedesc", "")))
                add.append(Message(code, str(m.get("message", "")),
                                   _FixedContext(locs, str(ctx.get("snippet", "")))))
        out.append(res)
    return Report(out)
