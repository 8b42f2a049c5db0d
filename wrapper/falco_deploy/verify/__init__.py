"""Purple-team verification core: read Falco's JSON alerts and match them to scenario runs.

Pure Python (stdlib + PyYAML), no Ansible import: the verify command runs the scenarios through
the runner, then hands the alert lines and the run record to these modules.

- `alerts`: parse Falco JSON alert lines (the host-side module reads them from the alert file).
- `scenarios`: the scenario catalogue (scenarios.yaml) and the `purple-<runid>-<scenario>`
  container-name convention.
- `matcher`: attribute alerts to scenario containers; fired / late / missed / not run / false
  positives per scenario, with latency from trigger to first alert.
- `junit`: JUnit XML for CI dashboards (testsuite per host, testcase per scenario).
"""
