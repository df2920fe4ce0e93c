"""`hydra doctor`: can this installation run the platform? The same install check `./hydra` runs after
every install, on demand (e.g. after upgrading a package by hand)."""

from __future__ import annotations

import click


@click.command()
def doctor() -> None:
    """Check the installation: the Dagster packages agree on one release and every integration that the
    shipped instance configurations name imports.  Exit status 1, with one line per problem, if not."""
    from hydra_assets.install_check import main

    status = main()  # prints the versions, or each problem and what to do about it
    if status:
        raise SystemExit(status)
