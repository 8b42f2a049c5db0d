"""Command-line entry point: parses arguments and renders results, nothing else.

Each command is a plain function in falco_deploy.commands.* taking typed options and returning a
result object. Heavy modules (ansible_runner, rich) are imported inside the commands that need them,
so `falco-deploy rules validate` starts fast enough for a pre-commit hook.
"""

from __future__ import annotations

import click

from falco_deploy import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="falco-deploy")
def cli() -> None:
    """Put Falco (modern eBPF) on a fleet of Docker hosts and keep its rules right."""


@cli.group()
def rules() -> None:
    """Validate and deploy Falco rules."""


# --- install -------------------------------------------------------------------------------
# (filled in: options, call into falco_deploy.commands.install, render, exit code)


# --- rules validate ------------------------------------------------------------------------
# (filled in: options, call into falco_deploy.commands.validate, render, exit code)


def main() -> None:
    cli(prog_name="falco-deploy")


if __name__ == "__main__":
    main()
