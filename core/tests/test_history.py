"""history.csv / curves.png hold every validation, mid-epoch ones included, and survive a resume."""

import csv
from pathlib import Path

from helpers import FAST, PLOT
from src.train import train

HALF = [*FAST, "trainer.val_check_interval=0.5", "trainer.limit_train_batches=6"]
HALF_PLOTTED = [*HALF, PLOT]


def _rows(run_dir: Path) -> list[dict[str, str]]:
    return list(csv.DictReader((run_dir / "history.csv").open()))


def test_every_validation_is_a_row(make_cfg):
    cfg = make_cfg("train", [*HALF_PLOTTED, "trainer.max_epochs=2"])
    train(cfg)
    out = Path(cfg.paths.output_dir)
    rows = _rows(out)
    # two validations per epoch: after 3 and after 6 of the 6 batches
    assert [(int(r["epoch"]), int(r["step"])) for r in rows] == [(0, 3), (0, 6), (1, 9), (1, 12)]
    assert [float(r["progress"]) for r in rows] == [0.5, 1.0, 1.5, 2.0]
    assert all(r["val/acc"] and r["val/loss"] for r in rows)
    # train metrics exist only at an epoch's end; a mid-epoch row must not repeat stale ones
    assert [bool(r["train/loss"]) for r in rows] == [False, True, False, True]
    assert [bool(r["epoch_time_s"]) for r in rows] == [False, True, False, True]
    assert (out / "curves.png").stat().st_size > 1000


def test_mid_epoch_rows_survive_a_resume(make_cfg):
    first = make_cfg("train", [*HALF, "trainer.max_epochs=1"])
    train(first)
    last = Path(first.paths.output_dir) / "checkpoints" / "last.ckpt"
    second = make_cfg("train", [*HALF, "trainer.max_epochs=2", f"ckpt_path={last}"])
    train(second)
    rows = _rows(Path(second.paths.output_dir))
    assert [float(r["progress"]) for r in rows] == [0.5, 1.0, 1.5, 2.0]
