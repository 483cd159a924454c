"""`python src/<task>.py -sc query=bash`: Hydra's shell completion, answered before the entry point
imports Lightning (seconds per Tab otherwise; completion needs the configs only).

Each entry point calls `answer_shell_completion` above its other imports; `scripts/completion.bash`
is the shell side (it also works with `.venv/bin/python src/train.py`, which Hydra's own
`-sc install=bash` script does not: it runs `.venv/bin/python -sc …`, i.e. `python -s -c`).
"""

import sys

from expkit.project import project_config_dir

FLAGS = ("-sc", "--shell-completion")


def asks_for_completion(argv: list[str]) -> bool:
    return any(a in FLAGS or a.startswith("--shell-completion=") for a in argv)


def answer_shell_completion(module_name: str, config_name: str) -> None:
    """When the script runs with `-sc …`: let Hydra answer from the configs alone, then exit."""
    if module_name != "__main__" or not asks_for_completion(sys.argv[1:]):
        return
    import hydra
    from omegaconf import DictConfig

    @hydra.main(version_base="1.3", config_path=str(project_config_dir()), config_name=config_name)
    def answer(cfg: DictConfig) -> None:  # never called: Hydra answers and returns
        pass

    answer()
    sys.exit(0)
