"""Runs written before the library move keep working: the alias table maps their stored targets.

`tests/data/run-before-expkit` was trained at commit 58b133c (the last one before the machinery moved
from `src/` into `expkit`) with `python src/train.py data=csv data.path=sklearn:wine
trainer.max_epochs=6 model.net.hidden_sizes=[32] tags=[compat]`; its checkpoints store
`src.data.table.TableDataModule`, which is now `expkit.data.table.TableDataModule`, and paths of
the machine it was trained on.
"""

import json
import shutil
from pathlib import Path

import pytest

from src.eval import evaluate
from src.export import export
from src.predict import predict
from tests.helpers import compose_config, results, run_cli

OLD_RUN = Path(__file__).parent / "data" / "run-before-expkit"


@pytest.fixture
def old_run(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    shutil.copytree(OLD_RUN, run)
    return run


def recorded(run: Path, key: str) -> float:
    return json.loads((run / "results.json").read_text())["metrics"][key]


def test_a_checkpoint_from_before_the_move_evaluates_to_the_same_float(old_run, tmp_path):
    ckpt = old_run / "checkpoints" / "epoch_005.ckpt"
    metrics = evaluate(compose_config("eval", tmp_path / "eval", [f"ckpt_path={ckpt}"]))
    assert metrics["test/acc"] == recorded(old_run, "test/acc")


def test_a_checkpoint_from_before_the_move_predicts_and_exports(old_run, tmp_path):
    ckpt = old_run / "checkpoints" / "last.ckpt"
    predicted = predict(compose_config("predict", tmp_path / "predict", [f"ckpt_path={ckpt}"]))
    assert predicted["predict/acc"] == recorded(old_run, "test/acc")  # last = best (epoch 5)
    export(compose_config("export", tmp_path / "export", [f"ckpt_path={ckpt}"]))
    assert (tmp_path / "export" / "model.onnx").is_file()


@pytest.mark.slow
def test_a_run_from_before_the_move_resumes_and_completes(old_run):
    proc = run_cli(["src/train.py", f"resume={old_run}", "trainer.max_epochs=8"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    after = results(old_run)
    assert after["status"] == "completed" and after["attempts"] == 2
    assert after["library"]["name"] == "expkit"
    assert sorted(p.name for p in (old_run / "checkpoints").glob("*.ckpt"))[-1] == "last.ckpt"


def test_an_old_name_is_only_an_alias_of_a_trusted_current_one(tmp_path):
    """A stored name the alias table does not list stays refused, however close to a real one."""
    from omegaconf import OmegaConf

    from expkit.checkpoints.target_policy import check_targets
    from expkit.errors import UntrustedTargetError

    aliased = OmegaConf.create({"data": {"_target_": "src.data.table.TableDataModule"}})
    check_targets(aliased, "ckpt_path=x")
    assert aliased.data._target_ == "expkit.data.table.TableDataModule"
    for foreign in (
        "src.data.table.shutil",
        "src.utils.atomic.atomic_write_text",
        "src.data.table",
    ):
        with pytest.raises(UntrustedTargetError, match="not a target"):
            check_targets(OmegaConf.create({"data": {"_target_": foreign}}), "ckpt_path=x")
