"""Every `python src/...` command shown in README.md runs, as a user would type it.

The rival template's README examples rotted because nothing ran them; here each one is a test case.
Placeholders: `<run_dir>` becomes the directory of a real short run. Every command gets
`paths.log_dir=<tmp>` (nothing lands in the repo's logs/) and, unless it sets one, a short
`trainer.max_epochs`.
"""

import json
import math
import re
import shlex
from pathlib import Path

import pytest

from tests.helpers import FAST, ROOT, compose_config, run_cli

SHARED_DATA = ROOT.parent / "shared" / "datasets"


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.splitlines():
            line = line.split("  #")[0].strip()
            if line.startswith(("python src/", "python -m src.")):
                commands.append(line)
    return commands


def expected_jobs(args: list[str]) -> int:
    """A `-m` sweep over `a=1,2 b=3,4,5` runs 2*3 jobs."""
    if "-m" not in args:
        return 1
    return math.prod(len(a.split("=", 1)[1].split(",")) for a in args if "=" in a and "," in a)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    from src.train import train

    out = tmp_path_factory.mktemp("readme") / "run"
    train(compose_config("train", out, [*FAST, "trainer.max_epochs=2"]))
    return out


def test_readme_shows_commands():
    assert len(readme_commands()) >= 8


@pytest.mark.slow
@pytest.mark.parametrize("command", readme_commands())
def test_readme_command_runs(command, run_dir, tmp_path):
    if "../shared/datasets" in command and not SHARED_DATA.is_dir():
        pytest.skip("needs ../shared/datasets (this repo's CI data), absent here")
    args = shlex.split(command.replace("<run_dir>", str(run_dir)))[1:]
    if args[0].startswith("src/") and not any(a.startswith("trainer.max_epochs=") for a in args):
        args.append("trainer.max_epochs=1")
    args += [f"paths.log_dir={tmp_path}", "extras.print_config=false"]
    result = run_cli(args)
    assert result.returncode == 0, f"{command}\n--- stderr ---\n{result.stderr[-4000:]}"
    if args[0] in ("src/train.py", "src/eval.py"):
        results = [json.loads(p.read_text()) for p in tmp_path.rglob("results.json")]
        assert len(results) == expected_jobs(args), command
        assert all(r["status"] == "completed" and "test/acc" in r["metrics"] for r in results)
