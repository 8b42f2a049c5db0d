"""The shipped catalogues are exactly what the generator makes of the corpus."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from falco_deploy.rules_engine import catalog

ROOT = Path(__file__).resolve().parents[3]


def _generator():
    spec = importlib.util.spec_from_file_location("gen_rules_catalog",
                                                  ROOT / "scripts/gen_rules_catalog.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("version", ["0.44", "0.40"])
def test_data_files_are_up_to_date(corpus, version):
    gen = _generator()
    expected = gen.render(gen.build(corpus / "falco-fields", version))
    shipped = (catalog.DATA_DIR / f"catalog-{version}.json").read_text(encoding="utf-8")
    assert shipped == expected, "run scripts/gen_rules_catalog.py"


def test_container_fields_come_from_the_plugin_on_044():
    cat = catalog.load("0.44")
    assert cat.fields["container.id"][2] == "container"
    assert cat.lookup("container.id", frozenset()) is None
    assert cat.lookup("container.id", frozenset({"container"}))[0] == "CHARBUF"
    assert catalog.load("0.40").lookup("container.id", frozenset()) is not None


def test_dotted_arguments():
    cat = catalog.load("0.44")
    assert cat.lookup("evt.arg.flags", frozenset()) is not None
    assert cat.lookup("evt.type.is.open", frozenset()) is not None
    assert cat.lookup("proc.name.x", frozenset()) is None


def test_op_type_errors():
    assert catalog.op_type_error("contains", "INT64") == (
        "'contains' operator not supported for numeric filters")
    assert catalog.op_type_error("=", "INT64") is None
    assert catalog.op_type_error("exists", "IPNET") is None
    assert catalog.op_type_error("glob", "IPADDR") is not None
    assert catalog.op_type_error("contains", "LIST(CHARBUF)") is not None
    assert catalog.op_type_error("bcontains", "BYTEBUF") is None
