"""Old name of `hydra_assets.warm_launcher`, kept because Dagster homes made before the move name it.

`hydra init` copies dagster.yaml into $DAGSTER_HOME only when none is there, and production homes hold a
hand-made copy of deploy/dagster-mysql.yaml; both say `module: hydra_assets.ingest.launcher`, and Dagster's
daemon and webserver refuse to start when that module is missing.  The one exception to "domain code
imports no Dagster": delete this file once no home names it (grep $DAGSTER_HOME/dagster.yaml).
"""

from hydra_assets.warm_launcher import WarmRunLauncher  # noqa: F401 - the class dagster.yaml names
