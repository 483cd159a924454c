"""Resume: by run (`resume=`), after Ctrl+C/SIGTERM/a crash, after SIGKILL (exactly), after SLURM pre-emption."""

import csv
import os
import pickle
import signal
import stat
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from expkit.errors import CheckpointError, ConfigError
from expkit.run.resume_args import expand_resume_args
from helpers import FAST, ROOT, compose_config, fault, results, run_cli
from src.train import train

#: digits batches per training epoch (1,294 samples / 64)
STEPS_PER_EPOCH = 21
#: randomness that a resume must reproduce: dropout and batch augmentation
RANDOM = ["model.net.dropout=0.3", "data.augment=true"]


def history(run_dir: Path) -> list[dict[str, str]]:
    rows = list(csv.DictReader((run_dir / "history.csv").open()))
    for row in rows:  # wall-clock columns differ between any two runs
        row.pop("epoch_time_s")
        row.pop("train_time_s", None)
    return rows


def checkpoint(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def best_score(run_dir: Path) -> float:
    states = checkpoint(run_dir / "checkpoints" / "last.ckpt")["callbacks"]
    (state,) = [v for k, v in states.items() if k.startswith("ModelCheckpoint{'monitor': 'val")]
    return float(state["best_model_score"])


# ---- resume=<run_dir>: the command line ----------------------------------------------------------
def write_run(run_dir: Path, overrides: list[str]) -> Path:
    (run_dir / ".hydra").mkdir(parents=True)
    OmegaConf.save(OmegaConf.create(overrides), run_dir / ".hydra" / "overrides.yaml")
    return run_dir


def test_resume_expands_to_the_run_overrides_and_directory(tmp_path):
    run = write_run(
        tmp_path / "run", ["model=cnn", "trainer.max_epochs=3", "ckpt_path=x.ckpt", "seed=7"]
    )
    args = expand_resume_args(["-c", "job", f"resume={run}", "trainer.max_epochs=9"])
    assert args == [
        "-c",
        "job",
        "model=cnn",
        "seed=7",
        f"resume={run}",
        f"hydra.run.dir={run}",
        "hydra.output_subdir=null",
        "trainer.max_epochs=9",  # typed now: wins, and the run's own value is dropped
    ]
    assert expand_resume_args(["seed=1"]) == ["seed=1"]  # no resume=: untouched


def test_a_ddp_rank_rerunning_the_expanded_command_is_not_expanded_again(tmp_path):
    """Lightning starts DDP ranks with this process's (expanded) arguments plus the run's own
    `hydra.run.dir` (quoted): that is the same run, not a second `hydra.run.dir=`."""
    run = write_run(tmp_path / "run", ["model=cnn"])
    expanded = expand_resume_args([f"resume={run}", "trainer.max_epochs=9"])
    rank = [*expanded, f'hydra.run.dir="{run}"', "hydra.job.name=train_ddp_process_1"]
    assert expand_resume_args([*rank, "hydra.output_subdir=null"]) == [
        *rank,
        "hydra.output_subdir=null",
    ]
    with pytest.raises(ConfigError, match="drop hydra.run.dir"):  # another directory: refused
        expand_resume_args([*expanded, f"hydra.run.dir={tmp_path / 'other'}"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["resume={run}", "-m"], "cannot be combined with -m"),
        (["resume={run}", "hydra.run.dir=/tmp/x"], "drop hydra.run.dir"),
        (["resume={empty}"], "is not a run directory of this template"),
    ],
    ids=["with-multirun", "with-run-dir", "not-a-run-dir"],
)
def test_resume_rejects_what_it_cannot_continue(tmp_path, args, message):
    run = write_run(tmp_path / "run", [])
    (tmp_path / "empty").mkdir()
    args = [a.format(run=run, empty=tmp_path / "empty") for a in args]
    with pytest.raises(ConfigError, match=message):
        expand_resume_args(args)


def test_resume_continues_in_the_same_directory_and_keeps_the_best_score(tmp_path):
    run = tmp_path / "run"
    train(compose_config("train", run, [*FAST, "trainer.max_epochs=2"]))
    best_before = best_score(run)
    metrics = train(compose_config("train", run, [*FAST, "trainer.max_epochs=3", f"resume={run}"]))
    assert results(run)["resumed_from"] == str(run / "checkpoints" / "last.ckpt")
    assert [int(r["epoch"]) for r in history(run)] == [0, 1, 2]
    assert best_score(run) == max(best_before, metrics["val/acc"])  # kept, not reset
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        "epoch_002.ckpt" if metrics["val/acc"] > best_before else "epoch_001.ckpt",
        "last.ckpt",
    ]
    assert len(list((run / "csv").glob("metrics.csv"))) == 1  # the same logger, appended
    before = {f: (run / f).read_text() for f in ("results.json", "config.yaml", "history.csv")}
    with pytest.raises(ConfigError, match=r"trainer.max_epochs=1 but .* was saved in epoch 2"):
        train(compose_config("train", run, [*FAST, "trainer.max_epochs=1", f"resume={run}"]))
    with pytest.raises(CheckpointError, match="does not fit the model of this run"):
        train(compose_config("train", run, [*FAST, "model=cnn", f"resume={run}"]))
    assert before == {f: (run / f).read_text() for f in before}  # rejected: the run is untouched


def test_a_run_killed_after_its_last_epoch_resumes_with_its_final_metrics(tmp_path):
    """Killed between the last `last.ckpt` and results.json (in the test, say): the resumed fit has
    no epoch left to train and logs nothing; the final metrics come from the stored history."""
    run = tmp_path / "run"
    first = train(compose_config("train", run, [*FAST, "trainer.max_epochs=1"]))
    (run / "results.json").unlink()
    again = train(compose_config("train", run, [*FAST, "trainer.max_epochs=1", f"resume={run}"]))
    assert results(run)["resumed_from"] == str(run / "checkpoints" / "last.ckpt")
    assert again == first  # val/acc_best (what a sweep optimizes) included


def test_resume_must_run_in_its_own_directory(make_cfg, tmp_path):
    cfg = make_cfg("train", [*FAST, f"resume={tmp_path}"])
    with pytest.raises(ConfigError, match="continues that run in its own directory"):
        train(cfg)


# ---- interrupted in the middle of an epoch --------------------------------------------------------
@pytest.fixture(autouse=True)
def _python_sigint_handler():
    """A shell that starts pytest in the background hands it SIGINT ignored (SIG_IGN is inherited,
    and Python then installs no handler); the Ctrl+C case needs Python's own handler."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.mark.parametrize(
    ("injected", "raised", "status", "steps"),
    [
        # Ctrl+C: Lightning's exit(1), right away (batch 5 of epoch 1 never runs)
        (fault("SignalAt", name="INT", epoch=1, batch=5), SystemExit(1), "interrupted", 26),
        # SIGTERM: Lightning finishes batch 5, then exits; we make the status 128 + 15
        (fault("SignalAt", name="TERM", epoch=1, batch=5), SystemExit(143), "interrupted", 27),
        (fault("RaiseAt", epoch=1, batch=5), RuntimeError("injected"), "failed", 26),
    ],
    ids=["ctrl-c", "sigterm", "exception"],
)
def test_interrupted_run_leaves_a_checkpoint_and_resumes(tmp_path, injected, raised, status, steps):
    run = tmp_path / "run"
    with pytest.raises(type(raised)) as info:
        train(compose_config("train", run, [*FAST, *injected]))
    assert info.value.args == raised.args or str(raised) in str(info.value)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handlers restored
    assert results(run)["status"] == status and results(run)["error"]["message"]
    saved = run / "checkpoints" / "interrupted.ckpt"
    assert checkpoint(saved)["global_step"] == steps  # where it stopped, not the last epoch end
    assert [int(r["epoch"]) for r in history(run)] == [0]  # the log of what finished

    train(compose_config("train", run, [*FAST, f"resume={run}"]))  # FAST: 2 epochs
    assert results(run)["status"] == "completed"
    assert results(run)["resumed_from"] == str(saved)
    assert not saved.exists()  # removed once the run completed
    assert [int(r["epoch"]) for r in history(run)] == [0, 1]
    assert checkpoint(run / "checkpoints" / "last.ckpt")["global_step"] == 2 * STEPS_PER_EPOCH


def test_nothing_is_saved_for_a_run_that_never_took_a_step(tmp_path):
    run = tmp_path / "run"
    with pytest.raises(RuntimeError, match="injected"):
        train(compose_config("train", run, [*FAST, *fault("RaiseAt", epoch=0, batch=0)]))
    assert not (run / "checkpoints").exists()


# ---- exact resume ----------------------------------------------------------------------------------
def test_resume_after_epoch_k_matches_an_uninterrupted_run(tmp_path):
    """In-process twin of the SIGKILL test: the run dies between epochs with nothing saved for it."""
    common = [*FAST, *RANDOM]  # 2 epochs; dies when the second starts
    reference = train(compose_config("train", tmp_path / "ref", common))
    run = tmp_path / "run"
    dying = [*common, "~callbacks.interrupt_checkpoint", *fault("RaiseAt", epoch=1)]
    with pytest.raises(RuntimeError):
        train(compose_config("train", run, dying))
    assert checkpoint(run / "checkpoints" / "last.ckpt")["epoch"] == 0
    resumed = train(compose_config("train", run, [*common, f"resume={run}"]))
    assert resumed == reference
    assert history(run) == history(tmp_path / "ref")
    assert best_score(run) == best_score(tmp_path / "ref")


def cli_train(args: list[str], cwd: Path) -> tuple[int, str]:
    proc = run_cli([str(ROOT / "src" / "train.py"), *args], cwd=cwd, timeout=300)
    return proc.returncode, proc.stdout + proc.stderr


@pytest.mark.slow
def test_sigkill_after_epoch_k_then_resume_matches_an_uninterrupted_run(tmp_path, cache_dir):
    """`kill -9` between epochs, then `python src/train.py resume=<run>`: the same numbers."""
    common = [
        *FAST,
        *RANDOM,
        "trainer.max_epochs=3",
        f"paths.cache_dir={cache_dir}",
        f"paths.log_dir={tmp_path}",
    ]
    ref, run = tmp_path / "ref", tmp_path / "run"
    code, out = cli_train([*common, f"hydra.run.dir={ref}"], tmp_path)
    assert code == 0, out[-3000:]
    code, out = cli_train(
        [*common, *fault("SignalAt", name="KILL", epoch=2), f"hydra.run.dir={run}"], tmp_path
    )
    assert code == -signal.SIGKILL, out[-3000:]
    assert checkpoint(run / "checkpoints" / "last.ckpt")["epoch"] == 1
    assert not (run / "results.json").exists()  # a killed run is never mistaken for a result

    # no overrides retyped but the places, which a run directory never sets (docs/faults.md T4)
    places = [f"paths.cache_dir={cache_dir}", f"paths.log_dir={tmp_path}"]
    code, out = cli_train([f"resume={run}", "~callbacks.fault", *places], tmp_path)
    assert code == 0, out[-3000:]
    assert "Resuming from" in (run / "train.log").read_text()
    assert results(run)["metrics"] == results(ref)["metrics"]
    assert history(run) == history(ref)
    assert best_score(run) == best_score(ref)
    weights = checkpoint(run / "checkpoints" / "last.ckpt")["state_dict"]
    reference = checkpoint(ref / "checkpoints" / "last.ckpt")["state_dict"]
    assert all(torch.equal(weights[k], reference[k]) for k in reference)


@pytest.mark.slow
def test_resume_of_a_ddp_run_through_the_command_line(tmp_path, cache_dir):
    """`resume=` of a `trainer=ddp_sim` run: rank 1 reruns the expanded command line (it used to
    stop with "drop hydra.run.dir" and take the run down with it)."""
    common = [*FAST, "trainer=ddp_sim", f"paths.cache_dir={cache_dir}", f"paths.log_dir={tmp_path}"]
    code, out = cli_train([*common, "trainer.max_epochs=1"], tmp_path)
    assert code == 0, out[-3000:]
    (run,) = (tmp_path / "train" / "runs").iterdir()
    # places are typed again: a run directory's overrides never set them (docs/faults.md T4)
    places = [f"paths.cache_dir={cache_dir}", f"paths.log_dir={tmp_path}"]
    code, out = cli_train([f"resume={run}", "trainer.max_epochs=2", *places], tmp_path)
    assert code == 0, out[-3000:]
    assert results(run)["status"] == "completed" and results(run)["resumed_from"]
    assert [int(r["epoch"]) for r in history(run)] == [0, 1]
    assert [p.name for p in (tmp_path / "train" / "runs").iterdir()] == [run.name]


@pytest.mark.slow
def test_sigterm_through_the_command_line(tmp_path, cache_dir):
    run = tmp_path / "run"
    args = [*FAST, f"paths.cache_dir={cache_dir}", f"hydra.run.dir={run}"]
    code, out = cli_train([*args, *fault("SignalAt", name="TERM", epoch=1, batch=3)], tmp_path)
    assert code == 128 + signal.SIGTERM, out[-3000:]
    assert results(run)["status"] == "interrupted"
    assert (run / "checkpoints" / "interrupted.ckpt").is_file()
    assert "saved" in (run / "train.log").read_text()  # the log says where it stopped


# ---- SLURM pre-emption -------------------------------------------------------------------------
@pytest.fixture
def slurm_job(monkeypatch, tmp_path):
    """The environment of a SLURM batch job, with an `scontrol` that records what it was asked."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    scontrol = bin_dir / "scontrol"
    scontrol.write_text(f'#!/bin/sh\necho "$@" >> {tmp_path / "scontrol.log"}\n')
    scontrol.chmod(scontrol.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    env = {
        "SLURM_JOB_ID": "4242",
        "SLURM_JOB_NAME": "train",
        "SLURM_NTASKS": "1",
        "SLURM_NTASKS_PER_NODE": "1",
        "SLURM_PROCID": "0",
        "SLURM_LOCALID": "0",
        "SLURM_NODEID": "0",
        "SLURM_NODELIST": "localhost",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return tmp_path / "scontrol.log"


def test_slurm_preemption_requeues_and_the_requeued_job_resumes(tmp_path, slurm_job):
    """SIGUSR1 before the time limit: Lightning saves hpc_ckpt_1.ckpt and requeues the job; the job
    then dies (SLURM kills it). The requeued job runs the same command in the same (pinned) run
    directory and continues from that checkpoint."""
    run = tmp_path / "run"
    command = [*FAST, "~callbacks.interrupt_checkpoint"]
    preempted = [
        *fault("SignalAt", name="USR1", epoch=1, batch=3),
        "+callbacks.kill._target_=fault_injection.RaiseAt",
        "+callbacks.kill.epoch=1",
        "+callbacks.kill.batch=4",
    ]
    with pytest.raises(RuntimeError):
        train(compose_config("train", run, [*command, *preempted]))
    assert slurm_job.read_text().split() == ["requeue", "4242"]
    assert checkpoint(run / "hpc_ckpt_1.ckpt")["global_step"] == STEPS_PER_EPOCH + 3

    first = results(run)
    assert first["status"] == "failed" and first["attempts"] == 1

    train(compose_config("train", run, command))  # the requeued job: same command, same directory
    done = results(run)
    assert done["resumed_from"] == str(run / "hpc_ckpt_1.ckpt")
    assert [int(r["epoch"]) for r in history(run)] == [0, 1]
    assert not list(run.glob("hpc_ckpt_*.ckpt"))  # removed once the fit completed
    assert done["attempts"] == 2
    assert done["total_wall_time_s"] == pytest.approx(first["wall_time_s"] + done["wall_time_s"])


def test_a_submitit_requeue_is_interrupted_and_attempts_add_up(tmp_path):
    """submitit requeues a job on SLURM's time-limit signal, then exits -1: the run is waiting
    for its next attempt (`interrupted`, not `failed`); the next attempt counts as the second."""
    run = tmp_path / "run"
    with pytest.raises(SystemExit) as info:
        train(compose_config("train", run, [*FAST, *fault("SubmititRequeueAt", epoch=1, batch=3)]))
    assert info.value.code == -1  # what submitit needs to see
    first = results(run)
    assert first["status"] == "interrupted" and first["attempts"] == 1, first["error"]
    assert "SLURM" in first["error"]["message"]
    assert (run / "checkpoints" / "interrupted.ckpt").is_file()

    train(compose_config("train", run, FAST))  # the requeued job: same command, same directory
    done = results(run)
    assert done["status"] == "completed" and done["attempts"] == 2
    assert done["total_wall_time_s"] == pytest.approx(first["wall_time_s"] + done["wall_time_s"])


def test_sweep_job_directories_survive_the_launcher_copying_the_config(tmp_path):
    """Submitit (SLURM sweeps, and their requeue) rebuilds the config in another process and copies
    the resolver cache; the random run token must come from that cache, not be drawn again."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from expkit.utils.resolvers import _run_token
    from helpers import CONFIG_DIR

    GlobalHydra.instance().clear()
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", return_hydra_config=True)
    first = str(cfg.hydra.sweep.dir)
    _run_token.cache_clear()  # what a fresh process would have
    copy = pickle.loads(pickle.dumps(cfg))
    fresh = OmegaConf.create(OmegaConf.to_container(cfg))
    OmegaConf.copy_cache(from_config=copy, to_config=fresh)
    assert str(copy.hydra.sweep.dir) == first
    assert str(fresh.hydra.sweep.dir) == first
