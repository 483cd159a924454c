"""Export a checkpoint's model: `python src/export.py ckpt_path=PATH` needs nothing else.

TorchScript and ONNX through the module's own `to_torchscript`/`to_onnx`, each checked against its
`forward`; `net.pt` for a module with a `net` submodule.
"""

from expkit.entry import start

start(__file__, "export", __name__)  # the project's root; `-sc …` answered before Lightning loads

import hydra
from omegaconf import DictConfig

from expkit.run.cli import run_entry_point
from expkit.sweeps.job import run_job
from expkit.tasks.export import export


@hydra.main(version_base="1.3", config_path="../configs", config_name="export")
def main(cfg: DictConfig) -> float | None:
    return run_job(export, cfg, script=__file__)


if __name__ == "__main__":
    run_entry_point(main, "export")
