"""Command-line entry point: parses arguments and renders results, nothing else.

Each command is a plain function in falco_deploy.commands.* taking typed options and returning a
result object. Heavy modules (ansible_runner, rich) are imported inside the commands that need them,
so `falco-deploy rules validate` starts fast enough for a pre-commit hook.
"""

from __future__ import annotations

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


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="falco-deploy")
def cli() -> None:
    """Put Falco (modern eBPF) on a fleet of Docker hosts and keep its rules right."""


@cli.group()
def rules() -> None:
    """Validate and deploy Falco rules."""


# --- install -------------------------------------------------------------------------------

_EXIT_CODES_HELP = """\b
Exit codes:
  0  every host installed, unchanged, or (with --check) would change
  2  bad usage: missing or unreadable inventory, bad option or -e value
  3  partial: some hosts are fine, others failed, were skipped by preflight
     or were unreachable
  4  failed: no host succeeded (or no host matched)
  5  environment: ansible-playbook or the playbooks cannot be found
  130  interrupted (Ctrl-C)
"""


@cli.command(epilog=_EXIT_CODES_HELP)
@click.option("--inventory", "-i", "inventory", multiple=True, required=True, metavar="PATH",
              help="Ansible inventory file or directory (repeatable, like ansible-playbook -i).")
@click.option("--limit", "-l", metavar="PATTERN",
              help="Only these hosts or groups (ansible-playbook --limit syntax, e.g. 'web*').")
@click.option("--check", is_flag=True, help="Change nothing; report what would change.")
@click.option("--diff", is_flag=True, help="Show file differences in the run artifacts.")
@click.option("--extra-vars", "-e", "extra_vars", multiple=True, metavar="VARS",
              help="Extra variables as ansible-playbook -e takes them: key=value, @file.yml or "
                   "inline YAML/JSON (repeatable).")
@click.option("--output", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="json prints only a versioned result envelope on stdout.")
@click.option("--project-dir", metavar="DIR",
              help="Use the playbooks and roles of this checkout (else $FALCO_DEPLOY_PROJECT_DIR, "
                   "then the content shipped with the package).")
@click.option("--artifacts-dir", metavar="DIR",
              help="Keep this run's ansible-runner artifacts here (default: "
                   "$XDG_STATE_HOME/falco-deploy/runs/<UTC time>-install).")
@click.option("-v", "--verbose", "verbosity", count=True,
              help="Ansible verbosity, recorded in the artifacts' stdout (repeatable).")
@click.pass_context
def install(ctx: click.Context, inventory: tuple[str, ...], limit: str | None, check: bool,
            diff: bool, extra_vars: tuple[str, ...], output: str, project_dir: str | None,
            artifacts_dir: str | None, verbosity: int) -> None:
    """Install Falco with the modern eBPF driver on every host of an inventory.

    Shows progress per host, then a summary: verdict (installed, unchanged, would change,
    skipped: reason, failed: reason, unreachable), Falco version, driver and service state.
    """
    import sys

    from falco_deploy import render
    from falco_deploy.commands import install as command

    options = command.InstallOptions(
        inventory=list(inventory), limit=limit, check=check, diff=diff,
        extra_vars=list(extra_vars), output=output, project_dir=project_dir,
        artifacts_dir=artifacts_dir, verbosity=verbosity,
    )
    as_json = output == "json"
    progress_console = render.make_console(sys.stderr if as_json else sys.stdout)
    with render.Progress(progress_console, verbosity=verbosity) as progress:
        result = command.run(options, on_event=progress)
    if as_json:
        render.render_json(result, sys.stdout)
    else:
        render.render_summary(result, progress_console)
    ctx.exit(int(result.exit_code or 0))


# --- rules validate ------------------------------------------------------------------------

_VALIDATE_EXIT_CODES_HELP = """\b
Exit codes (like falco -V):
  0  every file is valid (Ok, or Ok with warnings)
  1  at least one file has errors
  2  bad usage (unknown option, missing PATH, unknown --falco-version)
  5  --engine falco but no usable falco binary
"""


@rules.command("validate", epilog=_VALIDATE_EXIT_CODES_HELP)
@click.argument("paths", nargs=-1, required=True, metavar="PATH...")
@click.option("--base", "base", multiple=True, metavar="FILE",
              help="Rules loaded before PATHs, e.g. the upstream falco_rules.yaml that custom "
                   "rules build on (repeatable).")
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
    .yaml/.yml files in name order.
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


def main() -> None:
    cli(prog_name="falco-deploy")


if __name__ == "__main__":
    main()
