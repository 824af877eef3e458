"""Options and the error type shared by the `propbot` command modules."""

from __future__ import annotations

from pathlib import Path

import click

from api.settings import PROFILES

PROFILE = click.option(
    "--profile", type=click.Choice(PROFILES), default=None, help="default: $EXCHANGE_PROFILE or paper"
)
CONFIG = click.option(
    "--config", "config_file", type=click.Path(path_type=Path, dir_okay=False), help="a config YAML file"
)
DATA_DIR = click.option(
    "--data-dir", type=click.Path(path_type=Path, file_okay=False), help="default: data/<profile>"
)
ACCOUNT = click.option(
    "--account",
    default=None,
    help="the account (its journal schema, keys, data dir); default $PROPBOT_ACCOUNT or the config's",
)
DB = click.option("--db", "db_url", help="journal URL; default $PROPBOT_DB_URL or <data-dir>/journal.db")


class CliError(click.ClickException):
    """A one-line failure, exit code 2."""

    exit_code = 2
