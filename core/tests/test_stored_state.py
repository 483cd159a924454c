"""Stored state sets values, never where the program writes, deletes or connects (issue 20 §1), and
what the user types wins; a run directory holds one run, a sweep directory one sweep (§2).

Each test goes through an entry point a user types: the task functions of eval/predict/export with
`ckpt_path=`, train with `resume=` (its command-line expansion, then the task) or `ckpt_path=`,
`python -m expkit.sweeps.summary`, `python -m expkit.runs_table`, and `python src/train.py` itself.
"""

import json
import logging
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
import torch

from expkit.checkpoints.run_config import read_run_config
from expkit.errors import ConfigError
from expkit.run.lock import LOCK_FILE
from expkit.run.one_run import refuse_new_run_in_existing_dir
from expkit.run.restore import merge_stored
from expkit.run.resume_args import expand_resume_args
from expkit.runs_table.cli import main as runs_table_main
from expkit.sweeps.lock import SWEEP_LOCK_FILE, lock_sweep_dir, unlock_sweep_dir
from expkit.sweeps.summary import main as summary_main
from helpers import FAST, PYTHON, PYTHONPATH, ROOT, compose_config, results, run_cli
from src.eval import evaluate
from src.export import export
from src.predict import predict
from src.train import train

QUIET = ["extras.print_config=false"]
TASKS = {"eval": evaluate, "predict": predict, "export": export}


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("stored") / "run"
    overrides = [*FAST, "trainer.max_epochs=1"]
    train(compose_config("train", out, overrides))
    (out / ".hydra").mkdir()  # what Hydra writes for `python src/train.py <overrides>`
    (out / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    return out


def crafted(trained: Path, tmp_path: Path, edit, name: str = "crafted.ckpt") -> Path:
    """The genuine best checkpoint, its contents edited by `edit(payload)` (still weights_only)."""
    payload = torch.load(results(trained)["best_model_path"], map_location="cpu", weights_only=True)
    edit(payload)
    path = tmp_path / name
    torch.save(payload, path)
    return path


def tree(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*")) if path.exists() else []


# ---- §1 a checkpoint gives the model and the data's values, nothing else --------------------------
@pytest.mark.parametrize("task", list(TASKS))
def test_a_checkpoint_chooses_no_trainer_callback_logger_profiler_or_path(trained, tmp_path, task):
    elsewhere = tmp_path / "elsewhere"

    def edit(payload: dict) -> None:
        rc = payload["run_config"]
        rc["trainer"]["profiler"] = {
            "_target_": "pytorch_lightning.profilers.SimpleProfiler",
            "dirpath": str(elsewhere / "profiler"),
            "filename": "perf",
        }
        rc["trainer"]["default_root_dir"] = str(elsewhere / "root")
        rc["data"]["cache_dir"] = str(elsewhere / "cache")
        rc["data"]["data_dir"] = str(elsewhere / "data")
        rc["paths"] = {k: str(elsewhere / k) for k in ("output_dir", "log_dir", "cache_dir")}
        rc["callbacks"] = {"csv": {"_target_": "expkit.callbacks.history.History"}}
        rc["logger"] = {
            "csv": {"_target_": "pytorch_lightning.loggers.CSVLogger", "save_dir": str(elsewhere)}
        }

    path = crafted(trained, tmp_path, edit)
    out = tmp_path / "out"
    cfg = compose_config(task, out, [f"ckpt_path={path}", *QUIET], cache_dir=tmp_path / "our_cache")
    metrics = TASKS[task](cfg, overrides=[])
    assert results(out)["status"] == "completed"
    if task == "eval":
        assert metrics["test/acc"] == results(trained)["metrics"]["test/acc"]
    assert tree(elsewhere) == []  # nothing written, cached or profiled where the checkpoint said


def test_stored_data_never_downloads_and_takes_this_clones_places(trained, tmp_path):
    """Through the merge every restoring task uses: the stored data's values stay, its places and
    `download` do not (a torchvision config with `download: true` and its own data_dir)."""

    def edit(payload: dict) -> None:
        payload["run_config"]["data"].update(
            download=True, data_dir="/somewhere/else", search_dirs=["/x"], batch_size=17
        )
        payload["run_config"]["model"]["net"]["weights_dir"] = "/another/place"

    path = crafted(trained, tmp_path, edit)
    own = compose_config("eval", tmp_path / "out", [f"ckpt_path={path}", *QUIET])
    merged = merge_stored(read_run_config(torch.load(path, weights_only=True), path), own, [])
    assert merged.data.download is False and merged.data.batch_size == 17
    assert merged.data.data_dir == own.paths.data_dir
    assert merged.data.search_dirs == list(own.paths.shared_data_dirs)
    assert merged.data.cache_dir == own.paths.cache_dir
    assert "weights_dir" not in merged.model.net  # no place of this clone for it: class default


@pytest.mark.parametrize(
    "where",
    [
        ("data", "batch_size", "${oc.env:HOME}"),
        ("model", "net", {"hidden": ["${oc.env:HOME}"]}),
        ("seed", None, "${oc.decode:'${oc.env:HOME}'}"),
        ("monitor", "metric", "val/${oc.env:USER,x}"),
    ],
    ids=["data", "nested-list", "decode", "in-text"],
)
@pytest.mark.parametrize("task", ["eval", "predict"])
def test_no_interpolation_in_a_checkpoint_is_resolved(trained, tmp_path, monkeypatch, where, task):
    monkeypatch.setenv("HOME", "/home/SECRET-HOME")
    root, key, value = where

    def edit(payload: dict) -> None:
        if key is None:
            payload["run_config"][root] = value
        else:
            payload["run_config"][root][key] = value

    path = crafted(trained, tmp_path, edit)
    cfg = compose_config(task, tmp_path / "out", [f"ckpt_path={path}", *QUIET])
    with pytest.raises(ConfigError, match="is an interpolation; stored state is never resolved"):
        TASKS[task](cfg, overrides=[])
    assert "SECRET-HOME" not in (tmp_path / "out" / "results.json").read_text()


# ---- §1 resume=: the overrides a run directory stores ----------------------------------------------
def write_run_dir(run: Path, overrides: list[str], task: str = "train") -> Path:
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "overrides.yaml").write_text(
        "".join(f"- {json.dumps(o)}\n" for o in overrides)
    )
    (run / ".hydra" / "config.yaml").write_text(f"task_name: {task}\nseed: 1\n")
    return run


REFUSED = {
    "hydra-by-package": "+optimizer@hydra.callbacks.evil=adam",
    "hydra-by-global-package": "optimizer@_global_.hydra.job.env_set=adam",
    "hydra-group": "hydra/launcher=joblib",
    "checkpoint-dirpath": "callbacks.model_checkpoint.dirpath={elsewhere}",
    "last-filename": "callbacks.last_checkpoint.filename=../../x",
    "logger-save-dir": "logger.tensorboard.save_dir={elsewhere}",
    "tracking-uri": "+logger.csv.tracking_uri=http://127.0.0.1:9/x",
    "paths": "paths.log_dir={elsewhere}",
    "data-dir": "data.cache_dir={elsewhere}",
    "download": "+data.download=true",
    "dict-value": "+callbacks.evil={_target_:expkit.callbacks.history.History,output_dir:/tmp}",
    "env-interpolation": "data.batch_size=${oc.env:HOME}",
    "decode-interpolation": "+tags=[${oc.decode:'[1]'}]",
}


@pytest.mark.parametrize("stored", list(REFUSED.values()), ids=list(REFUSED))
def test_resume_refuses_stored_overrides_that_set_hydra_places_or_interpolations(tmp_path, stored):
    elsewhere = tmp_path / "elsewhere"
    run = write_run_dir(tmp_path / "run", [stored.replace("{elsewhere}", str(elsewhere))])
    before = tree(run)
    with pytest.raises(ConfigError) as refused:
        args = expand_resume_args([f"resume={run}", *FAST[:2]])
        train(compose_config("train", run, args))
    message = str(refused.value)
    assert "\n" not in message and "never Hydra's own settings, paths or endpoints" in message
    assert tree(run) == before and not elsewhere.exists()


def test_a_place_typed_now_replaces_the_stored_line(tmp_path):
    run = write_run_dir(tmp_path / "run", ["callbacks.model_checkpoint.dirpath=/stored/x"])
    typed = f"callbacks.model_checkpoint.dirpath={tmp_path / 'mine'}"
    args = expand_resume_args([f"resume={run}", typed])
    assert typed in args and not any("/stored/x" in a for a in args)


@pytest.mark.parametrize("task", ["eval", "predict", "export"])
def test_resume_of_a_run_that_is_not_a_training_run_is_refused(tmp_path, task):
    run = write_run_dir(tmp_path / "run", ["ckpt_path=/x.ckpt"], task=task)
    with pytest.raises(ConfigError, match=f"a run of {task}, not of a training run"):
        expand_resume_args([f"resume={run}"])


def test_resume_of_a_real_eval_run_is_refused(trained, tmp_path):
    out = tmp_path / "eval"
    evaluate(compose_config("eval", out, [f"ckpt_path={results(trained)['best_model_path']}"]))
    write_run_dir(out, ["optimizer.lr=0.1"], task="train")  # even beside a train-like .hydra/
    with pytest.raises(ConfigError, match="a run of eval, not of a training run"):
        expand_resume_args([f"resume={out}"])


# ---- §1 restored callback state names files inside the run only ---------------------------------
def poison_states(payload: dict, victim: Path, dirpath: Path) -> None:
    """Every ModelCheckpoint state names `victim` as its old best, top-k and last checkpoint."""
    for state in payload["callbacks"].values():
        if "best_model_path" in state:
            state.update(
                dirpath=str(dirpath),
                best_model_path=str(victim),
                kth_best_model_path=str(victim),
                last_model_path=str(victim),
                best_k_models={str(victim): torch.tensor(-1.0)},
                best_model_score=torch.tensor(-1.0),
                kth_value=torch.tensor(-1.0),
            )


def shared_dir_overrides(shared: Path) -> list[str]:
    """The user's own choice (typed now): checkpoints in a shared folder outside the run."""
    return [f"callbacks.{n}.dirpath={shared}" for n in ("model_checkpoint", "last_checkpoint")]


def test_a_crafted_old_best_outside_the_run_survives_resume(trained, tmp_path, caplog):
    run, shared = tmp_path / "run", tmp_path / "shared"
    shutil.copytree(trained, run)
    shared.mkdir()
    victim = shared / "someone_elses.ckpt"
    victim.write_text("precious")
    for path in (run / "checkpoints").glob("*.ckpt"):
        payload = torch.load(path, map_location="cpu", weights_only=True)
        poison_states(payload, victim, shared)
        torch.save(payload, path)
    args = expand_resume_args(
        [f"resume={run}", "trainer.max_epochs=3", *shared_dir_overrides(shared)]
    )
    with caplog.at_level(logging.WARNING):
        train(compose_config("train", run, args))
    assert victim.read_text() == "precious"
    assert results(run)["status"] == "completed"
    assert "outside the run directory" in caplog.text and str(victim) in caplog.text


def test_a_crafted_old_best_outside_the_run_survives_a_ckpt_path_fit(trained, tmp_path, caplog):
    shared = tmp_path / "shared"
    shared.mkdir()
    victim = shared / "someone_elses.ckpt"
    victim.write_text("precious")
    path = crafted(trained, tmp_path, lambda p: poison_states(p, victim, shared))
    out = tmp_path / "new"
    overrides = [*FAST, "trainer.max_epochs=3", f"ckpt_path={path}", *shared_dir_overrides(shared)]
    with caplog.at_level(logging.WARNING):
        train(compose_config("train", out, overrides))
    assert victim.read_text() == "precious"
    assert results(out)["status"] == "completed"
    assert "outside the run directory" in caplog.text


def test_checkpoints_that_are_not_files_are_skipped_and_a_fifo_never_waits(trained, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    ckpts = run / "checkpoints"
    (ckpts / "last.ckpt").unlink()
    os.mkfifo(ckpts / "last.ckpt")  # newest candidate: a FIFO nobody writes
    (ckpts / "interrupted.ckpt").mkdir()  # a directory
    outside = tmp_path / "outside.ckpt"
    shutil.copy(results(trained)["best_model_path"], outside)
    (run / "hpc_ckpt_1.ckpt").symlink_to(outside)  # a symlink out of the run
    previous = signal.signal(signal.SIGALRM, lambda *_: pytest.fail("waited on the FIFO"))
    signal.alarm(120)
    try:
        args = expand_resume_args([f"resume={run}", "trainer.max_epochs=2"])
        train(compose_config("train", run, args))
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    resumed = results(run)["resumed_from"]
    assert resumed is not None and Path(resumed).name.startswith("epoch_")


def test_eval_of_a_fifo_or_directory_ckpt_path_is_one_line(tmp_path):
    os.mkfifo(tmp_path / "fifo.ckpt")
    (tmp_path / "dir.ckpt").mkdir()
    for name in ("fifo.ckpt", "dir.ckpt"):
        cfg = compose_config(
            "eval", tmp_path / name.split(".")[0], [f"ckpt_path={tmp_path / name}"]
        )
        with pytest.raises(ConfigError, match="is not a regular file"):
            evaluate(cfg, overrides=[])


# ---- §1 sweep summary and runs table read job files as untrusted data -----------------------------
ESC = "\x1b]0;pwned\x07\x1b[2J"


@pytest.fixture
def hostile_sweep(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("HOME", "/home/SECRET-HOME")
    sweep = tmp_path / "sweep"
    jobs = {
        "0": (["optimizer.lr=0.01"], {"status": "completed", "metrics": {"val/acc_best": 0.9}}),
        "1": ("- [unclosed\n", {"status": "completed", "metrics": {"val/acc_best": 0.8}}),
        "2": (["optimizer.lr=0.02"], {"status": "failed", "error": {"type": "X", "message": ESC}}),
        "3": (
            ["optimizer.lr=${oc.env:HOME}"],
            {"status": "completed", "metrics": {"val/acc_best": 0.7}},
        ),
        "4": (["optimizer.lr=0.04"], "{not json"),
        "5": ([f"seed=1{ESC}\r"], {"status": "completed", "metrics": {"val/acc_best": 0.6}}),
    }
    for name, (overrides, record) in jobs.items():
        job = sweep / name
        (job / ".hydra").mkdir(parents=True)
        text = (
            overrides
            if isinstance(overrides, str)
            else "".join(f"- {json.dumps(o)}\n" for o in overrides)
        )
        (job / ".hydra" / "overrides.yaml").write_text(text)
        body = record if isinstance(record, str) else json.dumps({"task": "train", **record})
        (job / "results.json").write_text(body)
    (sweep / "0" / ".hydra" / "config.yaml").write_text("optimized_metric: ${oc.env:HOME}\n")
    return sweep


def test_the_sweep_summary_reads_job_files_as_untrusted_data(hostile_sweep, caplog, capsys):
    with caplog.at_level(logging.INFO):
        assert summary_main([str(hostile_sweep), "--metric", "val/acc_best"]) == 0
    csv_text = (hostile_sweep / "summary.csv").read_text()
    written = csv_text + (hostile_sweep / "summary.md").read_text()
    shown = caplog.text + "".join(capsys.readouterr())
    for text in (written, shown):
        assert "\x1b" not in text and "\r" not in text.replace("\r\n", "\n")
        assert "SECRET-HOME" not in text
    assert "\\x1b" in written
    rows = {line.split(",")[0]: line for line in csv_text.splitlines()[1:]}
    assert len(rows) == 6
    assert "unreadable" in rows["1"] and "unreadable" in rows["4"]


def test_the_runs_table_reads_job_files_as_untrusted_data(hostile_sweep, capsys, tmp_path):
    out = tmp_path / "table.csv"
    assert (
        runs_table_main([str(hostile_sweep), "--csv", str(out), "--column", "optimized_metric"])
        == 0
    )
    shown = "".join(capsys.readouterr())
    for text in (shown, out.read_text()):
        assert "\x1b" not in text and "SECRET-HOME" not in text
    assert "unreadable" in shown


# ---- §2 what you type wins over the restored callback state ------------------------------------
def test_early_stopping_settings_typed_on_resume_win_over_the_checkpoint(trained, tmp_path):
    """The checkpoint says patience 0 and a best score no epoch can beat: restored as is, the run
    would stop after one more epoch. Typed patience=100 runs every epoch asked for."""
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    for path in (run / "checkpoints").glob("*.ckpt"):
        payload = torch.load(path, map_location="cpu", weights_only=True)
        for key, state in payload["callbacks"].items():
            if key.startswith("EarlyStopping"):
                state.update(patience=0, wait_count=0, best_score=torch.tensor(1e9))
        torch.save(payload, path)
    typed = ["trainer.max_epochs=4", "callbacks.early_stopping.patience=100"]
    args = expand_resume_args([f"resume={run}", *typed])
    train(compose_config("train", run, args))
    history = (run / "history.csv").read_text().strip().splitlines()
    assert results(run)["status"] == "completed"
    assert len(history) - 1 == 4, history  # epochs 0..3: early stopping did not stop it


# ---- §2 a run directory holds one run ------------------------------------------------------------
def test_a_new_run_into_an_existing_run_directory_is_refused(trained, tmp_path, monkeypatch):
    for key in ("SLURM_JOB_ID", "SLURM_RESTART_COUNT", "LOCAL_RANK", "RANK", "SLURM_PROCID"):
        monkeypatch.delenv(key, raising=False)
    args = [f"hydra.run.dir={trained}", "trainer.max_epochs=400"]
    with pytest.raises(ConfigError, match=f"resume={trained}"):
        refuse_new_run_in_existing_dir(args, "train")
    refuse_new_run_in_existing_dir([f"hydra.run.dir={tmp_path / 'fresh'}"], "train")
    refuse_new_run_in_existing_dir([f"resume={trained}", f"hydra.run.dir={trained}"], "train")
    monkeypatch.setenv("LOCAL_RANK", "1")  # a DDP rank > 0 joins its rank 0's run
    refuse_new_run_in_existing_dir(args, "train")


def test_a_slurm_requeue_of_the_same_job_continues_its_run(tmp_path, monkeypatch):
    run = tmp_path / "run"
    run.mkdir()
    (run / LOCK_FILE).write_text(json.dumps({"host": "h", "pid": 1, "slurm_job_id": "77"}))
    args = [f"hydra.run.dir={run}"]
    monkeypatch.setenv("SLURM_PROCID", "0")
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    refuse_new_run_in_existing_dir(args, "train")  # the same job: continues
    monkeypatch.setenv("SLURM_JOB_ID", "78")  # another job (a reused id is a new run)
    with pytest.raises(ConfigError, match="already holds a run"):
        refuse_new_run_in_existing_dir(args, "train")


@pytest.mark.slow
def test_a_new_run_into_an_existing_run_is_one_line_on_the_command_line(trained, tmp_path):
    before = {p: p.stat().st_mtime_ns for p in trained.rglob("*")}
    proc = run_cli(["src/train.py", f"hydra.run.dir={trained}", "trainer.max_epochs=400"])
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert f"resume={trained}" in proc.stderr.strip().splitlines()[-1]
    assert {p: p.stat().st_mtime_ns for p in trained.rglob("*")} == before


# ---- §2 one sweep per sweep directory -------------------------------------------------------------
HOLD = (
    "import sys; from expkit.sweeps.lock import lock_sweep_dir; lock_sweep_dir(sys.argv[1]); "
    "print('held', flush=True); sys.stdin.read()"
)


def hold_sweep_lock(sweep: Path) -> subprocess.Popen:
    proc = subprocess.Popen(
        [PYTHON, "-c", HOLD, str(sweep)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": PYTHONPATH},
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_sweep_into_a_locked_sweep_directory_exits_at_once(tmp_path):
    sweep = tmp_path / "sweep"
    holder = hold_sweep_lock(sweep)
    try:
        before = {p: p.stat().st_mtime_ns for p in sweep.rglob("*")}
        with pytest.raises(SystemExit) as second:
            lock_sweep_dir(sweep)
        message = str(second.value.code)
        assert "in use by another sweep" in message and f"PID {holder.pid}" in message
        assert "\n" not in message
        assert {p: p.stat().st_mtime_ns for p in sweep.rglob("*")} == before
    finally:
        holder.kill()  # SIGKILL: the lock dies with its process
        holder.wait()
    lock_sweep_dir(sweep)  # a later sweep (a resumed study) into its own directory
    unlock_sweep_dir(sweep)
    assert (sweep / SWEEP_LOCK_FILE).is_file()


@pytest.mark.slow
def test_a_second_sweep_through_the_command_line_touches_nothing(tmp_path):
    sweep = tmp_path / "sweep"
    holder = hold_sweep_lock(sweep)
    try:
        before = tree(sweep)
        proc = run_cli(
            ["src/train.py", "-m", f"hydra.sweep.dir={sweep}", "optimizer.lr=0.001,0.05", *FAST],
            timeout=120,
        )
    finally:
        holder.kill()
        holder.wait()
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "in use by another sweep" in proc.stderr and "Traceback" not in proc.stderr
    assert tree(sweep) == before


def test_a_moved_run_keeps_its_own_best_checkpoint(trained, tmp_path):
    """A copied run directory: its checkpoints' stored paths name the old place; the files of the
    same names in this run are the ones meant (re-derived there, never the old ones)."""
    run = tmp_path / "moved"
    shutil.copytree(trained, run)
    args = expand_resume_args([f"resume={run}", "trainer.max_epochs=1"])  # nothing left to train
    train(compose_config("train", run, args))
    best = results(run)["best_model_path"]
    assert best is not None and Path(best).parent == run / "checkpoints"
    assert "test/acc" in results(run)["metrics"]
