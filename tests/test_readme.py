"""Every `python src/...` command shown in README.md and the docs site (docs/*.md) runs, as a user
would type it; a command shown on several pages runs once.

The rival template's README examples rotted because nothing ran them; here each one is a test case.
`<run_dir>` becomes the directory of a real one-epoch run made by the command line. Every command
gets `paths.log_dir=<tmp>` (nothing lands in the repo's logs/) and, unless it sets one, a short
`trainer.max_epochs`. The Optuna commands share one log directory, so the second one must resume
the study of the first.
"""

import json
import math
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from expkit.utils.metric_names import stage_of
from tests.doc_commands import doc_pages, shown_commands
from tests.helpers import ROOT, run_cli

SHARED_DATA = ROOT.parent / "shared" / "datasets"


def readme_commands() -> list[str]:
    """The commands of README.md and every docs page, deduplicated (tests/doc_commands.py)."""
    return shown_commands()


def missing_choices(args: list[str]) -> list[str]:
    """The `group=option` choices of a command that name no config file here: a project generated
    without an example keeps the docs that show it, and those commands are skipped, not failed."""
    import yaml

    from expkit.project import LIBRARY_CONFIG_DIR
    from expkit.run.cli import is_config_group

    defaults = yaml.safe_load((ROOT / "configs" / "train.yaml").read_text()).get("defaults", [])
    groups = {k for d in defaults if isinstance(d, dict) for k in d}  # `hparams_search: null` too
    missing = []
    for arg in args:
        key, _, value = arg.lstrip("+~").partition("=")
        known = is_config_group(key) or key in groups
        if not value or not known or value in ("null", "none"):
            continue
        for option in value.strip("[]").split(","):
            found = [d / key / f"{option}.yaml" for d in (ROOT / "configs", LIBRARY_CONFIG_DIR)]
            if option and not any(f.is_file() for f in found):
                missing.append(f"{key}={option}")
    return missing


def slurm_reachable() -> bool:
    """Whether `sinfo` answers (the README's SLURM commands run only then)."""
    if shutil.which("sinfo") is None:
        return False
    try:
        return subprocess.run(["sinfo", "-h"], capture_output=True, timeout=20).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def expected_statuses(args: list[str]) -> list[str]:
    """What the results.json files of a command must say, sorted."""
    # a cross-validation run (cv.folds=k, every fold) writes its own and one per fold
    folds = [int(a.split("=", 1)[1]) for a in args if a.startswith("cv.folds=")]
    per_run = folds[0] + 1 if folds and not any(a.startswith("cv.fold=") for a in args) else 1
    if "-m" not in args:
        return ["completed"] * per_run
    trials = [a.split("=", 1)[1] for a in args if a.startswith("hydra.sweeper.n_trials=")]
    if trials:
        return ["completed"] * int(trials[0]) * per_run
    swept = [a.split("=", 1)[1] for a in args if "=" in a and "," in a]
    jobs = math.prod(len(v.split(",")) for v in swept if not v.startswith("["))  # [0,1]: one value
    if any(a.startswith("debug=nan_loss") for a in args):  # one job's loss is made NaN on purpose
        return ["completed"] * (jobs - 1) + ["failed"]
    return ["completed"] * jobs


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A real run made by the command line, so it has `.hydra/` as any user's run does."""
    logs = tmp_path_factory.mktemp("readme_run")
    result = run_cli(
        [
            "src/train.py",
            "trainer.max_epochs=1",
            f"paths.log_dir={logs}",
            "extras.print_config=false",
        ]
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (results,) = logs.rglob("results.json")
    return results.parent


@pytest.fixture(scope="module")
def optuna_logs(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("readme_optuna")


def test_readme_shows_commands():
    assert len(shown_commands([ROOT / "README.md"])) >= 8  # the newcomer's commands stay in README
    assert len(readme_commands()) >= 40  # with the site's pages


def test_docs_commands_are_collected_once_from_every_page():
    """Commands moved from the README into a docs page are still run, and a command shown on
    several pages (resume=<run_dir> on the resume page and in faults.md) is run once."""
    commands = readme_commands()
    assert len(commands) == len(set(commands))
    pages_showing: dict[str, int] = {}
    for page in doc_pages():
        for command in shown_commands([page]):
            pages_showing[command] = pages_showing.get(command, 0) + 1
    assert sorted(pages_showing) == sorted(commands)
    assert pages_showing["python src/train.py resume=<run_dir>"] >= 2
    site_only = set(commands) - set(shown_commands([ROOT / "README.md"]))
    assert "python -m expkit.runs_table --since 2026-11-01 --csv runs.csv --md runs.md" in site_only


def test_readme_links_into_the_site_resolve():
    """Each README link into docs/ names a page of the site and, with `#`, one of its headings
    (mkdocs --strict checks the pages' own links; nothing builds the README)."""
    text = (ROOT / "README.md").read_text()
    links = re.findall(r"\]\((docs/[^)#\s]+)(?:#([^)\s]+))?\)", text)
    assert len(links) >= 8
    for target, anchor in links:
        page = ROOT / target
        assert page.is_file(), target
        if anchor:
            headings = re.findall(r"^#+ (.+)$", page.read_text(), flags=re.M)
            slugs = {
                re.sub(r"[-\s]+", "-", re.sub(r"[^\w\s-]", "", h).strip().lower()) for h in headings
            }
            assert anchor in slugs, f"{target}#{anchor}"


@pytest.mark.slow
@pytest.mark.parametrize("command", readme_commands())
def test_readme_command_runs(command, run_dir, optuna_logs, tmp_path):
    mnist_here = (ROOT / "data" / "MNIST" / "raw").is_dir() or (SHARED_DATA / "MNIST").is_dir()
    if "data=mnist" in command and not mnist_here:
        pytest.skip("needs MNIST in data/ or ../shared/datasets (this repo's CI data), absent here")
    if "hydra/launcher=slurm" in command and not slurm_reachable():
        pytest.skip("needs a SLURM cluster (scripts/slurm/local_cluster.sh start), none reachable")
    if "trainer=gpu" in command and not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU (tests/test_gpu.py runs the same on one)")
    args = shlex.split(command.replace("<run_dir>", str(run_dir)))[1:]
    missing = missing_choices(args)
    if missing:
        pytest.skip(f"chooses {', '.join(missing)}: an example this project was generated without")
    if args[:2] == ["-m", "expkit.runs_table"]:
        return _runs_table_runs(args, run_dir, tmp_path)
    study = any(a.startswith("hparams_search=") for a in args)
    cv = any(a.startswith("cv.folds=") for a in args)  # a study of its own, counted alone
    logs = optuna_logs if study and not cv else tmp_path
    if args[0] == "src/train.py" and not any(a.startswith("trainer.max_epochs=") for a in args):
        args.append("trainer.max_epochs=2")  # one more than run_dir has, so resume= trains an epoch
    args += [f"paths.log_dir={logs}", "extras.print_config=false"]
    result = run_cli(args)
    assert result.returncode == 0, f"{command}\n--- stderr ---\n{result.stderr[-4000:]}"
    if args[0] not in ("src/train.py", "src/eval.py"):
        return
    resumed = any(a.startswith("resume=") for a in args)
    results = [
        json.loads(p.read_text()) for p in (run_dir if resumed else logs).rglob("results.json")
    ]
    assert sorted(r["status"] for r in results) == expected_statuses(args), command
    tested = [
        any(stage_of(k) == "test" for k in r["metrics"]) for r in results
    ]  # test/acc, test_loss
    assert all(t for t, r in zip(tested, results, strict=True) if r["status"] == "completed")


def _runs_table_runs(args: list[str], run_dir: Path, tmp_path: Path) -> None:
    """`python -m expkit.runs_table ...` in a folder whose `logs/` is the README run's log directory."""
    import os
    import subprocess

    (tmp_path / "logs").symlink_to(run_dir.parents[2], target_is_directory=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, *args], cwd=tmp_path, capture_output=True, text=True, env=env, timeout=120
    )
    assert result.returncode == 0, f"{args}\n--- stderr ---\n{result.stderr[-4000:]}"
    assert "run(s) selected" in result.stdout
    if "--tag" not in args and "--where" not in args:
        assert run_dir.name in result.stdout  # the README run is listed
    for option in ("--csv", "--md"):
        if option in args:
            assert (tmp_path / args[args.index(option) + 1]).stat().st_size > 0
