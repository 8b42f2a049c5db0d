"""What `falco-deploy verify` does on the control node; the judging itself runs on each host.

The scenario catalogue lives in the falco_verify role (roles/falco_verify/files/scenarios.yml)
and the judge in its module_utils (falco_verify_judge.py), so that plain ansible-playbook runs
the same checks without this package.

- `catalogue`: read the catalogue of the project a run uses and check it, and the names of
  `--scenario`, with the role's own code, before any host is touched.
- `junit`: JUnit XML for CI dashboards (testsuite per host, testcase per scenario).
"""
