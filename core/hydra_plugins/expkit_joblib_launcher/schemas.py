"""The schemas of our `joblib` and `submitit_local` launcher presets, in Hydra's ConfigStore.

Hydra validates `configs/hydra/launcher/joblib.yaml` (and `submitit_local.yaml`) against the
ConfigStore entry of the same name, which the stock joblib and submitit plugins register: our
keys (`job_timeout_s`, `stop_timeout_s`) would be refused. The entries stored here are the stock
schemas plus those keys. They are stored when Hydra builds its config search path, i.e. after its
plugin scan has run every plugin module (which re-registers the stock schemas) and before any
config is composed, so ours are the ones in place whatever order the scan took. (No
`from __future__ import annotations`: the scan runs this module outside sys.modules, where a
dataclass cannot resolve string annotations.)
"""

from dataclasses import dataclass
from typing import Optional

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


class TolerantLauncherSchemas(SearchPathPlugin):
    """Adds no search path: its call is the moment to put our schemas in place (see above)."""

    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        store_schemas()
