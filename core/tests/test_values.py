"""One line for every bad value and every full disk (core/expkit/run/value_checks.py, core/expkit/utils/atomic.py).

Each value that the template hands to a library is checked for type and range before anything is
built; the classes below are tested through `train(cfg)` as `python src/train.py` runs it (and once
through the command line, `slow`). Full disks are a real 1.5 MB tmpfs (`small_disk`).
"""

import json
import subprocess
from pathlib import Path

import pytest

from expkit.errors import ConfigError, DatasetNotFoundError, DiskFullError
from expkit.run.value_checks import CHECKS, check_values
from expkit.sweeps import summary as sweep_summary
from helpers import FAST, compose_config, config_options, run_cli
from src.train import train
from test_faults import assert_nothing_trained
from test_own_data import write_images

#: (overrides, the text of what is allowed) for values of the wrong type or out of range
BAD = {
    # the issue's own
    "float-epochs": (["trainer.max_epochs=1.5"], "a whole number > 0"),
    "huge-float-batch": (["data.batch_size=1e9"], "a whole number > 0"),
    "nan-lr": (["optimizer.lr=nan"], "a finite number > 0"),
    "negative-seed": (["seed=-1"], "from 0 to 4294967295"),
    "seed-beyond-numpy": (["seed=1099511627776"], "from 0 to 4294967295"),
    # the same classes, other keys and values
    "seed-just-beyond": (["seed=4294967296"], "from 0 to 4294967295"),
    "float-seed": (["seed=1.5"], "a whole number"),
    "bool-seed": (["seed=true"], "a whole number"),
    "inf-lr": (["optimizer.lr=inf"], "a finite number > 0"),
    "text-lr": (["optimizer.lr=fast"], "a finite number > 0"),
    "negative-weight-decay": (["optimizer.weight_decay=-0.1"], ">= 0"),
    "momentum-above-one": (["optimizer=sgd", "optimizer.momentum=2"], "<= 1"),
    "betas-out-of-range": (["+optimizer.betas=[0.9,1.5]"], "two numbers"),
    "min-epochs-negative": (["trainer.min_epochs=-1"], ">= 0"),
    "max-steps-float": (["trainer.max_steps=10.5"], "a whole number > 0 (or -1)"),
    "accumulate-zero": (["trainer.accumulate_grad_batches=0"], "a whole number > 0"),
    "clip-nan": (["trainer.gradient_clip_val=nan"], "a finite number >= 0"),
    "limit-above-one": (["trainer.limit_val_batches=2.5"], "a fraction from 0.0 to 1"),
    "limit-negative": (["trainer.limit_train_batches=-3"], "a whole number >= 0"),
    "val-interval-zero": (["trainer.val_check_interval=0"], "in (0.0, 1.0]"),
    "val-every-float": (["trainer.check_val_every_n_epoch=0.5"], "a whole number > 0"),
    "precision-unknown": (["trainer.precision=8"], "one of Lightning's precisions"),
    "nodes-zero": (["+trainer.num_nodes=0"], "a whole number > 0"),
    "devices-float": (["trainer.devices=1.5"], "a count >= 1, -1 or 'auto'"),
    "workers-negative": (["data.num_workers=-1"], "from 0 to 1024"),
    "val-size-whole": (["data.val_size=1.0"], "a fraction from 0.0 to 1 (excluded)"),
    "batch-text": (["data.batch_size=big"], "a whole number > 0"),
    "batch-beyond-int32": (["data.batch_size=2147483648"], "at most 2147483647"),
    "step-size-zero": (["scheduler=step", "scheduler.step_size=0"], "a whole number > 0"),
    "gamma-inf": (["scheduler=step", "scheduler.gamma=inf"], "a finite number > 0"),
    "plateau-factor-one": (["scheduler=plateau", "scheduler.factor=1.0"], "< 1"),
    "patience-negative": (["callbacks.early_stopping.patience=-2"], ">= 0"),
}


@pytest.mark.parametrize("case", BAD)
def test_a_value_of_the_wrong_type_or_range_is_one_line_before_training(make_cfg, case):
    overrides, allowed = BAD[case]
    cfg = make_cfg("train", [*FAST, *overrides])
    with pytest.raises(ConfigError) as info:
        train(cfg)
    message = str(info.value)
    key = overrides[-1].lstrip("+").split("=")[0]
    assert message.startswith(f"{key}=") and " is not allowed: " in message, message
    assert allowed in message and "\n" not in message
    assert_nothing_trained(cfg.paths.output_dir, info.value)


@pytest.mark.parametrize("group", ["data", "optimizer", "scheduler", "trainer", "debug"])
def test_every_shipped_option_passes_the_checks(group, tmp_path):
    """The table refuses no value our own configs give (no false alarm)."""
    for option in config_options(group):
        if group == "trainer" and option in ("gpu", "mps", "ddp"):
            continue  # composed for machines this one may not be; the values are checked alike
        cfg = compose_config("train", tmp_path / option, [f"{group}={option}"])
        check_values(cfg)


def test_the_table_names_only_keys_our_configs_have(tmp_path):
    """A misspelled key in the table would check nothing: each is in some shipped config."""
    from omegaconf import OmegaConf

    seen: set[str] = set()
    for group in ("data", "optimizer", "scheduler", "trainer"):
        for option in config_options(group):
            cfg = compose_config("train", tmp_path / f"{group}-{option}", [f"{group}={option}"])
            for key in CHECKS:
                parent, _, leaf = key.rpartition(".")
                node = OmegaConf.select(cfg, parent) if parent else cfg
                if node is not None and leaf in node:
                    seen.add(key)
    optional = {"trainer.min_steps", "trainer.limit_predict_batches", "optimizer.betas",
                "optimizer.eps", "optimizer.dampening"}  # fmt: skip
    assert set(CHECKS) - seen <= optional, set(CHECKS) - seen - optional


@pytest.mark.slow
def test_the_command_line_prints_one_line_for_a_bad_value(tmp_path):
    proc = run_cli(["src/train.py", "seed=-1", f"paths.log_dir={tmp_path}"])
    assert proc.returncode == 1
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines[0].endswith("seed=-1 is not allowed: it must be a whole number from 0 to "
                             "4294967295, or null."), proc.stderr  # fmt: skip
    assert "Traceback" not in proc.stderr


# ---- a path that is a symlink loop -----------------------------------------------------------
@pytest.mark.parametrize(
    "data",
    [
        ["data=image_folder", "data.root={loop}"],
        ["data=csv", "data.path={loop}"],
        ["data=mnist", "paths.data_dir={loop}", "paths.shared_data_dirs=[]"],
    ],
)
def test_a_data_path_that_is_a_symlink_loop_is_one_line(make_cfg, tmp_path, data):
    loop = tmp_path / "loop"
    loop.symlink_to(tmp_path / "loop2")
    (tmp_path / "loop2").symlink_to(loop)
    cfg = make_cfg("train", [*FAST, *(o.format(loop=loop) for o in data)])
    with pytest.raises(DatasetNotFoundError) as info:
        train(cfg)
    assert "symlink loop" in str(info.value) and "\n" not in str(info.value)


# ---- full disks --------------------------------------------------------------------------------
def fill(disk: Path) -> None:
    """Leave the disk with no free byte."""
    subprocess.run(
        ["dd", "if=/dev/zero", f"of={disk / 'filler'}", "bs=64k"], capture_output=True, check=False
    )


def leftovers(disk: Path) -> list[str]:
    return sorted(str(p.relative_to(disk)) for p in disk.rglob("*") if ".tmp" in p.name)


def test_the_summary_command_on_a_full_disk_is_one_line(small_disk, capsys):
    sweep = small_disk / "sweep"
    for job in range(3):
        (sweep / str(job) / ".hydra").mkdir(parents=True)
        (sweep / str(job) / ".hydra" / "overrides.yaml").write_text(f"- seed={job}\n")
        payload = {"status": "completed", "metrics": {"val/acc_best": 0.5 + job / 10}}
        (sweep / str(job) / "results.json").write_text(json.dumps(payload))
    fill(small_disk)
    with pytest.raises(SystemExit) as info:
        sweep_summary.main([str(sweep), "--metric", "val/acc_best"])
    assert info.value.code == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and "No space left on device while writing" in err[0], err
    assert str(sweep / "summary") in err[0]
    assert leftovers(small_disk) == [] and not (sweep / "summary.csv").exists()
    (small_disk / "filler").unlink()  # with room again, the same command writes it
    assert sweep_summary.main([str(sweep), "--metric", "val/acc_best"]) == 0
    assert (sweep / "summary.csv").is_file() and (sweep / "summary.md").is_file()


def test_the_image_cache_on_a_full_disk_is_one_line_naming_it(make_cfg, small_disk, tmp_path):
    root = write_images(tmp_path / "imgs", per_class=20, size=(32, 32))
    fill(small_disk)
    cfg = make_cfg(
        "train",
        [*FAST, "data=image_folder", f"data.root={root}", "data.num_classes=3",
         "data.input_shape=[3,32,32]", f"data.cache_dir={small_disk / 'cache'}"],
    )  # fmt: skip
    with pytest.raises(DiskFullError) as info:
        train(cfg)
    message = str(info.value)
    assert "No space left on device while writing" in message and str(small_disk) in message
    assert "\n" not in message and leftovers(small_disk) == []
    assert not list((small_disk / "cache").glob("*.npy"))


def test_the_data_cache_on_a_full_disk_is_skipped_with_one_warning(make_cfg, small_disk, caplog):
    """torch.save reports a full disk as RuntimeError: the cache (an optimization) is skipped with
    a warning naming its file, the run trains without it, nothing half-written is left."""
    from expkit.data.digits import DigitsDataModule

    fill(small_disk)
    dm = DigitsDataModule(
        num_classes=10, input_shape=[1, 8, 8], cache_dir=str(small_disk / "cache")
    )
    dm.prepare_data()
    dm.setup("fit")
    assert len(dm.splits["train"][1]) > 0
    warnings = [r.getMessage() for r in caplog.records if "Could not write" in r.getMessage()]
    assert warnings and "No space left on device" in warnings[0], warnings
    assert str(small_disk / "cache") in warnings[0]
    assert leftovers(small_disk) == [] and not list((small_disk / "cache").glob("*.pt"))
