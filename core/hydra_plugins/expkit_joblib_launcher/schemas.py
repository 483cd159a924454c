"""The schemas of our `joblib` and `submitit_local` launcher presets, in Hydra's ConfigStore.

Hydra validates `configs/hydra/launcher/joblib.yaml` (and `submitit_local.yaml`) against the
ConfigStore entry of the same name, which the stock joblib and submitit plugins register: our
keys (`job_timeout_s`, `stop_timeout_s`) would be refused. The entries stored here are the stock
schemas plus those keys.

Every plugin scan re-executes every plugin module, so whichever is scanned last holds the name, and
the scan's order is the order of `hydra_plugins` folders on sys.path, then of names (`expkit_*`
before `hydra_*` in one site-packages): ours must be stored again after each scan, before a config
is composed. A sweep's process scans once, then builds its config search path (our
`SearchPathPlugin` below stores them then); a job's process scans again in
`Singleton.set_state`, so every job side (the pool's worker, submitit's job) restores Hydra's state
with `restore_hydra_state`. (No `from __future__ import annotations`: the scan runs this module
outside sys.modules, where a dataclass cannot resolve string annotations.)
"""

from dataclasses import dataclass
from typing import Any, Optional

from hydra.core.config_search_path import ConfigSearchPath
from hydra.core.config_store import ConfigStore
from hydra.plugins.search_path_plugin import SearchPathPlugin
from hydra_plugins.hydra_joblib_launcher.config import JobLibLauncherConf
from hydra_plugins.hydra_submitit_launcher.config import LocalQueueConf


@dataclass
class TolerantJoblibConf(JobLibLauncherConf):
    _target_: str = "hydra_plugins.expkit_joblib_launcher.launcher.TolerantJoblibLauncher"
    job_timeout_s: Optional[float] = None  # noqa: UP045 (OmegaConf reads it, no __future__ here)
    stop_timeout_s: float = 60.0


@dataclass
class TolerantLocalConf(LocalQueueConf):
    _target_: str = "hydra_plugins.expkit_submitit_launcher.local.TolerantLocalLauncher"
    job_timeout_s: Optional[float] = None  # noqa: UP045 (OmegaConf reads it, no __future__ here)


def store_schemas() -> None:
    store = ConfigStore.instance()
    store.store(group="hydra/launcher", name="joblib", node=TolerantJoblibConf, provider="template")
    store.store(
        group="hydra/launcher", name="submitit_local", node=TolerantLocalConf, provider="template"
    )


def restore_hydra_state(singleton_state: Any) -> None:
    """`Singleton.set_state` (which scans the plugins again), then our schemas. The state object
    then holds the scanned `Plugins` instance: Hydra's own later `set_state` with it (in submitit's
    job call) does not scan again."""
    from hydra.core.singleton import Singleton

    Singleton.set_state(singleton_state)
    store_schemas()


class TolerantLauncherSchemas(SearchPathPlugin):
    """Adds no search path: its call is the moment to put our schemas in place (see above)."""

    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        store_schemas()
