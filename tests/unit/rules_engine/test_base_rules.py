"""The upstream base rules shipped for the offline gate (and `rules validate --base upstream`)
are the corpus files."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from falco_deploy.rules_engine.gate import upstream_rules_file

ROOT = Path(__file__).resolve().parents[3]


def test_packaged_base_rules_are_the_upstream_files(corpus):
    rules = corpus / "falcosecurity-rules"
    assert (Path(upstream_rules_file("0.44")).read_bytes()
            == (rules / "main" / "falco_rules.yaml").read_bytes())
    assert (Path(upstream_rules_file("0.40")).read_bytes()
            == (rules / "falco-rules-3.2.0" / "falco_rules.yaml").read_bytes())
    notice = Path(upstream_rules_file("0.44")).with_name("NOTICE").read_text()
    assert "falcosecurity/rules" in notice and "Apache License, Version 2.0" in notice
    # The notice names the project's LICENSE as the licence text: it is upstream's, byte for byte.
    assert (ROOT / "LICENSE").read_bytes() == (rules / "LICENSE").read_bytes()


def test_generator_check_passes_and_notices_a_stale_copy(corpus, tmp_path):
    spec = importlib.util.spec_from_file_location("gen_rules_catalog",
                                                  ROOT / "scripts/gen_rules_catalog.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    fields = corpus / "falco-fields"
    assert gen.main(["--corpus", str(fields), "--check"]) == 0
    assert gen.main(["--corpus", str(fields), "--out", str(tmp_path)]) == 0
    (tmp_path / "falco_rules-0.40.yaml").write_bytes(b"- list: x\n  items: []\n")
    assert gen.main(["--corpus", str(fields), "--out", str(tmp_path), "--check"]) == 1


def test_unknown_falco_version_has_no_base():
    from falco_deploy.commands.validate import base_rules_file
    from falco_deploy.errors import FalcoDeployError

    with pytest.raises(ValueError, match="0.39"):
        upstream_rules_file("0.39")
    with pytest.raises(FalcoDeployError, match="unsupported Falco version '0.39'"):
        base_rules_file("0.39")
