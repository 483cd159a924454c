"""Logger runs continue across `resume=<run_dir>` and SLURM requeues: one CSV and one TensorBoard
history per run directory, the same MLflow run, the same W&B run id (offline).

Each logger's test trains digits in-process until a crash at the start of epoch 2 (the fault
injection of core/tests/fault_injection.py), then continues to `max_epochs=3`, either as
`resume=<run_dir>` or as a requeue does it (the same directory and overrides, no `resume=`), and
reads the history back through the tracker's own reader (csv, TensorBoard's EventAccumulator,
MlflowClient, the W&B offline file). Further cases: a resume from a checkpoint older than the logs
(the replayed epoch appears once), a kill -9 before the first checkpoint (the id file is whole),
and a second resume refused by the run-directory lock (it writes no id). Two trainings each, 9-15 s
on a 2-core machine: `slow`.
"""

import csv
import json
import signal
import struct
import warnings
from pathlib import Path

import pytest

from expkit.errors import RunDirLockedError
from expkit.loggers.run_ids import RUN_IDS_FILE, stored_id, stored_ids
from helpers import FAST, compose_config, fault, results, run_cli
from src.train import train
from test_trust import hold_lock

#: in-process runs: short, quiet, no plot; the logger is chosen per test
QUICK = [o for o in FAST if not o.startswith("logger=")] + [
    "callbacks.history.plot=false",
    "callbacks.model_summary=null",
]
CRASH_AT_EPOCH_2 = fault("RaiseAt", epoch=2, batch=0)


def crash_then_continue(run: Path, logger: str, how: str, extra: tuple[str, ...] = ()) -> None:
    """Train until the crash at epoch 2 (epochs 0 and 1 done), then continue to max_epochs=3."""
    first = [*QUICK, f"logger={logger}", "trainer.max_epochs=3", *extra]
    with pytest.raises(RuntimeError, match="injected failure at epoch 2"):
        train(compose_config("train", run, [*first, *CRASH_AT_EPOCH_2]))
    assert results(run)["status"] == "failed"
    again = [*QUICK, f"logger={logger}", "trainer.max_epochs=3", *extra]
    if how == "resume":
        again.append(f"resume={run}")
    train(compose_config("train", run, again))  # requeue: same directory, same overrides
    assert results(run)["status"] == "completed" and results(run)["resumed_from"]


def csv_rows(run: Path) -> list[dict[str, str]]:
    with (run / "csv" / "metrics.csv").open() as f:
        return list(csv.DictReader(f))


def val_epochs(rows: list[dict[str, str]]) -> list[int]:
    return [int(r["epoch"]) for r in rows if r.get("val/acc")]


# ---- CSV -------------------------------------------------------------------------------------
@pytest.mark.slow
def test_csv_history_continues_across_resume(tmp_path):
    run = tmp_path / "run"
    first = [*QUICK, "logger=csv", "trainer.max_epochs=3"]
    with pytest.raises(RuntimeError, match="injected failure"):
        train(compose_config("train", run, [*first, *CRASH_AT_EPOCH_2]))
    before = csv_rows(run)
    assert val_epochs(before) == [0, 1]
    with (run / "csv" / "metrics.csv").open("a") as f:  # a line a kill -9 cut short
        f.write("1,,4")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train(compose_config("train", run, [*first, f"resume={run}"]))
    assert not [w for w in caught if "Previous log files" in str(w.message)]
    after = csv_rows(run)
    assert val_epochs(after) == [0, 1, 2]  # epoch 0..N, the first two once
    assert after[: len(before)] == [
        {**r, **dict.fromkeys(set(after[0]) - set(r), "")} for r in before
    ]
    assert any(r.get("test/acc") for r in after)
    steps = [int(r["step"]) for r in after if r.get("val/acc")]
    assert steps == sorted(set(steps))
    # the learning rate of epoch 2 was logged at its start, before the crash: kept, not repeated
    lr_steps = [int(r["step"]) for r in after if r.get("lr-Adam")]
    assert len(lr_steps) == 3 and lr_steps == sorted(set(lr_steps))


@pytest.mark.slow
def test_lightnings_own_csv_logger_loses_the_history_on_resume(tmp_path):
    """Why ContinuedCSVLogger exists (and the alarm for when Lightning changes): the stock
    CSVLogger deletes metrics.csv when a resumed process opens it."""
    stock = ["logger.csv._target_=pytorch_lightning.loggers.CSVLogger"]
    stock.append("trusted_targets=[pytorch_lightning.loggers.CSVLogger]")
    run = tmp_path / "run"
    first = [*QUICK, "logger=csv", "trainer.max_epochs=3", *stock]
    with pytest.raises(RuntimeError, match="injected failure"):
        train(compose_config("train", run, [*first, *CRASH_AT_EPOCH_2]))
    assert val_epochs(csv_rows(run)) == [0, 1]
    with pytest.warns(UserWarning, match="Previous log files in this directory will be deleted"):
        train(compose_config("train", run, [*first, f"resume={run}"]))
    assert val_epochs(csv_rows(run)) == [2]  # epochs 0 and 1 are gone


# ---- TensorBoard -----------------------------------------------------------------------------
def tensorboard_scalars(run: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0})
    events.Reload()
    return {
        tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]
    }


@pytest.mark.slow
def test_tensorboard_history_continues_across_a_requeue(tmp_path):
    run = tmp_path / "run"
    crash_then_continue(run, "tensorboard", how="requeue")
    assert not [p for p in (run / "tensorboard").iterdir() if p.is_dir()]  # one log dir
    assert len(list((run / "tensorboard").glob("events.out.tfevents.*"))) >= 2  # two processes
    scalars = tensorboard_scalars(run)
    val = [step for step, _ in scalars["val/acc"]]
    assert len(val) == 3 and val == sorted(set(val))  # every epoch, once each
    lr = [step for step, _ in scalars["lr-Adam"]]  # epoch 2's, logged before the crash, kept
    assert len(lr) == 3 and lr == sorted(set(lr))
    history = [float(r["val/acc"]) for r in csv_rows_of_history(run)]
    assert [value for _, value in scalars["val/acc"]] == pytest.approx(history)


def csv_rows_of_history(run: Path) -> list[dict[str, str]]:
    with (run / "history.csv").open() as f:
        return list(csv.DictReader(f))


# ---- a checkpoint older than the logs: the replayed epoch appears once ----------------------
@pytest.mark.slow
def test_a_resume_from_an_older_checkpoint_keeps_each_epoch_once(tmp_path):
    """The newest checkpoint lost (say it did not load): the run continues from epoch 1's, and
    what the loggers had of epoch 2 is replaced by the epoch trained again."""
    run = tmp_path / "run"
    both = [*QUICK, "logger=[csv,tensorboard]"]
    train(compose_config("train", run, [*both, "trainer.max_epochs=2"]))
    epoch_1 = (run / "checkpoints" / "last.ckpt").read_bytes()
    train(compose_config("train", run, [*both, "trainer.max_epochs=3", f"resume={run}"]))
    assert val_epochs(csv_rows(run)) == [0, 1, 2]
    (run / "checkpoints" / "last.ckpt").write_bytes(epoch_1)  # now the newest checkpoint
    train(compose_config("train", run, [*both, "trainer.max_epochs=3", f"resume={run}"]))
    assert results(run)["resumed_from"].endswith("last.ckpt")
    rows = csv_rows(run)
    assert val_epochs(rows) == [0, 1, 2]
    assert len([r for r in rows if r.get("test/acc")]) == 1  # the old test row was after step G
    scalars = tensorboard_scalars(run)
    for tag in ("val/acc", "lr-Adam"):  # lr: logged at each epoch's start, epoch 2's twice here
        steps = [step for step, _ in scalars[tag]]
        assert len(steps) == 3 and steps == sorted(set(steps)), (tag, steps)
    lr_steps = [int(r["step"]) for r in rows if r.get("lr-Adam")]
    assert len(lr_steps) == 3 and lr_steps == sorted(set(lr_steps))


# ---- MLflow ----------------------------------------------------------------------------------
@pytest.mark.slow
def test_mlflow_run_continues_with_the_same_run_id(tmp_path, caplog):
    from mlflow.tracking import MlflowClient

    run = tmp_path / "run"
    first = [*QUICK, "logger=mlflow", "trainer.max_epochs=3"]
    with pytest.raises(RuntimeError, match="injected failure"):
        train(compose_config("train", run, [*first, *CRASH_AT_EPOCH_2]))
    run_id = stored_ids(run)["mlflow"]["run_id"]
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}")
    assert client.get_run(run_id).info.status == "FAILED"
    # resumed with a longer schedule, as the README shows: MLflow keeps the first max_epochs
    with caplog.at_level("WARNING"):
        train(compose_config("train", run, [*first, "trainer.max_epochs=4", f"resume={run}"]))
    assert stored_ids(run)["mlflow"]["run_id"] == run_id
    assert "trainer.max_epochs stay 3" in caplog.text
    (experiment,) = [e for e in client.search_experiments() if e.name == "train"]
    (only,) = client.search_runs([experiment.experiment_id])
    assert only.info.run_id == run_id and only.info.status == "FINISHED"
    history = client.get_metric_history(run_id, "val/acc")
    steps = [m.step for m in sorted(history, key=lambda m: m.step)]
    assert len(steps) == 4 and steps == sorted(set(steps))  # epochs 0..3, once each
    assert only.data.params["trainer.max_epochs"] == "3"
    assert "test/acc" in only.data.metrics


# ---- W&B (offline) ---------------------------------------------------------------------------
def wandb_records(path: Path):
    """The protobuf records of a W&B offline file (`run-<id>.wandb`, LevelDB's log format)."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B", data[:7]
    pos, block, pending = 7, 32768, b""
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:  # a block's tail too short for a header is padding
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if length == 0 and kind == 0:
            pos += left
            continue
        chunk, pos = data[pos + 7 : pos + 7 + length], pos + 7 + length
        pending = chunk if kind in (1, 2) else pending + chunk  # FULL/FIRST start a record
        if kind in (1, 4):  # FULL/LAST end one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            yield record


def wandb_history(path: Path) -> tuple[set[str], list[int]]:
    """The run ids and the `trainer/global_step` of each val/acc in one offline file."""
    ids, steps = set(), []
    for record in wandb_records(path):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            ids.add(record.run.run_id)
        elif kind == "history":
            items = {
                i.key or "/".join(i.nested_key): json.loads(i.value_json)
                for i in record.history.item
            }
            if "val/acc" in items:
                steps.append(int(items["trainer/global_step"]))
    return ids, steps


@pytest.mark.slow
def test_wandb_offline_run_continues_with_the_same_id(tmp_path):
    import wandb

    run = tmp_path / "run"
    try:
        crash_then_continue(run, "wandb", how="resume")
    finally:
        wandb.finish()
        wandb.teardown()  # W&B's service process writes the offline files; this waits for it
    run_id = stored_ids(run)["wandb"]["id"]
    offline = sorted((run / "wandb").glob("offline-run-*"))
    assert len(offline) == 2 and all(d.name.endswith(f"-{run_id}") for d in offline)
    histories = [wandb_history(d / f"run-{run_id}.wandb") for d in offline]
    assert [ids for ids, _ in histories] == [{run_id}, {run_id}]
    first, second = (steps for _, steps in histories)
    assert len(first) == 2 and len(second) == 1 and max(first) < min(second)  # epochs 0, 1 | 2


# ---- faults around the id file ---------------------------------------------------------------
@pytest.mark.slow  # two runs, MLflow and W&B imported (~2-4 s)
def test_a_resume_refused_by_the_lock_writes_no_logger_id(tmp_path):
    run = tmp_path / "run"
    train(compose_config("train", run, [*QUICK, "logger=[csv,mlflow]", "trainer.max_epochs=1"]))
    ids = (run / RUN_IDS_FILE).read_bytes()
    holder = hold_lock(run)  # another process is writing this run (a requeue, a double submit)
    try:
        again = [*QUICK, "logger=[csv,mlflow,wandb]", "trainer.max_epochs=2", f"resume={run}"]
        with pytest.raises(RunDirLockedError):
            train(compose_config("train", run, again))
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert (run / RUN_IDS_FILE).read_bytes() == ids  # no W&B id added, MLflow's untouched
    assert not (run / "wandb").exists()


def test_an_unreadable_id_file_starts_new_tracker_runs(tmp_path, caplog):
    run = tmp_path / "run"
    run.mkdir()
    (run / RUN_IDS_FILE).write_text('{"mlflow": {"run_id": "abc"')  # cut short by hand
    with caplog.at_level("WARNING"):
        assert stored_ids(run) == {}
    assert "unreadable" in caplog.text
    # a crafted value is not passed to a tracker as a run id
    (run / RUN_IDS_FILE).write_text('{"wandb": {"id": "../../x"}, "mlflow": {"run_id": 7}}')
    assert stored_id(run, "wandb", "id") is None and stored_id(run, "mlflow", "run_id") is None
    assert "is not a run id: ignored" in caplog.text


@pytest.mark.slow
def test_kill_9_before_the_first_checkpoint_then_resume(tmp_path):
    """SIGKILL at the first batch: no checkpoint yet, but the MLflow and W&B ids are stored whole,
    and the resumed run (from scratch) logs into those same tracker runs."""
    command = [
        "src/train.py",
        "logger=many",
        "trainer.max_epochs=2",
        "extras.print_config=false",
        "callbacks.rich_progress_bar=null",
        "callbacks.history.plot=false",
        f"paths.log_dir={tmp_path}",
        *fault("SignalAt", name="KILL", epoch=0, batch=0),
    ]
    killed = run_cli(command)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    (run,) = (tmp_path / "train" / "runs").iterdir()
    assert not list(run.glob("checkpoints/*.ckpt"))
    ids = json.loads((run / RUN_IDS_FILE).read_text())  # whole: it parses
    assert set(ids) == {"mlflow", "wandb"}
    assert not [p for p in run.iterdir() if p.name.startswith(f".{RUN_IDS_FILE}")]  # no temp left
    # without the fault, which the run directory (its overrides) would otherwise bring back
    # paths.log_dir typed again: a run directory's overrides never set a place (docs/faults.md T4)
    resumed = run_cli(
        ["src/train.py", f"resume={run}", "~callbacks.fault", f"paths.log_dir={tmp_path}"]
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert json.loads((run / RUN_IDS_FILE).read_text()) == ids
    assert val_epochs(csv_rows(run)) == [0, 1]
    offline = sorted((run / "wandb").glob("offline-run-*"))
    assert offline and all(d.name.endswith(f"-{ids['wandb']['id']}") for d in offline)
