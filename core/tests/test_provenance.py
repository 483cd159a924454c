"""Provenance (`<run_dir>/provenance/`) and tags: what each run records about where it came from.

The unit tests call `write_provenance` on throwaway git repositories (clean, dirty, no commit, no
repository, no git binary); one short digits run with every logger checks the tags and the
provenance summary end to end through `train(cfg)`, and bad tags fail before training, in one line.
"""

import json
import logging
import shutil
import subprocess
import time
from importlib import metadata
from pathlib import Path

import pytest

from expkit.errors import ConfigError
from expkit.project import project_root
from expkit.run import provenance
from expkit.run.provenance import installed_packages, provenance_summary, write_provenance
from expkit.utils import atomic
from helpers import FAST, compose_config, run_cli
from src.train import train

GIT = shutil.which("git")
needs_git = pytest.mark.skipif(GIT is None, reason="git is not installed")


def _git(repo: Path, *args: str) -> str:
    command = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *args]
    return subprocess.run(command, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def repo(tmp_path) -> Path:
    """A git repository with one commit on branch `main` holding `code.py`."""
    path = tmp_path / "repo"
    path.mkdir()
    _git(path, "init", "-q", "-b", "main")
    (path / "code.py").write_text("x = 1\n")
    _git(path, "add", "code.py")
    _git(path, "commit", "-q", "-m", "first")
    return path


def _read(out: Path) -> dict:
    return json.loads((out / "provenance" / "provenance.json").read_text())


@needs_git
def test_clean_checkout_records_commit_and_branch_without_a_diff(repo, tmp_path):
    out = tmp_path / "run"
    record = write_provenance(out, argv=["src/train.py", "seed=1"], repo=repo)
    written = _read(out)
    assert written["git"]["commit"] == _git(repo, "rev-parse", "HEAD")
    assert written["git"]["branch"] == "main" and written["git"]["dirty"] is False
    assert written["command"]["argv"] == ["src/train.py", "seed=1"]
    assert not (out / "provenance" / "diff.patch").exists()
    assert provenance_summary(record) == {
        "commit": written["git"]["commit"],
        "branch": "main",
        "dirty": False,
        "dir": str(out / "provenance"),
    }
    for key in ("python", "torch", "host", "gpus", "packages", "created_at"):
        assert key in written, key
    assert written["torch"]["version"] == __import__("torch").__version__


@needs_git
def test_uncommitted_changes_are_saved_as_a_patch_that_applies(repo, tmp_path):
    (repo / "code.py").write_text("x = 2  # changed\n")
    (repo / "new_untracked.py").write_text("y = 1\n")
    out = tmp_path / "run"
    written = write_provenance(out, repo=repo)["git"]
    assert written["dirty"] is True and written["changed_files"] == ["code.py"]
    assert written["untracked_files"] == ["new_untracked.py"]
    patch = out / "provenance" / "diff.patch"
    assert "+x = 2  # changed" in patch.read_text() and written["diff_file"] == "diff.patch"
    # the recorded commit + the patch give back the code that ran
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(repo), str(clone)], check=True)
    _git(clone, "checkout", "-q", written["commit"])
    _git(clone, "apply", str(patch))
    assert (clone / "code.py").read_text() == "x = 2  # changed\n"
    assert (clone / "new_untracked.py").read_text() == "y = 1\n"  # the untracked file too


@needs_git
def test_untracked_files_alone_make_the_checkout_dirty_and_are_recorded(repo, tmp_path):
    """A user's whole new model is often an untracked file: the run must say so and keep it."""
    (repo / "models").mkdir()
    (repo / "models" / "mine.py").write_text("class Mine:\n    pass")  # no final newline
    (repo / "models" / "weights.bin").write_bytes(b"\0\1\2")  # binary: named, not in the diff
    (repo / "empty.txt").write_text("")
    (repo / ".gitignore").write_text("ignored.log\n")
    (repo / "ignored.log").write_text("not part of the code\n")
    out = tmp_path / "run"
    record = write_provenance(out, repo=repo)
    git = record["git"]
    assert git["dirty"] is True and provenance_summary(record)["dirty"] is True
    assert sorted(git["untracked_files"]) == [
        ".gitignore",
        "empty.txt",
        "models/mine.py",
        "models/weights.bin",
    ]
    assert sorted(git["untracked_in_diff"]) == [".gitignore", "empty.txt", "models/mine.py"]
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(repo), str(clone)], check=True)
    _git(clone, "apply", str(out / "provenance" / "diff.patch"))
    assert (clone / "models" / "mine.py").read_text() == "class Mine:\n    pass"
    assert (clone / "empty.txt").read_text() == ""
    assert not (clone / "ignored.log").exists()


@needs_git
def test_detached_head_and_a_repository_without_commits(repo, tmp_path):
    _git(repo, "checkout", "-q", "--detach")
    git = write_provenance(tmp_path / "a", repo=repo)["git"]
    assert git["branch"] is None and git["commit"] == _git(repo, "rev-parse", "HEAD")
    empty = tmp_path / "empty"
    empty.mkdir()
    _git(empty, "init", "-q")
    (empty / "f.py").write_text("z = 0\n")
    git = write_provenance(tmp_path / "b", repo=empty)["git"]
    # an untracked file counts as a change (there is no commit to diff against)
    assert git["available"] is True and git["commit"] is None and git["dirty"] is True
    assert git["untracked_files"] == ["f.py"]


def test_no_repository_and_no_git_binary_are_recorded_not_raised(tmp_path, monkeypatch):
    plain = tmp_path / "not_a_repo"
    plain.mkdir()
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))  # git must not look above it
    record = write_provenance(tmp_path / "a", repo=plain)
    assert record["git"]["available"] is False
    assert "not a git repository" in record["git"]["reason"]
    assert provenance_summary(record)["git"] == record["git"]["reason"]

    monkeypatch.setenv("PATH", str(tmp_path / "empty_bin"))  # no git on PATH
    record = write_provenance(tmp_path / "b", repo=plain)
    assert record["git"] == {"available": False, "reason": "no git binary on PATH"}
    assert _read(tmp_path / "b")["git"]["available"] is False


def test_pip_freeze_names_every_distribution_with_its_installed_version():
    """Read from dist-info directory names (~1 ms); must agree with importlib.metadata (~110 ms)."""
    ours = {}
    for line in installed_packages():
        name, version = line.split("==")
        ours[name.lower().replace("_", "-").replace(".", "-")] = version
    seen = set()
    for dist in metadata.distributions():  # what `pip freeze` prints: the metadata's version
        name = dist.metadata["Name"].lower().replace("_", "-").replace(".", "-")
        if name not in seen:  # the first on sys.path, the one imported (the wheel test's venv
            seen.add(name)  # sees the template venv's distributions after its own)
            assert ours.get(name) == dist.version, name
    assert len(ours) >= 50


def test_a_resumed_run_keeps_the_first_attempts_record(tmp_path):
    out = tmp_path / "run"
    first = write_provenance(out, argv=["first"])
    second = write_provenance(out, argv=["second"])
    assert Path(first["dir"]) == out / "provenance"
    assert Path(second["dir"]) == out / "provenance" / "resume-1"
    assert _read(out)["command"]["argv"] == ["first"]
    assert json.loads((out / "provenance" / "resume-1" / "provenance.json").read_text())["command"][
        "argv"
    ] == ["second"]


def test_only_rank_zero_writes(tmp_path, monkeypatch):
    monkeypatch.setenv("LOCAL_RANK", "1")  # how Lightning's DDP launcher marks rank 1
    assert write_provenance(tmp_path / "run") == {}
    assert not (tmp_path / "run").exists()


def test_a_failed_write_leaves_no_partial_file_and_does_not_stop_the_run(
    tmp_path, monkeypatch, caplog
):
    out = tmp_path / "run"
    good = out / "provenance" / "pip-freeze.txt"
    atomic.atomic_write_text(good, "previous\n")

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomic.os, "replace", full_disk)
    with caplog.at_level(logging.WARNING, logger=provenance.__name__):
        record = write_provenance(out)
    assert "No space left on device" in record["error"] and "the run goes on" in caplog.text
    assert provenance_summary(record)["error"] == record["error"]
    assert good.read_text() == "previous\n"  # the previous file is as it was
    assert not (out / "provenance" / "provenance.json").exists()
    assert [p.name for p in (out / "provenance").iterdir()] == ["pip-freeze.txt"]  # no temp files


def test_provenance_is_cheap(tmp_path):
    """It runs in every run (the default run takes ~2 s): well under 100 ms here (~5 ms measured)."""
    times = []
    for i in range(5):
        start = time.perf_counter()
        write_provenance(tmp_path / f"run{i}")
        times.append(time.perf_counter() - start)
    assert sorted(times)[2] < 0.1, times


# ---- through train(cfg) --------------------------------------------------------------------------
@pytest.mark.slow  # imports MLflow and W&B (~4 s)
def test_tags_reach_results_and_every_logger(tmp_path, cache_dir):
    out = tmp_path / "run"
    overrides = [*FAST, "trainer.max_epochs=1", "logger=many", "tags=[baseline,cnn,7]"]
    train(compose_config("train", out, overrides, cache_dir))
    results = json.loads((out / "results.json").read_text())
    assert results["tags"] == ["baseline", "cnn", "7"]
    assert results["provenance"]["dir"] == str(out / "provenance")
    assert (out / "provenance" / "provenance.json").is_file()
    in_git = (
        GIT is not None
        and subprocess.run(
            [GIT, "-C", str(project_root()), "rev-parse", "HEAD"], capture_output=True
        ).returncode
        == 0
    )  # the project is a git checkout (not so for a copied test bed)
    expected = _git(project_root(), "rev-parse", "HEAD") if in_git else None
    assert results["provenance"]["commit"] == expected
    assert "tags: baseline,cnn,7" in (out / "tensorboard" / "hparams.yaml").read_text()

    import wandb
    from mlflow.tracking import MlflowClient

    assert tuple(wandb.run.tags) == ("baseline", "cnn", "7")
    wandb.finish()
    client = MlflowClient(f"sqlite:///{out.parent / 'mlflow' / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("train").experiment_id])
    assert {k: run.data.tags[k] for k in ("baseline", "cnn", "7")} == dict.fromkeys(
        ("baseline", "cnn", "7"), "true"
    )


def test_experiment_configs_set_tags_and_the_command_line_replaces_them(tmp_path):
    cfg = compose_config("train", tmp_path / "a", ["experiment=digits_cnn"])
    assert list(cfg.tags) == ["digits", "cnn"]
    cfg = compose_config("train", tmp_path / "b", ["experiment=digits_cnn", "tags=[v2]"])
    assert list(cfg.tags) == ["v2"]


@pytest.mark.parametrize(
    ("tags", "bad"),
    [
        ("tags=baseline", "'baseline'"),  # a string, not a list
        ("tags=[a,[b,c]]", "['b', 'c']"),
        ("tags=[has space]", "'has space'"),
        (f"tags=[{'x' * 65}]", "'" + "x" * 65 + "'"),
        ("tags=[true]", "True"),
    ],
)
def test_bad_tags_fail_before_training(make_cfg, tags, bad):
    cfg = make_cfg("train", [*FAST, tags])
    with pytest.raises(ConfigError, match="tags=") as err:
        train(cfg)
    assert bad in str(err.value) and "e.g. tags=[baseline,cnn]" in str(err.value)
    results = json.loads((Path(cfg.paths.output_dir) / "results.json").read_text())
    assert (
        results["status"] == "failed" and not (Path(cfg.paths.output_dir) / "provenance").exists()
    )


@pytest.mark.slow  # a new Python process (~7 s): the one-line error of the command line
def test_bad_tags_on_the_command_line_are_one_line(tmp_path):
    result = run_cli(["src/train.py", "tags=baseline", f"paths.log_dir={tmp_path}"])
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    (line,) = [ln for ln in result.stderr.splitlines() if ln.startswith("tags=")]
    assert line.startswith("tags='baseline' is not allowed: use a list")
    assert line.endswith("(e.g. tags=[baseline,cnn]).")
