"""Command-line entry point: parses arguments and renders results, nothing else.

Each command is a plain function in falco_deploy.commands.* taking typed options and returning a
result object. Heavy modules (ansible_runner, rich) are imported inside the commands that need them,
so `falco-deploy rules validate` starts fast enough for a pre-commit hook.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from falco_deploy import __version__
from falco_deploy.errors import FalcoDeployError
from falco_deploy.exitcodes import ExitCode


class _UserError(click.ClickException):
    """A FalcoDeployError shown the click way: message and hint on stderr, its own exit code."""

    def __init__(self, error: FalcoDeployError) -> None:
        super().__init__(error.message)
        self.hint = error.hint
        self.exit_code = int(error.exit_code)

    def show(self, file: object = None) -> None:
        click.echo(f"Error: {self.message}", err=True)
        if self.hint:
            click.echo(f"Hint: {self.hint}", err=True)


class _Group(click.Group):
    """Turns the one user-facing error type and Ctrl-C into exit codes, for every subcommand
    (click alone would print a traceback for the first and exit 1 for the second)."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except FalcoDeployError as exc:
            raise _UserError(exc) from exc
        except KeyboardInterrupt:
            click.echo("\nInterrupted.", err=True)
            ctx.exit(int(ExitCode.INTERRUPTED))


_ALL_EXIT_CODES_HELP = """\b
Exit codes (each command's --help says which it uses):
  0  success
  1  rules invalid (rules validate; rules deploy before touching any host)
  2  bad usage
  3  partial: some hosts good, others not
  4  failed: no host succeeded
  5  environment: Ansible, playbooks or Falco missing on this machine
  6  drift (status): live rules differ from the active release's manifest
  7  detection missed (verify): an expected rule did not fire
  8  unprotected (status, rules deploy, rollback): on some host Falco is
     not installed, not running, restarting in a loop, or has no rules folder
  129  interrupted by SIGHUP: the run is stopped and the summary lists the
       hosts that had not finished
  130  interrupted by Ctrl-C (likewise)
  143  interrupted by SIGTERM (likewise)
"""


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]},
             epilog=_ALL_EXIT_CODES_HELP)
@click.version_option(__version__, prog_name="falco-deploy")
def cli() -> None:
    """Put Falco (modern eBPF) on a fleet of Docker hosts and keep its rules right."""


@cli.group()
def rules() -> None:
    """Validate and deploy Falco rules."""


# --- shared by the Ansible-backed commands (install, rules deploy, rollback, status) -------

_EXIT_CODES_HELP = """\b
Exit codes:
  0  every host installed, unchanged, or (with --check) would change
  2  bad usage: missing, empty or unparsable inventory, bad option or -e value
  3  partial: some hosts are fine, others failed, were skipped by preflight
     or were unreachable
  4  failed: no host succeeded (or no host matched)
  5  environment: ansible-playbook or the playbooks cannot be found
  130  interrupted: Ctrl-C (129 SIGHUP, 143 SIGTERM); the run is stopped
       and the summary lists the hosts that had not finished as interrupted
"""


def _ansible_options(check: bool = True) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The options every Ansible-backed command takes; `check=False` leaves out --check/--diff
    (status is read-only anyway)."""
    options = [
        click.option("--inventory", "-i", "inventory", multiple=True, required=True,
                     metavar="PATH",
                     help="Ansible inventory file or directory (repeatable, like "
                          "ansible-playbook -i)."),
        click.option("--limit", "-l", metavar="PATTERN",
                     help="Only these hosts or groups (ansible-playbook --limit syntax, "
                          "e.g. 'web*')."),
    ]
    if check:
        options += [
            click.option("--check", is_flag=True,
                         help="Change nothing; report what would change."),
            click.option("--diff", is_flag=True,
                         help="Show the differences of changed files (with --check: of files "
                              "that would change), as ansible-playbook --diff does."),
        ]
    options += [
        click.option("--extra-vars", "-e", "extra_vars", multiple=True, metavar="VARS",
                     help="Extra variables as ansible-playbook -e takes them: key=value, "
                          "@file.yml or inline YAML/JSON (repeatable)."),
        click.option("--output", type=click.Choice(["text", "json"]), default="text",
                     show_default=True,
                     help="json prints only a versioned result envelope on stdout."),
        click.option("--project-dir", metavar="DIR",
                     help="Use the playbooks and roles of this checkout (else "
                          "$FALCO_DEPLOY_PROJECT_DIR, then the content shipped with the "
                          "package)."),
        click.option("--artifacts-dir", metavar="DIR",
                     help="Keep this run's ansible-runner artifacts here (default: "
                          "$XDG_STATE_HOME/falco-deploy/runs/<UTC time>-<command>)."),
        click.option("-v", "--verbose", "verbosity", count=True,
                     help="Ansible verbosity, recorded in the artifacts' stdout (repeatable); "
                          "without a terminal it also prints a line per task."),
        # ansible-playbook's own options, passed through unchanged.
        click.option("--user", "-u", "remote_user", metavar="USER",
                     help="Connect as this user (ansible-playbook -u)."),
        click.option("--private-key", metavar="FILE",
                     help="SSH private key file (ansible-playbook --private-key)."),
        click.option("--ask-become-pass", "-K", is_flag=True,
                     help="Ask for the privilege escalation (sudo) password before the run."),
        click.option("--ask-vault-pass", "-J", is_flag=True,
                     help="Ask for the vault password before the run."),
        click.option("--vault-id", "vault_ids", multiple=True, metavar="[LABEL@]FILE|prompt",
                     help="A vault identity, as ansible-playbook --vault-id (repeatable); "
                          "LABEL@prompt asks for it before the run."),
        click.option("--vault-password-file", "vault_password_files", multiple=True,
                     metavar="FILE", help="Vault password file (repeatable)."),
        click.option("--forks", "-f", type=click.IntRange(min=1), metavar="N",
                     help="Hosts worked on in parallel (default: ansible.cfg's forks, 20 in "
                          "the project's)."),
        click.option("--tags", "-t", "tags", multiple=True, metavar="TAGS",
                     help="Only tasks with these tags, e.g. falco_service (repeatable or "
                          "comma-separated)."),
        click.option("--skip-tags", "skip_tags", multiple=True, metavar="TAGS",
                     help="Skip tasks with these tags (repeatable or comma-separated)."),
    ]

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        for option in reversed(options):
            func = option(func)
        return func

    return decorate


# ansible-playbook's password prompts (ansible/cli/__init__.py): "BECOME password: " (or the
# become method, e.g. "SUDO password: ", when agnostic_become_prompt is off), "Vault password: "
# for --ask-vault-pass and "Vault password (LABEL): " for --vault-id LABEL@prompt.
BECOME_PROMPT = r"^[A-Z]+ password:\s*$"
VAULT_PROMPT = r"^Vault password:\s*$"


def _vault_id_prompt(label: str) -> str:
    import re

    return rf"^Vault password \({re.escape(label)}\):\s*$"


def _split(values: tuple[str, ...]) -> list[str]:
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


def _passwords(kwargs: dict[str, Any]) -> dict[str, str]:
    """Ask, before the run, for what ansible-playbook will prompt for (on stderr, not echoed).
    ansible-runner answers its prompts from this; nothing is written anywhere."""
    asked: dict[str, str] = {}
    if kwargs["ask_become_pass"]:
        asked[BECOME_PROMPT] = click.prompt("BECOME password", hide_input=True, err=True)
    if kwargs["ask_vault_pass"]:
        asked[VAULT_PROMPT] = click.prompt("Vault password", hide_input=True, err=True)
    for value in kwargs["vault_ids"]:
        label, _, source = value.rpartition("@")
        if source == "prompt":
            asked[_vault_id_prompt(label or "default")] = click.prompt(
                f"Vault password ({label or 'default'})", hide_input=True, err=True)
    return asked


def _common(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Pop the shared options out of a command's keyword arguments, typed for PlaybookOptions."""
    common = {
        "inventory": list(kwargs.pop("inventory")),
        "limit": kwargs.pop("limit"),
        "check": kwargs.pop("check", False),
        "diff": kwargs.pop("diff", False),
        "extra_vars": list(kwargs.pop("extra_vars")),
        "output": kwargs.pop("output"),
        "project_dir": kwargs.pop("project_dir"),
        "artifacts_dir": kwargs.pop("artifacts_dir"),
        "verbosity": kwargs.pop("verbosity"),
        "forks": kwargs.pop("forks"),
        "remote_user": kwargs.pop("remote_user"),
        "private_key": kwargs.pop("private_key"),
        "ask_become_pass": kwargs["ask_become_pass"],
        "ask_vault_pass": kwargs["ask_vault_pass"],
        "vault_ids": list(kwargs["vault_ids"]),
        "vault_password_files": list(kwargs.pop("vault_password_files")),
        "tags": _split(kwargs.pop("tags")),
        "skip_tags": _split(kwargs.pop("skip_tags")),
        "passwords": _passwords(kwargs),
    }
    for key in ("ask_become_pass", "ask_vault_pass", "vault_ids"):
        del kwargs[key]
    return common


def _run_and_render(ctx: click.Context, run: Callable[..., Any], options: Any) -> None:
    """Run one Ansible-backed command with live progress, then print its summary (or its JSON
    envelope) and exit with the code the result carries."""
    import sys

    from falco_deploy import render

    as_json = options.output == "json"
    progress_console = render.make_console(sys.stderr if as_json else sys.stdout)
    try:
        with render.Progress(progress_console, verbosity=options.verbosity) as progress:
            result = run(options, on_event=progress)
    except FalcoDeployError as exc:
        if as_json:
            # Whatever parses --output json gets the envelope for usage and environment errors
            # too; the message and hint still go to stderr (the group's error handling).
            render.render_json(_error_result(ctx, options, exc), sys.stdout)
        raise
    if as_json:
        render.render_json(result, sys.stdout)
    else:
        render.render_summary(result, progress_console)
    ctx.exit(int(result.exit_code or 0))


def _error_result(ctx: click.Context, options: Any, exc: FalcoDeployError) -> Any:
    """The result of a run that stopped before any host ran: no hosts, the error, its code."""
    from datetime import datetime, timezone

    from falco_deploy.results import RunResult

    now = datetime.now(timezone.utc)
    error = exc.message + (f" (hint: {exc.hint})" if exc.hint else "")
    return RunResult(command=ctx.command_path.split(" ", 1)[-1], hosts=[], artifacts_dir="",
                     check_mode=bool(getattr(options, "check", False)), started=now,
                     finished=now, error=error, exit_code=exc.exit_code)


def _lazy(module: str) -> Any:
    """A command module, imported only when its command runs (keeps `--help` fast)."""
    import importlib

    return importlib.import_module(f"falco_deploy.commands.{module}")


# --- install -------------------------------------------------------------------------------


@cli.command(epilog=_EXIT_CODES_HELP)
@_ansible_options()
@click.pass_context
def install(ctx: click.Context, **kwargs: Any) -> None:
    """Install Falco with the modern eBPF driver on every host of an inventory.

    Shows progress per host, then a summary: verdict (installed, unchanged, would change,
    skipped: reason, failed: reason, unreachable), Falco version, driver and service state.
    """
    command = _lazy("install")
    _run_and_render(ctx, command.run, command.InstallOptions(**_common(kwargs)))


# --- forwarding ----------------------------------------------------------------------------

_FORWARDING_EXIT_CODES_HELP = """\b
Exit codes:
  0  every host configured, unchanged, or (with --check) would change
  2  bad usage: missing, empty or unparsable inventory, bad option or -e value
  3  partial: some hosts are fine, others failed (a bad variable, a refused
     Falcosidekick tarball, a forwarder that does not come up), were skipped
     by preflight or were unreachable
  4  failed: no host succeeded (or no host matched)
  5  environment: ansible-playbook or the playbooks cannot be found
  130  interrupted: Ctrl-C (129 SIGHUP, 143 SIGTERM); the run is stopped
       and the summary lists the hosts that had not finished as interrupted
"""


@cli.command(epilog=_FORWARDING_EXIT_CODES_HELP)
@_ansible_options()
@click.option("--transport", type=click.Choice(["none", "falcosidekick", "rsyslog", "http"]),
              help="Override falco_forwarding_transport for this run (default: the "
                   "inventory's value; none takes forwarding down).")
@click.pass_context
def forwarding(ctx: click.Context, transport: str | None, **kwargs: Any) -> None:
    """Set up only the forwarding of Falco's alerts to the SIEM on every host of an inventory.

    Transports (falco_forwarding_transport): falcosidekick (installed from its release tarball,
    checked against a pinned sha256, fed by Falco's http_output), rsyslog (the host's rsyslog
    reads the JSON alert file and forwards it through a disk queue), http (Falco's
    http_output straight to a collector), none (takes down what an earlier transport set up).
    Outputs and credentials come from the inventory (ansible-vault); they never reach the logs.
    Summary verdicts: configured, unchanged, would change, skipped, failed, unreachable.
    """
    command = _lazy("forwarding")
    _run_and_render(ctx, command.run, command.ForwardingOptions(**_common(kwargs),
                                                                transport=transport))


# --- uninstall -----------------------------------------------------------------------------

_UNINSTALL_EXIT_CODES_HELP = """\b
Exit codes:
  0  every host removed, unchanged (nothing left to remove) or, with
     --check, would change
  2  bad usage: missing, empty or unparsable inventory, bad option or -e value
  3  partial: some hosts are done, others failed or were unreachable
  4  failed: no host succeeded (or no host matched)
  5  environment: ansible-playbook or the playbooks cannot be found
  130  interrupted: Ctrl-C (129 SIGHUP, 143 SIGTERM); the run is stopped
       and the summary lists the hosts that had not finished as interrupted
"""


@cli.command(epilog=_UNINSTALL_EXIT_CODES_HELP)
@_ansible_options()
@click.option("--keep-releases", is_flag=True,
              help="Keep /var/lib/falco-deploy/releases (the rules releases).")
@click.option("--keep-alert-log", is_flag=True,
              help="Keep the JSON alert log (/var/log/falco/events.json) and its folder.")
@click.pass_context
def uninstall(ctx: click.Context, keep_releases: bool, keep_alert_log: bool,
              **kwargs: Any) -> None:
    """Remove Falco and everything falco-deploy put on every host of an inventory.

    Stops and disables the Falco units (and Falcosidekick), removes falco-deploy's drop-ins,
    forwarding files and the live rules folder, purges the falco package and the packages
    falco-deploy's first install added (when nothing else needs them), removes the Falco
    repository source, keyring and apt lists, the alert log and /var/lib/falco-deploy. A second
    run changes nothing; --check lists what would go, per host. Summary verdicts: removed,
    unchanged, would change, failed, unreachable.
    """
    command = _lazy("uninstall")
    _run_and_render(ctx, command.run, command.UninstallOptions(
        **_common(kwargs), keep_releases=keep_releases, keep_alert_log=keep_alert_log))


# --- rules validate ------------------------------------------------------------------------

_VALIDATE_EXIT_CODES_HELP = """\b
Exit codes (like falco -V):
  0  every file is valid (Ok, or Ok with warnings)
  1  at least one file has errors
  2  bad usage (unknown option, unknown --falco-version) or a bad source:
     missing, unreadable, a symbolic link, not a regular file, over 4 MiB,
     or not UTF-8 text
  5  --engine falco but no usable falco binary
"""


@rules.command("validate", epilog=_VALIDATE_EXIT_CODES_HELP)
@click.argument("paths", nargs=-1, required=True, metavar="PATH...")
@click.option("--base", "base", multiple=True, metavar="FILE|upstream",
              help="Rules loaded before PATHs (repeatable). `upstream`: the official "
                   "falco_rules.yaml that the package of --falco-version installs, which custom "
                   "rules build on (what `rules deploy` validates after).")
@click.option("--falco-version", type=click.Choice(["0.44", "0.40"]), default="0.44",
              show_default=True, help="Field/event catalogue and engine version to check against.")
@click.option("--engine", type=click.Choice(["auto", "builtin", "falco"]), default="auto",
              show_default=True,
              help="builtin: no Falco needed; falco: run the real `falco -V`; auto: falco when a "
                   "falco binary is on PATH, else builtin.")
@click.option("--output", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="json prints Falco's own {\"falco_load_results\": [...]} document.")
@click.pass_context
def rules_validate(ctx: click.Context, paths: tuple[str, ...], base: tuple[str, ...],
                   falco_version: str, engine: str, output: str) -> None:
    """Check Falco rules files (or rules.d folders) the way `falco -V` does.

    Files are loaded into one engine in order, after any --base files; a folder contributes its
    .yaml/.yml files in name order. Rules that use the official macros (spawned_process,
    open_read, container, ...) need `--base upstream`, as on a host.
    """
    from falco_deploy.commands import validate as command

    result = command.run(command.ValidateOptions(
        paths=list(paths), base=list(base), falco_version=falco_version, engine=engine))
    report = result.report
    if output == "json":
        click.echo(report.to_json_text())
    else:
        # falco -V: the summary on stdout, warnings of valid files logged on stderr, and a
        # failed validation repeated as "Error: ..." on stderr.
        click.echo(report.to_text())
        warnings = report.warnings_text()
        if warnings:
            click.echo(warnings, err=True, nl=False)
        if not report.ok:
            click.echo("Error: " + report.to_text(), err=True)
    ctx.exit(int(result.exit_code))


# --- rules test ----------------------------------------------------------------------------

_RULES_TEST_EXIT_CODES_HELP = """\b
Exit codes:
  0  every fixture passed
  1  a fixture failed (a must-fire event did not fire its rule, a benign
     event fired one of ours, or an event lacked a field a rule needs),
     or the rules do not load
  2  bad usage: a missing or malformed fixture file, a bad rules source
"""


@rules.command("test", epilog=_RULES_TEST_EXIT_CODES_HELP)
@click.argument("fixtures", nargs=-1, metavar="[FIXTURES...]")
@click.option("--rules", "rules_sources", multiple=True, metavar="PATH",
              help="Rules file or folder under test (repeatable; default: the project's rules/ "
                   "folder). Fixtures' `quiet: true` concerns these rules only.")
@click.option("--base", "base", multiple=True, metavar="FILE|upstream", default=("upstream",),
              show_default=True,
              help="Rules loaded first (repeatable). `upstream`: the official falco_rules.yaml "
                   "of --falco-version's package, as on a host.")
@click.option("--falco-version", type=click.Choice(["0.44", "0.40"]), default="0.44",
              show_default=True, help="Field/event catalogue and upstream rules to load with.")
@click.option("--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("-v", "--verbose", is_flag=True,
              help="Also say, for passing fixtures, which rule alerts with rule_matching: first.")
@click.option("--project-dir", type=click.Path(file_okay=False), default=None,
              help="falco-deploy checkout whose rules/ and rules/tests/ are the defaults.")
@click.pass_context
def rules_test(ctx: click.Context, fixtures: tuple[str, ...], rules_sources: tuple[str, ...],
               base: tuple[str, ...], falco_version: str, output: str, verbose: bool,
               project_dir: str | None) -> None:
    """Test rule conditions against events, without Falco.

    Each fixture (YAML; default: the project's rules/tests/ folder) gives events field by field -
    inline, from a Falco JSON alert/event file, or from an `strace -f -yy` recording - and says
    which rule must fire on them, or that none of the rules under test may. Conditions are
    evaluated with the validator's parser and Falco's operator semantics; a check on a field an
    event lacks fails the fixture instead of passing it.
    """
    import json

    from falco_deploy.commands import rules_test as command

    result = command.run(command.RulesTestOptions(
        fixtures=list(fixtures), rules=list(rules_sources), base=list(base),
        falco_version=falco_version, project_dir=project_dir))
    if output == "json":
        doc = result.summary.to_json()
        doc["falco_version"] = falco_version
        click.echo(json.dumps(doc, indent=2))
    else:
        click.echo(command.render_text(result, verbose))
    ctx.exit(int(result.exit_code))


# --- rules deploy --------------------------------------------------------------------------

_DEPLOY_EXIT_CODES_HELP = """\b
Exit codes:
  0  every host deployed, unchanged, or (with --check) would change
  1  the set failed offline validation (errors, or warnings without
     --allow-warnings); no host was touched
  2  bad usage: missing inventory or rules folder, bad --serial, bad -e value,
     a bad rules source (a symbolic link, not a regular file, over 4 MiB,
     not UTF-8 text)
  3  partial: some hosts are fine, others refused the set (their own falco -V),
     rolled back after a failed health check, failed, were unreachable, or
     were not run because an earlier --serial batch failed
  4  failed: no host succeeded (or no host matched)
  5  environment: ansible-playbook, the playbooks or the base rules are missing
  8  unprotected: on some host Falco is not installed (no falco) or not
     running (falco down; "deployed, falco down" when the release went live
     on disk anyway)
  130  interrupted: Ctrl-C (129 SIGHUP, 143 SIGTERM); the run is stopped
       and the summary lists the hosts that had not finished as interrupted
"""


@rules.command("deploy", epilog=_DEPLOY_EXIT_CODES_HELP)
@_ansible_options()
@click.option("--rules", "rules_sources", multiple=True, metavar="DIR",
              help="Folder of .yaml/.yml rules files, or one file (repeatable; default: the "
                   "project's rules/ folder). The files land together in one release.")
@click.option("--serial", default="100%", show_default=True, metavar="N|N%",
              help="Roll out in batches of N hosts (or N% of them); a batch with a failed host "
                   "stops the later batches.")
@click.option("--falco-version", type=click.Choice(["0.44", "0.40"]), default="0.44",
              show_default=True,
              help="Falco generation the hosts run: picks the upstream base rules and the field "
                   "catalogue of the offline validation.")
@click.option("--base", "base", multiple=True, metavar="FILE",
              help="Validate after these rules files instead of the packaged upstream "
                   "falco_rules.yaml (repeatable).")
@click.option("--allow-warnings", is_flag=True,
              help="Let a set with validator warnings through (by default warnings in the set "
                   "fail it, here and on the hosts).")
@click.pass_context
def rules_deploy(ctx: click.Context, rules_sources: tuple[str, ...], serial: str,
                 falco_version: str, base: tuple[str, ...], allow_warnings: bool,
                 **kwargs: Any) -> None:
    """Validate a rules set, then switch every host to it as one new release.

    First the playbook's offline gate, on this machine, checks the whole set after the upstream
    base rules; if it fails, no host is touched (exit 1). Then each host stages the release,
    checks it with its own `falco -V` over the complete effective set, switches
    /etc/falco/rules.d atomically, reloads Falco and checks its health, switching back if that
    fails.
    Summary verdicts: deployed, unchanged, would change, refused: reason, rolled back: reason,
    deployed, falco down, no falco, falco down, skipped, failed, unreachable, not run.
    """
    command = _lazy("rules_deploy")
    options = command.RulesDeployOptions(
        **_common(kwargs), rules=list(rules_sources), serial=serial,
        falco_version=falco_version, base=list(base), allow_warnings=allow_warnings)
    _run_and_render(ctx, command.run, options)


# --- rollback ------------------------------------------------------------------------------

_ROLLBACK_EXIT_CODES_HELP = """\b
Exit codes:
  0  every host switched to the earlier release, or already was on it
  2  bad usage: missing inventory, --to and --steps together, bad release id
  3  partial: some hosts are fine, others refused the release, rolled back
     after a failed health check, failed or were unreachable
  4  failed: no host succeeded (or no host matched)
  5  environment: ansible-playbook or the playbooks cannot be found
  8  unprotected: on some host Falco is not installed (no falco) or not
     running (falco down; "deployed, falco down" when the release went live
     on disk anyway)
  130  interrupted: Ctrl-C (129 SIGHUP, 143 SIGTERM); the run is stopped
       and the summary lists the hosts that had not finished as interrupted
"""


@cli.command(epilog=_ROLLBACK_EXIT_CODES_HELP)
@_ansible_options()
@click.option("--to", "to", metavar="RELEASE_ID",
              help="Switch to this release (an id that `falco-deploy status` shows).")
@click.option("--steps", type=click.IntRange(min=1), default=None, metavar="N",
              help="Go back N releases from the active one (default 1).")
@click.option("--package-version", metavar="VERSION",
              help="Also install this Falco package version first (apt pin, downgrade "
                   "allowed).")
@click.pass_context
def rollback(ctx: click.Context, to: str | None, steps: int | None,
             package_version: str | None, **kwargs: Any) -> None:
    """Switch hosts back to an earlier rules release the same way a deploy switches: host-side
    validation, atomic switch, reload, health check."""
    if to is not None and steps is not None:
        raise click.UsageError("give --to RELEASE_ID or --steps N, not both")
    command = _lazy("rollback")
    options = command.RollbackOptions(**_common(kwargs), to=to, steps=steps or 1,
                                      package_version=package_version)
    _run_and_render(ctx, command.run, options)


# --- status --------------------------------------------------------------------------------

_STATUS_EXIT_CODES_HELP = """\b
Exit codes:
  0  every host answered and its live rules match its active release
  2  bad usage: missing, empty or unparsable inventory, bad option or -e value
  3  partial: some hosts answered, others failed or were unreachable
  4  failed: no host answered (or no host matched)
  5  environment: ansible-playbook or the playbooks cannot be found
  6  drift: every host answered, but on some the live rules differ from
     the active release's manifest (edited out of band)
  8  unprotected: on some host Falco is not installed (no falco), not
     running or restarting in a loop (falco down), or /etc/falco/rules.d is
     missing or a dangling symlink (rules missing); outranks 3 and 6
  130  interrupted: Ctrl-C (129 SIGHUP, 143 SIGTERM); the run is stopped
       and the summary lists the hosts that had not finished as interrupted
"""


@cli.command(epilog=_STATUS_EXIT_CODES_HELP)
@_ansible_options(check=False)
@click.pass_context
def status(ctx: click.Context, **kwargs: Any) -> None:
    """Show per host: Falco version, engine kind, unit state, active rules release (id and
    manifest hash) and drift (live rules that differ from that release). Changes nothing.

    Verdicts: in sync, drifted, no falco, falco down (not running, or restarting in a loop),
    rules missing (/etc/falco/rules.d missing or a dangling symlink), failed, unreachable.
    """
    command = _lazy("status")
    _run_and_render(ctx, command.run, command.StatusOptions(**_common(kwargs)))


# --- verify --------------------------------------------------------------------------------

_VERIFY_EXIT_CODES_HELP = """\b
Exit codes:
  0  every scenario ran; every attack was detected in time (by any rule)
  2  bad usage: missing inventory, unknown --scenario, bad catalogue, bad
     option or -e value, --junit not writable
  3  partial: no attack missed, but some scenarios or hosts did not run
     (no docker, image missing, the kernel refused a precondition,
     unreachable, failed)
  4  failed: no scenario ran on any host (or no host matched)
  5  environment: ansible-playbook or the playbooks cannot be found
  7  detection missed: on at least one host an attack raised no alert with
     its technique within --timeout
  130  interrupted: Ctrl-C (129 SIGHUP, 143 SIGTERM); scenario containers
       remove themselves
False positives (our rules firing on benign scenarios) are reported and
written to --junit, but do not change the exit code.
"""


@cli.command(epilog=_VERIFY_EXIT_CODES_HELP)
@_ansible_options(check=False)
@click.option("--scenario", "scenarios", multiple=True, metavar="NAME",
              help="Run only this scenario (repeatable; default: all of the catalogue).")
@click.option("--timeout", type=click.FloatRange(min=0, max=3600), default=30.0,
              show_default=True, metavar="SECONDS",
              help="Seconds after an attack within which Falco must alert; also the longest "
                   "wait for alerts after the scenarios (0 to 3600).")
@click.option("--junit", metavar="FILE", help="Also write a JUnit XML report here.")
@click.option("--catalogue", metavar="FILE",
              help="A site's own scenario catalogue instead of the falco_verify role's "
                   "files/scenarios.yml.")
@click.pass_context
def verify(ctx: click.Context, scenarios: tuple[str, ...], timeout: float, junit: str | None,
           catalogue: str | None, **kwargs: Any) -> None:
    """Prove that Falco detects attacks: on every Docker host, run attack scenarios (and a
    benign set) in throwaway containers and judge the alerts Falco raised on each container.

    An attack is detected when an alert of any rule, ours or upstream's, carries its MITRE
    technique. Reports per host and scenario: detected (by which rule, seconds from the attack
    to the alert, whether our rule fired or was covered by another), missed, not run (why), or
    a false positive of our rules. Needs Falco's JSON file_output, which `install` sets up.
    """
    command = _lazy("verify")
    options = command.VerifyOptions(**_common(kwargs), scenarios=list(scenarios),
                                    timeout=timeout, junit=junit, catalogue=catalogue)
    _run_and_render(ctx, command.run, options)


def main() -> None:
    cli(prog_name="falco-deploy")


if __name__ == "__main__":
    main()
