"""What comes from elsewhere is data: stored configs never choose what gets called, a failed
write never leaves a half file under a final name, and one process writes a run directory.

Each class of problem has its row in docs/faults.md, naming the test here that proves it.
"""

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from expkit.checkpoints.load import load_checkpoint
from expkit.checkpoints.target_policy import project_targets
from expkit.errors import ConfigError, RunDirLockedError, UntrustedTargetError
from expkit.run.lock import LOCK_FILE
from expkit.run.resume_args import expand_resume_args
from expkit.utils.atomic import atomic_open, atomic_write_bytes
from helpers import FAST, PYTHON, PYTHONPATH, ROOT, compose_config, results, run_cli
from src.eval import evaluate
from src.export import export
from src.predict import predict
from src.train import train

QUIET = ["extras.print_config=false"]
TASKS = {"eval": evaluate, "predict": predict, "export": export}


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("trusted") / "run"
    train(compose_config("train", out, [*FAST, "trainer.max_epochs=1"]))
    return out


def crafted_checkpoint(trained: Path, tmp_path: Path, edit) -> Path:
    """The genuine best checkpoint with its stored run config edited by `edit(run_config)`."""
    best = results(trained)["best_model_path"]
    payload = torch.load(best, map_location="cpu", weights_only=True)
    edit(payload["run_config"])
    path = tmp_path / "crafted.ckpt"
    torch.save(payload, path)  # still only dicts, strings and tensors: loads with weights_only
    load_checkpoint(path)
    return path


def opens(marker: Path) -> dict:
    """A config node that would create `marker` if it were ever built."""
    return {"_target_": "builtins.open", "file": str(marker), "mode": "w"}


def start_and_wait_for(code: str, arg: Path, ready: str) -> subprocess.Popen:
    """`python -c code arg` in this checkout; returns once it prints the line `ready`."""
    proc = subprocess.Popen(
        [PYTHON, "-c", code, str(arg)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": PYTHONPATH},
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == ready
    return proc


# ---- 1. a checkpoint never chooses what gets called ---------------------------------------------
PLACES = {
    "model.net": lambda rc, node: rc["model"].__setitem__("net", node),
    "data": lambda rc, node: rc.__setitem__("data", node),
    "model.optimizer (_partial_)": lambda rc, node: rc["model"].__setitem__(
        "optimizer", {**node, "_partial_": True}
    ),
    "model.net._args_[0]": lambda rc, node: rc["model"]["net"].__setitem__("_args_", [node]),
}


@pytest.mark.parametrize("place", list(PLACES))
@pytest.mark.parametrize("task", list(TASKS))
def test_stored_config_cannot_call_a_foreign_target(trained, tmp_path, task, place):
    marker = tmp_path / "created-by-the-checkpoint"
    path = crafted_checkpoint(trained, tmp_path, lambda rc: PLACES[place](rc, opens(marker)))
    cfg = compose_config(task, tmp_path / "out", [f"ckpt_path={path}", *QUIET])
    with pytest.raises(UntrustedTargetError) as info:
        TASKS[task](cfg, overrides=[])
    message = str(info.value)
    assert str(path) in message and "'builtins.open'" in message
    assert "trusted_targets=[builtins.open]" in message and "\n" not in message
    assert not marker.exists()
    assert results(tmp_path / "out")["status"] == "failed"


def test_project_targets_are_read_from_the_config_files():
    targets = project_targets()
    assert "src.models.nets.mlp.MLP" in targets and "torch.optim.Adam" in targets
    assert "builtins.open" not in targets and "torch.save" not in targets


def test_trusting_a_target_is_explicit_and_exact(trained, tmp_path):
    environment = "torch.optim.NAdam"  # a real optimizer no config under configs/ names
    path = crafted_checkpoint(
        trained,
        tmp_path,
        lambda rc: rc["model"].__setitem__(
            "optimizer", {"_target_": environment, "_partial_": True, "lr": 0.001}
        ),
    )
    for trusted in ("[]", "[torch]", "[torch.optim]"):
        cfg = compose_config(
            "eval",
            tmp_path / f"no{len(trusted)}",
            [f"ckpt_path={path}", f"trusted_targets={trusted}", *QUIET],
        )
        with pytest.raises(UntrustedTargetError, match="NAdam"):
            evaluate(cfg, overrides=[])
    cfg = compose_config(
        "eval", tmp_path / "yes", [f"ckpt_path={path}", f"trusted_targets=[{environment}]", *QUIET]
    )
    assert evaluate(cfg, overrides=[])["test/acc"] == results(trained)["metrics"]["test/acc"]
    with pytest.raises(ConfigError, match="exact dotted names"):
        cfg = compose_config(
            "eval", tmp_path / "star", [f"ckpt_path={path}", "trusted_targets=[torch.*]", *QUIET]
        )
        evaluate(cfg, overrides=[])


def test_genuine_checkpoint_values_still_apply(trained, tmp_path):
    """Values (sizes, batch sizes) from the checkpoint are used: eval reproduces test/acc exactly."""
    best = results(trained)["best_model_path"]
    cfg = compose_config("eval", tmp_path / "eval", [f"ckpt_path={best}", *QUIET])
    assert evaluate(cfg, overrides=[])["test/acc"] == results(trained)["metrics"]["test/acc"]


def test_resume_drops_stored_paths_outside_the_run(trained, tmp_path, caplog):
    """ModelCheckpoint deletes the files its restored top-k paths name: a crafted state must not
    choose them. They are dropped with a warning (core/tests/test_stored_state.py: also when Lightning
    would have deleted the file)."""
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    for path in (run / "checkpoints").glob("*.ckpt"):
        payload = torch.load(path, map_location="cpu", weights_only=True)
        for state in payload["callbacks"].values():
            if "best_k_models" in state:
                state["best_k_models"] = {str(victim): torch.tensor(2.0)}
                state["dirpath"] = str(run / "checkpoints")
        torch.save(payload, path)
    cfg = compose_config("train", run, [*FAST, "trainer.max_epochs=3", f"resume={run}"])
    train(cfg)
    assert victim.read_text() == "precious"
    assert results(run)["status"] == "completed"
    assert "outside the run directory" in caplog.text and str(victim) in caplog.text


def write_run_dir(run: Path, overrides: list[str]) -> Path:
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "overrides.yaml").write_text(
        "".join(f"- {json.dumps(o)}\n" for o in overrides)
    )
    return run


@pytest.mark.parametrize(
    ("stored", "expected"),
    [
        (
            [
                "+callbacks.x._target_=builtins.open",
                "+callbacks.x.file={marker}",
                "+callbacks.x.mode=w",
            ],
            "'builtins.open'",
        ),
        (
            [
                "trusted_targets=[builtins.open]",
                "+callbacks.x._target_=builtins.open",
                "+callbacks.x.file={marker}",
            ],
            "'builtins.open'",
        ),
        (["hydra.searchpath=[file://{marker}]"], "never Hydra's own settings"),
        (["+hydra.callbacks.x._target_=builtins.open"], "never Hydra's own settings"),
    ],
)
def test_resume_refuses_a_run_directory_that_names_foreign_code(tmp_path, stored, expected):
    """In-process: the resume expansion and the task, as `python src/train.py resume=` runs them."""
    marker = tmp_path / "created-by-the-run-dir"
    run = write_run_dir(tmp_path / "run", [o.format(marker=marker) for o in stored])
    before = sorted(p.name for p in run.rglob("*"))
    with pytest.raises((UntrustedTargetError, ConfigError)) as refused:
        args = expand_resume_args([f"resume={run}", *FAST[:2]])
        train(compose_config("train", run, args))
    assert expected in str(refused.value)
    assert not marker.exists()
    assert (
        sorted(p.name for p in run.rglob("*") if p.name not in (LOCK_FILE, "train.log")) == before
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    ("stored", "expected"),
    [
        (["+callbacks.x._target_=builtins.open", "+callbacks.x.file={marker}"], "'builtins.open'"),
        (["+hydra.callbacks.x._target_=builtins.open"], "never Hydra's own settings"),
    ],
)
def test_resume_refuses_foreign_code_on_the_command_line_in_one_line(tmp_path, stored, expected):
    marker = tmp_path / "created-by-the-run-dir"
    run = write_run_dir(tmp_path / "run", [o.format(marker=marker) for o in stored])
    before = sorted(p.name for p in run.rglob("*"))
    proc = run_cli(["src/train.py", f"resume={run}", *FAST[:2]], timeout=300)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert expected in proc.stderr and "Traceback" not in proc.stderr
    assert not marker.exists()
    assert (
        sorted(p.name for p in run.rglob("*") if p.name not in (LOCK_FILE, "train.log")) == before
    )


# ---- 3. no half-written file under a final name -------------------------------------------------
def test_a_failed_write_leaves_the_previous_file(tmp_path):
    path = tmp_path / "results.json"
    path.write_text("good")
    with pytest.raises(RuntimeError), atomic_open(path) as f:
        f.write("half")
        raise RuntimeError("crash mid-write")
    assert path.read_text() == "good" and [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_kill_9_mid_write_leaves_the_previous_file(tmp_path):
    path = tmp_path / "last.ckpt"
    path.write_bytes(b"previous good checkpoint")
    writer = (
        "import sys, time\nfrom expkit.utils.atomic import atomic_open\n"
        "with atomic_open(sys.argv[1], 'wb') as f:\n"
        "    f.write(b'x' * 1000); f.flush(); print('writing', flush=True); time.sleep(60)\n"
    )
    proc = start_and_wait_for(writer, path, "writing")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert path.read_bytes() == b"previous good checkpoint"


def test_full_disk_write_raises_naming_the_file_and_keeps_the_old_one(small_disk):
    path = small_disk / "data.bin"
    atomic_write_bytes(path, b"old")
    with pytest.raises(OSError) as info:
        atomic_write_bytes(path, b"x" * 4_000_000)
    assert info.value.filename == str(path) and "No space left" in str(info.value)
    assert path.read_bytes() == b"old" and [p.name for p in small_disk.iterdir()] == ["data.bin"]


@pytest.mark.slow
def test_a_run_that_fills_the_disk_ends_in_one_line_and_resumes(small_disk):
    """A checkpoint is ~300 KB: with ~500 KB free, epoch_000.ckpt fits and last.ckpt does not."""
    filler = small_disk / "filler"
    filler.write_bytes(b"\0" * 1_000_000)
    run = small_disk / "run"
    args = ["src/train.py", "trainer.max_epochs=3", "logger=csv", f"hydra.run.dir={run}", *QUIET]
    proc = run_cli(args, timeout=300)
    assert proc.returncode == 1
    assert "No space left on device while writing" in proc.stderr
    assert "Newest good checkpoint" in proc.stderr and "Traceback" not in proc.stderr
    for ckpt in run.rglob("*.ckpt"):
        load_checkpoint(ckpt)  # nothing truncated under a final name
    assert not [p for p in run.rglob("*") if p.name.endswith(".tmp")]
    assert results(run)["error"]["type"] == "DiskFullError"
    filler.unlink()
    proc = run_cli(["src/train.py", f"resume={run}"], timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert results(run)["status"] == "completed" and "test/acc" in results(run)["metrics"]


def test_resume_skips_checkpoints_that_do_not_load(trained, tmp_path, caplog):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    last = run / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])  # truncated
    (run / "checkpoints" / "interrupted.ckpt").write_bytes(b"")  # empty, and the newest
    cfg = compose_config(
        "train", run, [*FAST, "trainer.max_epochs=2", "test=false", f"resume={run}"]
    )
    train(cfg)
    skipped = [r.getMessage() for r in caplog.records if "Not resuming from" in r.getMessage()]
    assert any("interrupted.ckpt" in m for m in skipped) and any("last.ckpt" in m for m in skipped)
    assert Path(results(run)["resumed_from"]).name.startswith("epoch_")


# ---- 4. one writer per run directory ------------------------------------------------------------
def hold_lock(run_dir: Path) -> subprocess.Popen:
    holder = (
        "import sys, time\nfrom expkit.run.lock import acquire\n"
        "acquire(sys.argv[1]); print('locked', flush=True); time.sleep(120)\n"
    )
    return start_and_wait_for(holder, run_dir, "locked")


def test_a_second_writer_exits_at_once_touching_nothing(tmp_path):
    run = tmp_path / "run"
    holder = hold_lock(run)
    try:
        with pytest.raises(RunDirLockedError) as info:
            train(compose_config("train", run, FAST))
        assert str(run) in str(info.value) and f"PID {holder.pid}" in str(info.value)
        assert sorted(p.name for p in run.iterdir()) == [LOCK_FILE]
    finally:
        holder.send_signal(signal.SIGKILL)  # the lock dies with its process: no stale lock
        holder.wait()
    assert train(compose_config("train", run, [*FAST, "trainer.max_epochs=1", "test=false"]))


@pytest.mark.slow
def test_two_resumes_of_one_run_only_one_writes(trained, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    (run / ".hydra").mkdir()
    (run / ".hydra" / "overrides.yaml").write_text("- logger=csv\n")
    # a first writer that runs until stopped (no early stopping, far more epochs than it will do)
    args = [
        "src/train.py",
        f"resume={run}",
        "trainer.max_epochs=100000",
        "~callbacks.early_stopping",
        "test=false",
    ]
    env = {**os.environ, "PYTHONPATH": PYTHONPATH, "PYTHONUNBUFFERED": "1"}
    first = subprocess.Popen(
        [PYTHON, *args], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.time() + 120
        while time.time() < deadline and str(first.pid) not in _lock_text(run):
            time.sleep(0.2)
        second = run_cli(args, timeout=300)
        assert second.returncode == 1 and first.poll() is None  # refused at once, not after waiting
        assert "is in use by another run" in second.stderr and f"PID {first.pid}" in second.stderr
        assert "Traceback" not in second.stderr
    finally:
        first.send_signal(signal.SIGTERM)  # the first writer is the one that records how it ended
        first.wait(timeout=300)
    assert first.returncode == 128 + signal.SIGTERM
    assert results(run)["status"] == "interrupted"


def _lock_text(run: Path) -> str:
    try:
        return (run / LOCK_FILE).read_text()
    except OSError:
        return ""
