"""The keys falco_forwarding writes exist upstream: Falcosidekick's outputs against Falcosidekick's
documented example config (and its Splunk page), Falco's drop-in against falco.yaml of 0.40 and
0.44. All read from verbatim copies in tests/unit/data/upstream/."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
UPSTREAM = Path(__file__).parent / "data" / "upstream"
ROLE_VARS = yaml.safe_load((ROOT / "roles/falco_forwarding/vars/main.yml").read_text())
SIDEKICK_KEYS = ROLE_VARS["__falco_forwarding_sidekick_keys"]


def documented_sidekick_keys() -> dict[str, set[str]]:
    """Each output block of config_example.yaml and its keys, commented out or not (the example
    comments most of them out): two-space indented `key:` or `# key:` lines of a block."""
    blocks: dict[str, set[str]] = {}
    current = None
    for line in (UPSTREAM / "falcosidekick-config_example.yaml").read_text().splitlines():
        top = re.match(r"^([A-Za-z][\w.]*):", line)
        if top:
            current = blocks.setdefault(top.group(1).lower(), set())
            continue
        key = re.match(r"^  #? ?([A-Za-z]\w*):", line)
        if key and current is not None:
            current.add(key.group(1).lower())
    splunk = (UPSTREAM / "falcosidekick-docs-outputs-splunk.md").read_text()
    blocks["splunk"] = {k.lower() for k in re.findall(r"`splunk\.(\w+)`", splunk)}
    return blocks


def test_parser_reads_the_example() -> None:
    blocks = documented_sidekick_keys()
    # A few keys known from Falcosidekick's docs: the parser must see them, commented or not.
    assert {"hostport", "index", "apikey", "password", "batching"} <= blocks["elasticsearch"]
    assert {"webhookurl", "outputformat"} <= blocks["slack"]
    assert blocks["splunk"] == {"host", "token", "customheaders", "checkcert", "minimumpriority"}
    assert "enabled" not in blocks["elasticsearch"]  # batching.enabled is nested, not a key


@pytest.mark.parametrize("output", sorted(SIDEKICK_KEYS))
def test_every_role_key_is_documented(output: str) -> None:
    documented = documented_sidekick_keys()
    assert output in documented, f"{output} is no Falcosidekick output"
    unknown = sorted(set(SIDEKICK_KEYS[output]) - documented[output])
    assert not unknown, f"{output}: not in Falcosidekick's documentation: {unknown}"


def test_the_issue_outputs_are_all_there() -> None:
    assert {"elasticsearch", "loki", "splunk", "webhook", "syslog", "slack"} <= set(SIDEKICK_KEYS)
    assert {"hostport", "index", "suffix", "username", "password", "apikey", "mutualtls",
            "checkcert", "minimumpriority"} <= set(SIDEKICK_KEYS["elasticsearch"])


FALCO_YAMLS = {"0.40": UPSTREAM / "falco-0.40-bb13702f.yaml",
               "0.44": UPSTREAM / "falco-0.44-43aaffc4.yaml"}
SERVICE_VARS = yaml.safe_load((ROOT / "roles/falco_service/vars/main.yml").read_text())


def falco_yaml(version: str) -> dict:
    return yaml.safe_load(FALCO_YAMLS[version].read_text())


def dropin_keys() -> dict[str, set[str]]:
    """Every key the forwarding drop-ins can write: top level, and http_output's own (the http
    transport's http_output is enabled, url and whatever falco_forwarding_http_settings may
    hold, which the role limits to __falco_forwarding_http_keys)."""
    top: set[str] = set()
    http: set[str] = set()
    for transport, config in ROLE_VARS["__falco_forwarding_dropin_configs"].items():
        top |= set(config)
        output = config.get("http_output")
        if isinstance(output, dict):
            http |= set(output)
        elif output is not None:  # a template: enabled + url + the allowed settings
            assert transport == "http"
            http |= {"enabled", "url"} | set(ROLE_VARS["__falco_forwarding_http_keys"])
    return {"top": top, "http_output": http}


@pytest.mark.parametrize("version", sorted(FALCO_YAMLS))
def test_forwarding_dropin_keys_exist_in_falco_yaml(version: str) -> None:
    upstream = falco_yaml(version)
    keys = dropin_keys()
    assert keys["top"] == {"json_output", "json_include_output_property", "http_output"}
    assert keys["top"] <= set(upstream), f"falco {version} lacks {keys['top'] - set(upstream)}"
    unknown = keys["http_output"] - set(upstream["http_output"])
    assert not unknown, f"http_output keys falco {version} does not know: {unknown}"


@pytest.mark.parametrize("version", sorted(FALCO_YAMLS))
def test_alert_file_dropin_keys_exist_in_falco_yaml(version: str) -> None:
    """The rsyslog transport reads the file falco_service's alert drop-in makes Falco write."""
    upstream = falco_yaml(version)
    config = SERVICE_VARS["__falco_service_alerts_config"]
    assert set(config) <= set(upstream)
    assert set(config["file_output"]) <= set(upstream["file_output"])


def test_http_settings_are_those_both_versions_know() -> None:
    both = set(falco_yaml("0.40")["http_output"]) & set(falco_yaml("0.44")["http_output"])
    assert set(ROLE_VARS["__falco_forwarding_http_keys"]) == both - {"enabled", "url"}
