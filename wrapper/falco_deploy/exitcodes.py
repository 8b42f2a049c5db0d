"""Named exit codes. Every path that ends the CLI returns one of these; the README lists them."""

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0  # every host converged (or every rules file valid)
    RULES_INVALID = 1  # like `falco -V`: at least one rules file has errors
    USAGE = 2  # bad arguments, unreadable inventory or input (click uses 2 for usage errors too)
    PARTIAL = 3  # some hosts are fine, others failed, were skipped by preflight or unreachable
    FAILED = 4  # no host succeeded
    ENVIRONMENT = 5  # the control node cannot run the job (Ansible missing, content not found)
    # `status`: every host answered, but some hosts' live rules differ from their active
    # release's manifest (out-of-band edits). Distinct from PARTIAL so a cron job can tell
    # "someone edited rules by hand" from "a host is down".
    DRIFT = 6
    # `verify`: a scenario ran but an expected rule did not fire within the timeout (missed or
    # late) on at least one host. Takes precedence over PARTIAL: a detection gap is the finding
    # a CI job must not let pass, even when other hosts could not run the scenarios.
    DETECTION_MISSED = 7
    # `status`, `rules deploy`, `rollback`: a host answered, but Falco does not protect it: not
    # installed, not running or restarting in a loop, or its rules folder is missing or a
    # dangling symlink (also after a deploy that went live on disk). Outranks PARTIAL and DRIFT:
    # a dead Falco is the worst state a host can be in.
    UNPROTECTED = 8
    # Stopped by a signal, 128 + its number as a shell reports it: the run's child processes were
    # stopped and the summary printed with the hosts that did not finish as "interrupted".
    HANGUP = 129  # SIGHUP (the terminal went away)
    INTERRUPTED = 130  # Ctrl-C (SIGINT)
    TERMINATED = 143  # SIGTERM (a service manager or `kill`)
