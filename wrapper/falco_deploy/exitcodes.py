"""Named exit codes. Every path that ends the CLI returns one of these; the README lists them."""

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0  # every host converged (or every rules file valid)
    RULES_INVALID = 1  # like `falco -V`: at least one rules file has errors
    USAGE = 2  # bad arguments, unreadable inventory or input (click uses 2 for usage errors too)
    PARTIAL = 3  # some hosts are fine, others failed, were skipped by preflight or unreachable
    FAILED = 4  # no host succeeded
    ENVIRONMENT = 5  # the control node cannot run the job (Ansible missing, content not found)
    INTERRUPTED = 130  # Ctrl-C
