"""The one user-facing error type: what went wrong, how to fix it, and which exit code it means."""

from __future__ import annotations

from falco_deploy.exitcodes import ExitCode


class FalcoDeployError(Exception):
    def __init__(self, message: str, hint: str | None = None,
                 exit_code: ExitCode = ExitCode.USAGE) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.exit_code = exit_code
