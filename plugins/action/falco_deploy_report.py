# Copyright: falco-deploy contributors
# Apache License 2.0 (see LICENSE)
"""falco_deploy_report: return a host's `falco_deploy_result` in the shape its contract pins
(plugins/module_utils/falco_deploy_result.py). Runs on the control node only: nothing to ship
(documentation: plugins/modules/falco_deploy_report.py)."""

from __future__ import annotations

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase
from ansible_collections.falco_deploy.falco.plugins.module_utils import falco_deploy_result


class ActionModule(ActionBase):
    _supports_check_mode = True  # builds a dict, changes nothing
    _supports_async = False
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars or {})
        args = self._task.args
        unknown = set(args) - {"kind", "report"}
        if unknown:
            raise AnsibleActionFail(f"unsupported options: {', '.join(sorted(unknown))}")
        report = args.get("report")
        if not isinstance(report, dict):
            raise AnsibleActionFail("report: a dict with at least `status` is required")
        try:
            built = falco_deploy_result.build(str(args.get("kind") or ""), report)
        except ValueError as e:
            raise AnsibleActionFail(f"falco_deploy_result breaks its contract: {e}") from e
        # Shown without -v, as `debug var=` would, so a plain ansible-playbook run shows each
        # host's report.
        result.update(changed=False, falco_deploy_result=built, _ansible_verbose_always=True)
        return result
