"""The condition parser against libsinsp's grammar, positions and messages."""

from __future__ import annotations

import pytest

from falco_deploy.rules_engine.parser import GRAMMARS, ParseError, parse

G44 = GRAMMARS["0.44"]
G40 = GRAMMARS["0.40"]


def test_precedence_and_positions():
    ast = parse("a.b = 1 or not c and (d.e in (x, 'y z'))", G44)
    assert ast[0] == "or"
    left, right = ast[1]
    assert left == ("check", ("field", "a.b", None, (0, 1, 1)), "=", ("value", "1", (6, 1, 7)),
                    (0, 1, 1))
    assert right[0] == "and"
    assert right[1][0] == ("not", ("id", "c", (15, 1, 16)), (11, 1, 12))
    assert right[1][1][3] == ("list", ["x", "y z"], (29, 1, 30))


def test_multiline_positions_are_one_based():
    ast = parse("evt.type = open\n  and proc.name = cat", G44)
    assert ast[1][1][4] == (22, 2, 7)


@pytest.mark.parametrize("text,msg,idx", [
    ("", "filter input string is empty", 0),
    ("proc.name = cat dog", "unexpected token after 'cat', expecting 'or', 'and'", 16),
    ("(proc.name = cat", "expected a ')' token", 16),
    ("proc.name like x", "expected a valid check operator: one of 'exists', '<=', '<', '>=', "
     "'>', '==', '=', '!=', 'glob', 'iglob', 'contains', 'icontains', 'bcontains', "
     "'startswith', 'bstartswith', 'endswith', 'regex', 'intersects', 'in', 'pmatch'", 10),
    ("proc.name < abc", "expected a number value or a field with a valid transformer: 'val', "
     "'tolower', 'toupper', 'b64', 'basename', 'len', 'join'", 12),
    ("a.b = 1 and ", "expected a '(' token, a field check, or an identifier", 12),
    ("a.b = 1 andx", "expected blank or '(' after 'and'", 11),
    ("proc.aname[2 = x", "expected a ']' token", 12),
    ("tolower(proc.name = x", "expected a ')' token closing the transformer", 18),
    ("proc.name in x-y", "unexpected token after 'x', expecting 'or', 'and'", 14),
])
def test_errors(text, msg, idx):
    with pytest.raises(ParseError) as exc:
        parse(text, G44)
    assert exc.value.msg == msg
    assert exc.value.pos[0] == idx


def test_operators_per_version():
    # libs 0.20 (Falco 0.40) already has `regex` and len(); join() comes with libs 0.25
    for g in (G40, G44):
        assert parse("proc.cmdline regex 'a.*'", g)[2] == "regex"
        assert parse("len(proc.name) > 2", g)[1][0] == "xform"
    assert parse("join(proc.name) = x", G44)[1][0] == "xform"
    with pytest.raises(ParseError) as exc:
        parse("proc.name < abc", G40)
    assert exc.value.msg.endswith("'b64', 'basename', 'len'")


def test_field_args_and_val():
    ast = parse('proc.aname[2] = val(proc.pname) and evt.arg["name"] exists', G44)
    first, second = ast[1]
    assert first[1] == ("field", "proc.aname", "2", (0, 1, 1))
    assert first[3][0:2] == ("xform", "val")
    assert second[1][2] == "name" and second[2] == "exists"


def test_quoted_escapes():
    ast = parse(r'proc.cmdline contains "say \"hi\""', G44)
    assert ast[3][1] == 'say "hi"'


def test_not_variants():
    assert parse("not not a", G44) == ("id", "a", (8, 1, 9))
    assert parse("not(a)", G44)[0] == "not"


def test_deep_nesting_is_an_error_not_a_crash():
    with pytest.raises(ParseError):
        parse("(" * 3000 + "a" + ")" * 3000, G44)
