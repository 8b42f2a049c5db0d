"""Falco filter condition parser.

A port of libsinsp's recursive-descent parser (falcosecurity/libs
userspace/libsinsp/filter/parser.cpp, the version with transformers and `val()`), keeping its
lexing quirks: operators are matched as string prefixes, string operators need a trailing blank,
positions are (index, line, column) with 1-based line/column, and error messages are the same.
The operator and transformer sets depend on the libs version a Falco release ships (see
GRAMMARS).
"""

from __future__ import annotations

import re
from bisect import bisect_left

# Both regex flavours of the upstream parser (POSIX), as Python patterns.
_RGX_NOTBLANK = re.compile(r"not[ \t\n\r\f\v]+")
_RGX_IDENTIFIER = re.compile(r"[a-zA-Z]+[a-zA-Z0-9_]*")
_RGX_FIELDNAME = re.compile(r"[a-zA-Z]+[a-zA-Z0-9_]*(?:\.[a-zA-Z]+[a-zA-Z0-9_]*)+")
_RGX_FIELDARGBARESTR = re.compile(r"[^\]\[\"'\s]+")
_RGX_HEXNUM = re.compile(r"0[xX][0-9a-zA-Z]+")
_RGX_NUMBER = re.compile(r"[+\-]?[0-9]+[.]?[0-9]*(?:[eE][+\-][0-9]+)?")
_RGX_BARESTR = re.compile(r"[^()\"'\s=,]+")
_BLANKS = " \t\b\r\n"
_BLANK_RUN = re.compile("[" + re.escape(_BLANKS) + "]+")
_LINE_BREAK = re.compile("[\r\n]")

_UNARY_OPS = ("exists",)
_NUM_OPS = ("<=", "<", ">=", ">")
_LIST_OPS = ("intersects", "in", "pmatch")


class Grammar:
    """Operator/transformer sets of one libs version."""

    def __init__(self, str_ops: tuple[str, ...], transformers: tuple[str, ...]) -> None:
        self.str_ops = str_ops
        self.transformers = transformers  # with the trailing '('
        self.operators = tuple(
            o.strip() for o in _UNARY_OPS + _NUM_OPS + str_ops + _LIST_OPS)
        self.transformer_names = ("val",) + tuple(t[:-1] for t in transformers)


_STR_OPS_BASE = ("==", "=", "!=", "glob ", "iglob ", "contains ", "icontains ", "bcontains ",
                 "startswith ", "bstartswith ", "endswith ")

# Falco 0.40 ships libs 0.20: its parser.cpp already has "regex " and the len() transformer
# (real Falco 0.40.0 lists them in "expected a valid check operator: one of ..., 'endswith',
# 'regex', 'intersects', ..." and "...: 'val', 'tolower', 'toupper', 'b64', 'basename', 'len'");
# Falco 0.44 ships libs 0.25, which adds the join() transformer.
GRAMMARS = {
    "0.40": Grammar(_STR_OPS_BASE + ("regex ",),
                    ("tolower(", "toupper(", "b64(", "basename(", "len(")),
    "0.44": Grammar(_STR_OPS_BASE + ("regex ",),
                    ("tolower(", "toupper(", "b64(", "basename(", "len(", "join(")),
}


class ParseError(Exception):
    def __init__(self, msg: str, pos: tuple[int, int, int]) -> None:
        super().__init__(msg)
        self.msg = msg
        self.pos = pos


# AST nodes are small tuples, tagged by their first item; pos = (idx, line, col).
#   ("and", [children], pos) ("or", [children], pos) ("not", child, pos)
#   ("id", name, pos)                              bare identifier: a macro reference
#   ("check", left, op, right_or_None, pos)        left: field or transformer node
#   ("field", name, arg_or_None, pos) ("xform", name, child, pos)
#   ("value", text, pos) ("list", [texts], pos)


def _tok_list(vals) -> str:
    return ", ".join("'" + v + "'" for v in vals)


class Parser:
    __slots__ = ("s", "n", "i", "_breaks", "last", "g", "depth", "max_depth")

    def __init__(self, text: str, grammar: Grammar, max_depth: int = 1000) -> None:
        # libsinsp reads a C string: anything after a NUL byte is invisible to it.
        nul = text.find("\0")
        self.s = text if nul < 0 else text[:nul]
        self.n = len(self.s)
        self.i = 0
        # Positions of the line breaks (each "\n" and each "\r" counts, as libsinsp's parser
        # counts them): line and column are derived from the index only when a node needs them.
        self._breaks = [m.start() for m in _LINE_BREAK.finditer(self.s)]
        self.last = ""
        self.g = grammar
        self.depth = 0
        self.max_depth = max_depth

    # --- position helpers ---
    def pos(self) -> tuple[int, int, int]:
        """(index, line, column), 1-based: a break ends its line; the column counts from it."""
        i = self.i
        before = bisect_left(self._breaks, i)
        if before == 0:
            return (i, 1, i + 1)
        return (i, before + 1, i - self._breaks[before - 1])

    def _advance(self, text: str) -> None:
        self.i += len(text)

    def fail(self, msg: str):
        raise ParseError(msg, self.pos())

    # --- lexers ---
    def blank(self) -> bool:
        m = _BLANK_RUN.match(self.s, self.i)
        if m is None:
            return False
        self.i = m.end()
        return True

    def lit(self, tok: str) -> bool:
        if self.s.startswith(tok, self.i):
            self.last = tok
            self._advance(tok)
            return True
        return False

    def lits(self, toks) -> bool:
        for t in toks:
            if self.s.startswith(t, self.i):
                self.last = t
                self._advance(t)
                return True
        return False

    def rgx(self, pat: re.Pattern) -> bool:
        m = pat.match(self.s, self.i)
        if m is None or m.end() == self.i:
            return False
        self.last = m.group(0)
        self._advance(self.last)
        return True

    def quoted(self) -> bool:
        s, i, n = self.s, self.i, self.n
        if i >= n or s[i] not in "'\"":
            return False
        delim = s[i]
        prev = "\\"
        j = i
        while j < n:
            c = s[j]
            if c == delim and prev != "\\":
                raw = s[i:j + 1]
                self._advance(raw)
                self.last = _unescape(raw)
                return True
            prev = c
            j += 1
        return False

    # --- grammar ---
    def guard(self) -> None:
        self.depth += 1
        if self.depth >= self.max_depth:
            raise ParseError(f"exceeded max depth limit of {self.max_depth}", self.pos())

    def parse(self):
        if self.n == 0:
            raise ParseError("filter input string is empty", self.pos())
        try:
            res = self.parse_or()
        except RecursionError:
            raise ParseError(f"exceeded max depth limit of {self.max_depth}",
                             self.pos()) from None
        if self.i != self.n:
            self.fail("unexpected token after '" + self.last + "', expecting 'or', 'and'")
        return res

    def parse_or(self):
        self.guard()
        pos = self.pos()
        self.blank()
        children = [self.parse_and()]
        self.blank()
        while self.lit("or"):
            if not self.blank():
                if self.lit("("):
                    child = self.embedded_remainder()
                else:
                    self.fail("expected blank or '(' after 'or'")
            else:
                child = self.parse_and()
            children.append(child)
            self.blank()
        self.depth -= 1
        return ("or", children, pos) if len(children) > 1 else children[0]

    def parse_and(self):
        self.guard()
        pos = self.pos()
        self.blank()
        children = [self.parse_not()]
        self.blank()
        while self.lit("and"):
            if not self.blank():
                if self.lit("("):
                    child = self.embedded_remainder()
                else:
                    self.fail("expected blank or '(' after 'and'")
            else:
                child = self.parse_not()
            children.append(child)
            self.blank()
        self.depth -= 1
        return ("and", children, pos) if len(children) > 1 else children[0]

    def parse_not(self):
        self.guard()
        pos = self.pos()
        is_not = False
        self.blank()
        while self.rgx(_RGX_NOTBLANK):
            is_not = not is_not
        if self.lit("not("):
            is_not = not is_not
            child = self.embedded_remainder()
        else:
            child = self.parse_check()
        self.depth -= 1
        return ("not", child, pos) if is_not else child

    def embedded_remainder(self):
        self.guard()
        self.blank()
        child = self.parse_or()
        self.blank()
        if not self.lit(")"):
            self.fail("expected a ')' token")
        self.depth -= 1
        return child

    def parse_check(self):
        self.guard()
        pos = self.pos()
        self.blank()
        if self.lit("("):
            res = self.embedded_remainder()
        elif self.rgx(_RGX_FIELDNAME):
            left = self.field_remainder(self.last, pos)
            res = self.condition(left, pos)
        elif self.lits(self.g.transformers):
            self.blank()
            left = self.transformer_remainder(self.last[:-1], pos)
            res = self.condition(left, pos)
        elif self.rgx(_RGX_IDENTIFIER):
            res = ("id", self.last, pos)
        else:
            self.fail("expected a '(' token, a field check, or an identifier")
        self.depth -= 1
        return res

    def field_remainder(self, name: str, pos):
        arg = None
        if self.lit("["):
            if not self.quoted() and not self.rgx(_RGX_FIELDARGBARESTR):
                self.fail("expected a valid field argument: a quoted string or a bare string")
            arg = self.last
            if not self.lit("]"):
                self.fail("expected a ']' token")
        return ("field", name, arg, pos)

    def transformer_remainder(self, name: str, pos):
        self.guard()
        self.blank()
        arg_pos = self.pos()
        child = None
        if self.lits(self.g.transformers):
            self.blank()
            child = self.transformer_remainder(self.last[:-1], arg_pos)
        if self.rgx(_RGX_FIELDNAME):
            child = self.field_remainder(self.last, arg_pos)
        if child is None:
            self.fail("expected a field or a nested valid transformer: "
                      + _tok_list(self.g.transformer_names))
        self.blank()
        if not self.lit(")"):
            self.fail("expected a ')' token closing the transformer")
        self.depth -= 1
        return ("xform", name, child, pos)

    def condition(self, left, pos):
        self.guard()
        self.blank()
        if self.lits(_UNARY_OPS):
            self.depth -= 1
            return ("check", left, self.last.strip(), None, pos)
        self.blank()
        if self.lits(_NUM_OPS):
            op = self.last
            right = self.num_value()
        elif self.lits(self.g.str_ops):
            op = self.last
            right = self.str_value(False)
        elif self.lits(_LIST_OPS):
            op = self.last
            right = self.list_value()
        else:
            self.fail("expected a valid check operator: one of " + _tok_list(self.g.operators))
        self.depth -= 1
        return ("check", left, op.strip(), right, pos)

    def num_value(self):
        self.guard()
        self.blank()
        pos = self.pos()
        res = self.transformer_or_val()
        if res is None:
            if self.rgx(_RGX_HEXNUM) or self.rgx(_RGX_NUMBER):
                res = ("value", self.last, pos)
            else:
                self.fail("expected a number value or a field with a valid transformer: "
                          + _tok_list(self.g.transformer_names))
        self.depth -= 1
        return res

    def str_value(self, no_transformer: bool):
        self.guard()
        self.blank()
        pos = self.pos()
        if not no_transformer:
            res = self.transformer_or_val()
            if res is not None:
                self.depth -= 1
                return res
        if self.quoted() or self.rgx(_RGX_BARESTR):
            self.depth -= 1
            return ("value", self.last, pos)
        if no_transformer:
            self.fail("expected a string value")
        self.fail("expected a string value or a field with a valid transformer: "
                  + _tok_list(self.g.transformer_names))

    def list_value(self):
        self.guard()
        self.blank()
        pos = self.pos()
        if self.lit("("):
            values = []
            self.blank()
            depth = self.depth
            try:
                child = self.str_value(True)
            except ParseError:
                self.depth = depth
                child = None
            if child is not None:
                values.append(child[1])
                self.blank()
                while self.lit(","):
                    values.append(self.str_value(True)[1])
                    self.blank()
            if not self.lit(")"):
                self.fail("expected a ')' token")
            self.depth -= 1
            return ("list", values, pos)
        res = self.transformer_or_val()
        if res is not None:
            self.depth -= 1
            return res
        if self.rgx(_RGX_IDENTIFIER):
            self.depth -= 1
            return ("value", self.last, pos)
        self.fail("expected a list, an identifier, or a field with a valid transformer: "
                  + _tok_list(self.g.transformer_names))

    def transformer_or_val(self):
        self.guard()
        self.blank()
        pos = self.pos()
        if self.lit("val("):
            self.blank()
            field_pos = self.pos()
            if not self.rgx(_RGX_FIELDNAME):
                self.fail("expected a field within 'val' transformer")
            child = self.field_remainder(self.last, field_pos)
            self.blank()
            if not self.lit(")"):
                self.fail("expected a ')' token closing the transformer")
            self.depth -= 1
            return ("xform", "val", child, pos)
        if self.lits(self.g.transformers):
            self.blank()
            res = self.transformer_remainder(self.last[:-1], pos)
            self.depth -= 1
            return res
        self.depth -= 1
        return None


_ESCAPES = {"\\": "\\", "\"": "\"", "'": "'", "b": "\b", "f": "\f", "n": "\n", "r": "\r",
            "t": "\t"}


def _unescape(quoted: str) -> str:
    """Strip the quotes and resolve backslash escapes (libsinsp filter/escaping.cpp)."""
    body = quoted[1:-1]
    if "\\" not in body:
        return body
    out = []
    i, n = 0, len(body)
    while i < n:
        c = body[i]
        if c == "\\" and i + 1 < n:
            nxt = body[i + 1]
            out.append(_ESCAPES.get(nxt, "\\" + nxt))
            i += 2
            continue
        out.append(c)
        i += 1
    return "".join(out)


def parse(text: str, grammar: Grammar):
    """Parse a condition; raise ParseError(msg, pos) like libsinsp's parser::parse()."""
    return Parser(text, grammar).parse()
