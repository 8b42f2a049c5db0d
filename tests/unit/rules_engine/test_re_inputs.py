"""Bad inputs get a clear error result, never a traceback."""

from __future__ import annotations

import os

import pytest

from falco_deploy.rules_engine import validate


def test_missing_file(tmp_path):
    report = validate([str(tmp_path / "nope.yaml")])
    (res,) = report.results
    assert res.error_codes == ["LOAD_ERR_FILE_READ"]
    assert "No such file" in res.errors[0].msg
    assert report.exit_code == 1
    assert "LOAD_ERR_FILE_READ (File read error)" in report.to_text()


def test_unreadable_file(tmp_path, monkeypatch):
    path = tmp_path / "secret.yaml"
    path.write_text("- list: a\n  items: []\n")
    path.chmod(0)
    if os.geteuid() == 0:
        # root reads a mode-0 file anyway (as CI does): make the open fail as it would for others
        import builtins

        real_open = builtins.open

        def deny(file, *args, **kwargs):
            if str(file) == str(path):
                raise PermissionError(13, "Permission denied", str(file))
            return real_open(file, *args, **kwargs)

        monkeypatch.setattr(builtins, "open", deny)
    (res,) = validate([str(path)]).results
    assert res.error_codes == ["LOAD_ERR_FILE_READ"]
    assert "Permission denied" in res.errors[0].msg


def test_non_utf8(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("- list: caf\u00e9\n  items: []\n".encode("latin-1"))
    (res,) = validate([str(path)]).results
    assert res.error_codes == ["LOAD_ERR_YAML_PARSE"]
    assert "not valid UTF-8" in res.errors[0].msg


def test_folder_without_rules(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    (res,) = validate([str(tmp_path)]).results
    assert res.error_codes == ["LOAD_ERR_FILE_READ"]
    assert "no rules files" in res.errors[0].msg


def test_unknown_version():
    with pytest.raises(ValueError):
        validate([], falco_version="0.1")


def test_later_file_sees_earlier_definitions_and_warnings(tmp_path):
    a = tmp_path / "a.yaml"
    a.write_text("- macro: m\n  condition: evt.type = open\n")
    b = tmp_path / "b.yaml"
    b.write_text("- rule: R\n  desc: d\n  condition: m\n  output: x\n  priority: INFO\n")
    ra, rb = validate([str(a), str(b)]).results
    # the engine compiles everything loaded so far: m is unused after a, used after b
    assert ra.warning_codes == ["LOAD_UNUSED_MACRO"]
    assert rb.warning_codes == []


def test_errors_of_earlier_file_items_are_reported_in_later_loads(tmp_path):
    a = tmp_path / "a.yaml"
    a.write_text("- list: l\n  items: [x]\n")
    b = tmp_path / "b.yaml"
    b.write_text("- list: other\n  items: [y]\n")
    ra, rb = validate([str(a), str(b)]).results
    assert ra.warning_codes == ["LOAD_UNUSED_LIST"]
    assert rb.warning_codes == ["LOAD_UNUSED_LIST", "LOAD_UNUSED_LIST"]
    assert rb.warnings[0].ctx.name == str(a)


def test_a_list_bomb_is_refused_quickly(tmp_path):
    """Lists whose items name lists defined after them multiply a condition tenfold per list
    (Falco substitutes lists in definition order, rule_loader_compiler.cpp parse_condition()):
    six levels would be a condition of ten million items on every host."""
    import time

    lines = [f"- list: l{i}\n  items: [{', '.join([f'l{i + 1}'] * 10)}]\n" for i in range(6)]
    lines.append("- list: l6\n  items: [a, b, c, d, e, f, g, h, i, j]\n")
    lines.append("- rule: r\n  desc: d\n  condition: evt.type = open and proc.name in (l0)\n"
                 "  output: x\n  priority: WARNING\n")
    path = tmp_path / "bomb.yaml"
    path.write_text("".join(lines))
    started = time.monotonic()
    (res,) = validate([str(path)]).results
    assert time.monotonic() - started < 5
    assert res.error_codes == ["LOAD_ERR_COMPILE_CONDITION"]
    assert "would make the condition larger than 1000000 characters" in res.errors[0].msg


def test_a_small_chain_of_lists_still_loads(tmp_path):
    lines = [f"- list: l{i}\n  items: [{', '.join([f'l{i + 1}'] * 3)}]\n" for i in range(3)]
    lines.append("- list: l3\n  items: [a, b]\n")
    lines.append("- rule: r\n  desc: d\n  condition: evt.type = open and proc.name in (l0)\n"
                 "  output: x\n  priority: WARNING\n")
    path = tmp_path / "chain.yaml"
    path.write_text("".join(lines))
    assert validate([str(path)]).ok
