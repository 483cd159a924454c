"""The docs' own-data sections ("Train on your own images", "Train on a table") run as typed, in
order: the example writers first, then the runs that read what they wrote. (The datamodules
themselves are the library's, tested in core/tests/test_own_data.py.)"""

import json
import re
import shlex

import pytest

from tests.doc_commands import block_lines, doc_pages, section_commands
from tests.helpers import run_cli
from tests.test_readme import missing_choices


def readme_section_commands(title: str) -> list[str]:
    """The `sh` block of a section: the commands, in order, comments dropped."""
    return section_commands(title, "sh")


#: the sections whose `sh` block runs in order, wherever they live (README.md or a docs page)
IN_ORDER_SECTIONS = ["Train on your own images", "Train on a table"]


def test_every_sh_command_shown_is_run_in_order():
    """A `python ...` line of any `sh` block (the README's short "Bring your own data" repeats some)
    is one of the commands the in-order sections run."""
    run = {c for title in IN_ORDER_SECTIONS for c in readme_section_commands(title)}
    shown = {
        line
        for page in doc_pages()
        for block in re.findall(r"```sh\n(.*?)```", page.read_text(), flags=re.S)
        for line in block_lines(block)
        if line.startswith("python ")
    }
    assert len(run) >= 6 and shown - run == set(), shown - run


@pytest.mark.slow
@pytest.mark.parametrize("title", IN_ORDER_SECTIONS)
def test_readme_commands_run_in_order(title, tmp_path):
    """Each section's commands, as typed (`data/...` moved into a temp folder), one after another:
    the example writers first, then the runs that read what they wrote."""
    commands = readme_section_commands(title)
    assert len(commands) >= 3
    missing = [m for c in commands for m in missing_choices(shlex.split(c)[1:])]
    if missing:
        pytest.skip(f"chooses {', '.join(missing)}: an example this project was generated without")
    for command in commands:
        args = shlex.split(command.replace("data/", f"{tmp_path}/data/"))[1:]
        if args[0] == "src/train.py":
            args += ["trainer.max_epochs=2", f"paths.log_dir={tmp_path}/logs"]
            args += [f"paths.cache_dir={tmp_path}/cache", "extras.print_config=false"]
        result = run_cli(args)
        assert result.returncode == 0, f"{command}\n{result.stderr[-3000:]}"
    statuses = [
        json.loads(p.read_text())["status"] for p in (tmp_path / "logs").rglob("results.json")
    ]
    assert statuses == ["completed"] * sum(c.startswith("python src/train.py") for c in commands)
