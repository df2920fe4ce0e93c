"""`hydra`: the scripting face of the platform.

Every command lives in this package, one module per command group, and is imported only when used, so
`hydra --help` answers at once and `hydra log` does not pay for importing TensorFlow.  Nothing outside
this package imports it: the domain, the Dagster face and the pages know nothing of the command line.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys

import click

# command name -> "module:attribute" (a click command or group); one module per command group
COMMANDS = {
    "init": "hydra_assets.cli.home:init",
    "plot-type": "hydra_assets.cli.plot_types:plot_type",
    "user": "hydra_assets.cli.users:user",
    "permission": "hydra_assets.cli.users:permission",
    "label": "hydra_assets.cli.labels:label",
    "news": "hydra_assets.cli.news:news",
    "simulate": "hydra_assets.cli.simulate:simulate",
    "train": "hydra_assets.cli.train:train",
    "model": "hydra_assets.cli.models:model",
    "inferences": "hydra_assets.cli.results:inferences",
    "log": "hydra_assets.cli.results:log",
    "classify": "hydra_assets.cli.results:classify",
    "pages": "hydra_assets.cli.pages:pages",
    "up": "hydra_assets.cli.up:up",
    "demo-feed": "hydra_assets.cli.demo:demo_feed",
    "demo-setup": "hydra_assets.cli.demo:demo_setup",
    "doctor": "hydra_assets.cli.doctor:doctor",
    "notify": "hydra_assets.cli.notify:notify",
    "runs": "hydra_assets.cli.runs:runs",
    "flags": "hydra_assets.cli.flags:flags",
    "mask": "hydra_assets.cli.masks:mask",
    "reference": "hydra_assets.cli.reference:reference",
    "worker": "hydra_assets.cli.worker:worker",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(name for name in COMMANDS if self._spec_exists(name))

    @staticmethod
    def _spec_exists(name: str) -> bool:
        module = COMMANDS[name].split(":")[0]
        try:
            return importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:  # its package is not there (yet)
            return False

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS or not self._spec_exists(cmd_name):
            return None
        module_name, attribute = COMMANDS[cmd_name].split(":")
        return getattr(importlib.import_module(module_name), attribute)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="hydra-dqm")
def cli() -> None:
    """Hydra DQM: computer-vision data quality monitoring.

    Configuration comes from HYDRA_* environment variables (HYDRA_HOME, default ./.hydra).
    """


def main() -> None:
    from hydra_assets.settings import SettingsError

    try:
        cli(standalone_mode=True)
    except SettingsError as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(2)
