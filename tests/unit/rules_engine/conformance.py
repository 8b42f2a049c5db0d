"""Compare the offline validator with real Falco 0.40.0 on the 860 recorded cases of
../shared/corpus/falco-verdicts-0.40 (see its README): exit status (zero / non-zero), per-file
`successful`, and the sets of error and warning codes; and how many of Falco's error messages
the validator gives verbatim.

Run as a script for the whole picture: `python tests/unit/rules_engine/conformance.py [FAMILY]`.
"""

from __future__ import annotations

import json
import os
import sys
from collections import Counter
from dataclasses import dataclass
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
if str(ROOT / "wrapper") not in sys.path:
    sys.path.insert(0, str(ROOT / "wrapper"))

from falco_deploy.rules_engine import validate  # noqa: E402

# The same path as conftest.CORPUS: importing `conftest` would get tests/standin's when pytest
# collects both folders in one run.
CORPUS = Path(os.environ.get("FALCO_DEPLOY_SHARED") or ROOT.parent / "shared") / "corpus"

VERDICTS = CORPUS / "falco-verdicts-0.40"


@dataclass
class Outcome:
    case: dict
    ours: dict
    theirs: dict
    messages: int  # Falco's error messages in this case
    verbatim: int  # of those, how many the validator gave word for word

    @property
    def agrees(self) -> bool:
        return self.ours == self.theirs


def verdicts() -> list[dict]:
    return json.loads((VERDICTS / "verdicts.json").read_text(encoding="utf-8"))


def compare(case: dict) -> Outcome:
    files = [str((VERDICTS / f).resolve()) for f in case["files"]]
    report = validate(files, falco_version="0.40")
    results = report.to_json()["falco_load_results"]
    ours = {"exit": report.exit_code != 0,
            "successful": [r["successful"] for r in results],
            "errors": sorted({e["code"] for r in results for e in r["errors"]}),
            "warnings": sorted({w["code"] for r in results for w in r["warnings"]})}
    if "fatal" in case:
        # Falco stopped before printing results (a plugin requirement): only the exit counts.
        theirs = {**ours, "exit": case["exit_code"] != 0}
        return Outcome(case, ours, theirs, 0, 0)
    theirs = {"exit": case["exit_code"] != 0, "successful": case["successful"],
              "errors": sorted(case["error_codes"]), "warnings": sorted(case["warning_codes"])}
    given = [e["message"] for r in results for e in r["errors"]]
    return Outcome(case, ours, theirs, len(case["messages"]),
                   sum(1 for m in case["messages"] if m in given))


@cache
def compare_all() -> tuple[Outcome, ...]:
    """Every recorded case, compared once per test session."""
    return tuple(compare(case) for case in verdicts())


def main(argv: list[str]) -> int:
    outcomes = compare_all()
    agree = sum(o.agrees for o in outcomes)
    print(f"agree {agree} of {len(outcomes)}")
    print("disagreements by family:",
          Counter(o.case["family"] for o in outcomes if not o.agrees).most_common())
    print(f"error messages verbatim: {sum(o.verbatim for o in outcomes)} of "
          f"{sum(o.messages for o in outcomes)}")
    for o in outcomes:
        if not o.agrees and (not argv or o.case["family"] in argv or o.case["id"] in argv):
            print(f"{o.case['id']} {o.case['family']}: {o.case['what']}\n  ours   {o.ours}\n"
                  f"  falco  {o.theirs}\n  falco messages {o.case.get('messages')}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
