"""What a project's entry point (`src/train.py` and the others) calls, so it stays a few lines.

`start(__file__, "train")` goes first, above the entry point's other imports: it fixes the project's
root (the folder above the entry point's `src/`, as the path was typed: a `src/` that is a symlink,
as in the library's test bed, keeps the project where the command ran) and answers Hydra's shell
completion (`-sc …`) before Lightning is imported; the entry point's own imports come after it.
"""

import os
from pathlib import Path

from expkit.project import use_project_root
from expkit.run.completion import answer_shell_completion


def start(entry_file: str, config_name: str, module_name: str = "__main__") -> None:
    use_project_root(Path(os.path.abspath(entry_file)).parents[1])
    answer_shell_completion(module_name, config_name)
