"""k-fold cross-validation (`cv.folds=k`): the folds, the fold runs, the summary, resume, failures.

Fast tests run in-process on the bundled digits with one epoch; the command-line ones (kill -9 and
resume, DDP, Optuna) are marked slow.
"""

import json
import signal
import statistics
import subprocess
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
import torch
from hydra.utils import instantiate

from expkit.cv.runner import FoldsFailedError
from expkit.errors import ConfigError
from expkit.sweeps.summary import write_summary
from helpers import FAST, PLOT, ROOT, compose_config, fault, results, run_cli, threads_for_tests
from src.train import train

ONE_EPOCH = [*FAST, "trainer.max_epochs=1"]


# ---- the folds themselves ------------------------------------------------------------------------
def datamodule(make_cfg, overrides: list[str]):
    dm = instantiate(make_cfg("train", overrides).data, _convert_="all")
    dm.setup("fit")
    return dm


def rows(split) -> Counter:
    """A split as a multiset of (sample bytes, target): comparable whatever the order."""
    x, y = split
    return Counter(
        (xi.numpy().tobytes(), float(yi)) for xi, yi in zip(x.float(), y.float(), strict=True)
    )


@pytest.mark.parametrize(
    ("data", "folds"),
    [(["data=digits"], 5), (["experiment=diabetes_regression"], 4), (["data=csv"], 3)],
    ids=["digits-stratified", "table-regression-kfold", "table-classes-stratified"],
)
def test_folds_partition_the_training_split_and_leave_test_alone(make_cfg, data, folds):
    plain = datamodule(make_cfg, data)
    pool = rows(plain.splits["train"]) + rows(plain.splits["val"])
    covered: Counter = Counter()
    sizes = []
    for k in range(folds):
        dm = datamodule(make_cfg, [*data, f"cv.folds={folds}", f"cv.fold={k}"])
        train_rows, val_rows = rows(dm.splits["train"]), rows(dm.splits["val"])
        assert train_rows + val_rows == pool  # every non-test sample, train and val disjoint
        covered += val_rows
        sizes.append(len(dm.splits["val"][1]))
        # the test split is exactly the one a plain run tests on
        test, plain_test = dm.splits["test"], plain.splits["test"]
        assert all(torch.equal(a, b) for a, b in zip(test, plain_test, strict=True))
    assert covered == pool  # each sample validates in exactly one fold
    assert max(sizes) - min(sizes) <= 1


@pytest.mark.parametrize("layout", ["one-folder", "split-folders"])
def test_image_folder_folds_use_train_and_val_images_and_keep_test(tmp_path, layout):
    from test_own_data import image_dm, write_images

    root = tmp_path / "imgs"
    if layout == "one-folder":
        write_images(root, per_class=10)
    else:
        for split, n in (("train", 8), ("val", 2), ("test", 3)):
            write_images(root / split, per_class=n)
    plain = image_dm(root, tmp_path / "cache")
    pool = rows(plain.splits["train"]) + rows(plain.splits["val"])
    covered: Counter = Counter()
    for k in range(3):
        dm = image_dm(root, tmp_path / "cache", fold=k, folds=3, fold_seed=5)
        assert "val" in dm.splits and rows(dm.splits["train"]) + rows(dm.splits["val"]) == pool
        test, plain_test = dm.splits["test"], plain.splits["test"]
        assert all(torch.equal(a, b) for a, b in zip(test, plain_test, strict=True))
        covered += rows(dm.splits["val"])
    assert covered == pool


def test_folds_are_stratified_and_fixed_by_the_seed(make_cfg):
    def val_targets(seed: int) -> list[list[int]]:
        return [
            datamodule(make_cfg, ["cv.folds=5", f"cv.fold={k}", f"cv.seed={seed}"])
            .splits["val"][1]
            .tolist()
            for k in range(5)
        ]

    folds = val_targets(7)
    for label in range(10):  # each class's count differs by at most one between folds
        counts = [fold.count(label) for fold in folds]
        assert max(counts) - min(counts) <= 1, (label, counts)
    assert val_targets(7) == folds  # the same seed: the same folds
    first = datamodule(make_cfg, ["cv.folds=5", "cv.fold=0", "cv.seed=7"]).splits["val"][0]
    other = datamodule(make_cfg, ["cv.folds=5", "cv.fold=0", "cv.seed=8"]).splits["val"][0]
    assert not torch.equal(first, other)  # another seed: other folds
    follows = datamodule(make_cfg, ["cv.folds=5", "cv.fold=0", "seed=7"]).splits["val"][0]
    assert torch.equal(first, follows)  # cv.seed follows seed


def test_folds_do_not_depend_on_val_size(make_cfg):
    a = datamodule(make_cfg, ["cv.folds=3", "cv.fold=1", "data.val_size=0.1"]).splits["val"]
    b = datamodule(make_cfg, ["cv.folds=3", "cv.fold=1", "data.val_size=0.3"]).splits["val"]
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


# ---- a cross-validation run ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def cv_run(tmp_path_factory, cache_dir):
    """`cv.folds=3` on digits, one epoch per fold, shared by the tests that only read it."""
    out = tmp_path_factory.mktemp("cv") / "run"
    cfg = compose_config("train", out, [*ONE_EPOCH, PLOT, "cv.folds=3"], cache_dir)
    threads = torch.get_num_threads()
    torch.set_num_threads(threads_for_tests(threads))  # as every test runs: the same numbers
    try:
        yield out, train(cfg)
    finally:
        torch.set_num_threads(threads)


def test_each_fold_is_a_complete_run(cv_run):
    out, _ = cv_run
    for k in range(3):
        fold = out / f"fold_{k}"
        record = results(fold)
        assert record["status"] == "completed"
        assert record["cv"] == {"fold": k, "folds": 3, "seed": 42}
        assert Path(record["best_model_path"]).parent == fold / "checkpoints"
        assert (fold / "checkpoints" / "last.ckpt").is_file()
        for name in ("config.yaml", "history.csv", "curves.png", "train.log"):
            assert (fold / name).is_file(), name
        assert "Cross-validation" not in (fold / "train.log").read_text()  # the fold's own log
        stored = torch.load(fold / "checkpoints" / "last.ckpt", weights_only=True)["run_config"]
        assert (stored["data"]["fold"], stored["data"]["folds"]) == (k, 3)


def test_a_fold_checkpoint_evaluates_to_its_test_metrics(cv_run, make_cfg):
    from src.eval import evaluate

    out, _ = cv_run
    fold = results(out / "fold_2")
    cfg = make_cfg("eval", [f"ckpt_path={fold['best_model_path']}", "extras.print_config=false"])
    assert evaluate(cfg)["test/acc"] == fold["metrics"]["test/acc"]


def test_summary_and_results_hold_the_mean_and_std_of_the_folds(cv_run):
    out, metrics = cv_run
    folds = [results(out / f"fold_{k}")["metrics"] for k in range(3)]
    parent = results(out)
    table = pd.read_csv(out / "cv_summary.csv", dtype={"fold": str}).set_index("fold")
    markdown = (out / "cv_summary.md").read_text()
    assert {"val/acc_best", "test/acc", "test/loss"} <= set(parent["metrics"])
    for name, mean in parent["metrics"].items():
        values = [f[name] for f in folds]
        assert mean == pytest.approx(statistics.fmean(values), abs=1e-12)
        assert parent["cv"]["std"][name] == pytest.approx(statistics.stdev(values), abs=1e-12)
        assert metrics[name] == mean  # what train returns: the sweeper optimizes the mean
        assert table.loc["mean", name] == pytest.approx(mean, abs=1e-12)
        assert table.loc["std", name] == pytest.approx(parent["cv"]["std"][name], abs=1e-12)
        assert list(table.loc[["0", "1", "2"], name]) == pytest.approx(values, abs=1e-12)
        assert f"| {name} | {mean:.4f} ± {statistics.stdev(values):.4f} |" in markdown
    assert parent["status"] == "completed" and parent["cv"]["completed"] == 3
    assert parent["cv"]["fold_status"] == {f"fold_{k}": "completed" for k in range(3)}


def test_one_fold_alone_matches_the_same_fold_of_the_whole_run(cv_run, make_cfg):
    """`cv.fold=1` (how a launcher runs folds in parallel) writes that fold into its own run."""
    out, _ = cv_run
    cfg = make_cfg("train", [*ONE_EPOCH, "cv.folds=3", "cv.fold=1"])
    metrics = train(cfg)
    assert metrics == results(out / "fold_1")["metrics"]
    assert results(cfg.paths.output_dir)["cv"] == {"fold": 1, "folds": 3, "seed": 42}
    assert not (Path(cfg.paths.output_dir) / "fold_1").exists()


def test_rerun_finishes_only_the_folds_not_done(tmp_path, cache_dir):
    """A re-run in the same directory (what `resume=` does) reads completed folds back."""
    out = tmp_path / "run"
    cfg = compose_config("train", out, [*ONE_EPOCH, "cv.folds=3"], cache_dir)
    first = train(cfg)
    record = json.loads((out / "fold_1" / "results.json").read_text())
    record["status"] = "interrupted"  # as a SIGTERM leaves it
    (out / "fold_1" / "results.json").write_text(json.dumps(record))
    kept = {p: p.stat().st_mtime_ns for k in (0, 2) for p in (out / f"fold_{k}").rglob("*")}
    again = train(compose_config("train", out, [*ONE_EPOCH, "cv.folds=3"], cache_dir))
    assert again == first
    assert {p: p.stat().st_mtime_ns for p in kept} == kept  # folds 0 and 2 untouched
    assert results(out / "fold_1")["status"] == "completed"
    assert results(out / "fold_1")["resumed_from"].endswith("last.ckpt")


def test_a_rerun_with_other_folds_or_seed_is_refused(cv_run, cache_dir):
    """Completed folds of one split are never averaged with folds of another."""
    out, _ = cv_run

    def files() -> dict[Path, int]:  # the lock file records its holders; the run is the rest
        return {
            p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and p.name != ".lock"
        }

    before = files()
    for changed, shown in (
        ("cv.folds=2", "cv.folds=2 cv.seed=42, but"),
        ("cv.seed=1", "cv.seed=1"),
    ):
        cfg = compose_config("train", out, [*ONE_EPOCH, "cv.folds=3", changed], cache_dir)
        with pytest.raises(ConfigError, match="is a fold of cv.folds=3 cv.seed=42") as info:
            train(cfg)
        assert shown in str(info.value)
    assert files() == before  # rejected before training: the run is left as it was


@pytest.mark.slow  # several folds trained (~3 s): the fast suite keeps the core CV tests
def test_a_crafted_fold_results_file_is_run_again_not_trusted(tmp_path, cache_dir):
    out = tmp_path / "run"
    first = train(compose_config("train", out, [*ONE_EPOCH, "cv.folds=2"], cache_dir))
    (out / "fold_0" / "results.json").write_text('{"status": "completed", "metrics": "x"}')
    again = train(compose_config("train", out, [*ONE_EPOCH, "cv.folds=2"], cache_dir))
    assert (
        again == first and results(out / "fold_0")["metrics"] == results(out / "fold_0")["metrics"]
    )


def test_a_failed_fold_is_recorded_and_the_others_still_run(make_cfg):
    cfg = make_cfg("train", [*ONE_EPOCH, "cv.folds=3", *fault("RaiseAt", epoch=0, fold=1)])
    with pytest.raises(FoldsFailedError, match="1 of 3 folds did not complete") as info:
        train(cfg)
    out = Path(cfg.paths.output_dir)
    assert "fold 1 failed: RuntimeError: injected failure" in str(info.value)
    assert "\n" not in str(info.value)
    assert results(out / "fold_1")["status"] == "failed"
    assert [results(out / f"fold_{k}")["status"] for k in (0, 2)] == ["completed"] * 2
    parent = results(out)
    assert parent["status"] == "failed" and parent["cv"]["completed"] == 2
    assert parent["cv"]["fold_status"]["fold_1"] == "failed"
    done = [results(out / f"fold_{k}")["metrics"]["test/acc"] for k in (0, 2)]
    assert parent["metrics"]["test/acc"] == pytest.approx(statistics.fmean(done))
    markdown = (out / "cv_summary.md").read_text()
    assert "2 of 3 completed" in markdown and "fold 1 (failed): RuntimeError" in markdown


@pytest.mark.slow  # several folds trained (~3 s): the fast suite keeps the core CV tests
def test_a_full_disk_stops_the_folds_in_one_line_and_resume_finishes(small_disk, cache_dir):
    """A checkpoint is ~300 KB: fold 0 fits, fold 1 does not. The folds stop there (any later
    fold would fail the same way) with the fold's own message; freed, resume finishes."""
    from expkit.errors import DiskFullError

    filler = small_disk / "filler"
    filler.write_bytes(b"\0" * 400_000)
    out = small_disk / "run"
    overrides = [*ONE_EPOCH, "trainer.max_epochs=2", "cv.folds=3", "~callbacks.history"]
    with pytest.raises(DiskFullError, match="No space left on device while writing") as info:
        train(compose_config("train", out, overrides, cache_dir))
    assert "/fold_1/checkpoints/" in str(info.value)  # the fold's file, not the run's
    assert results(out / "fold_0")["status"] == "completed"
    assert results(out / "fold_1")["error"]["type"] == "DiskFullError"
    assert not (out / "fold_2").exists()  # stopped: the next fold never started
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]
    filler.unlink()  # and a larger disk: three folds' checkpoints need ~2 MB
    subprocess.run(["mount", "-o", "remount,size=4000k", str(small_disk)], check=True)
    metrics = train(compose_config("train", out, overrides, cache_dir))
    assert results(out)["status"] == "completed" and "test/acc" in metrics


@pytest.mark.slow  # several folds trained (~3 s): the fast suite keeps the core CV tests
def test_regression_cross_validation(make_cfg):
    cfg = make_cfg("train", [*ONE_EPOCH, "experiment=diabetes_regression", "cv.folds=3"])
    metrics = train(cfg)
    folds = [results(Path(cfg.paths.output_dir) / f"fold_{k}")["metrics"] for k in range(3)]
    assert metrics["val/mse_best"] == pytest.approx(
        statistics.fmean(f["val/mse_best"] for f in folds)
    )
    assert "val/mse_best" in (Path(cfg.paths.output_dir) / "cv_summary.md").read_text()


# ---- bad inputs ----------------------------------------------------------------------------------
BAD = {
    "one-fold": (["cv.folds=1"], "cv.folds=1 is not allowed: k-fold cross-validation needs an"),
    "not-a-number": (["cv.folds=2.5"], "cv.folds=2.5 is not allowed"),
    "fold-out-of-range": (["cv.folds=3", "cv.fold=3"], "from 0 to 2"),
    "fold-without-folds": (["cv.fold=1"], "cv.fold=1 needs cv.folds=K"),
    "bad-seed": (["cv.folds=3", "cv.seed=-1"], "cv.seed=-1 is not allowed"),
    "more-folds-than-a-class": (
        ["cv.folds=200"],
        "cv.folds=200 but class '8' of the digits training data has only 137 samples: stratified "
        "folds need every class in every fold. Allowed: cv.folds from 2 to 137.",
    ),
    "more-folds-than-rows": (
        ["experiment=diabetes_regression", "cv.folds=400"],
        "cv.folds=400 but the csv training data has 354 samples; allowed: cv.folds from 2 to 354.",
    ),
    "with-ckpt-path": (["cv.folds=3", "ckpt_path=x.ckpt"], "ckpt_path=x.ckpt with cv.folds=3"),
    "with-pruner": (["cv.folds=3", "+optuna_trial=0"], "with an Optuna pruner"),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_cross_validation_values_fail_in_one_line(make_cfg, case):
    overrides, expected = BAD[case]
    cfg = make_cfg("train", [*ONE_EPOCH, *overrides])
    with pytest.raises(ConfigError) as info:
        train(cfg)
    assert expected in str(info.value) and "\n" not in str(info.value)
    out = Path(cfg.paths.output_dir)
    assert not list(out.glob("fold_*"))  # refused before any fold was written
    assert results(out)["status"] == "failed"


def test_parallel_folds_are_averaged_by_the_sweep_summary(tmp_path):
    """`-m cv.folds=2 cv.fold=0,1 optimizer.lr=…`: mean ± std over the folds of each setting."""
    values = {(0.1, 0): 0.90, (0.1, 1): 0.94, (0.01, 0): 0.80, (0.01, 1): 0.70}
    for job, ((lr, fold), acc) in enumerate(values.items()):
        (tmp_path / str(job) / ".hydra").mkdir(parents=True)
        overrides = f"- optimizer.lr={lr}\n- cv.folds=2\n- cv.fold={fold}\n"
        (tmp_path / str(job) / ".hydra" / "overrides.yaml").write_text(overrides)
        record = {"status": "completed", "metrics": {"val/acc_best": acc}, "task": "train"}
        (tmp_path / str(job) / "results.json").write_text(json.dumps(record))
    write_summary(tmp_path, "val/acc_best", "max")
    folds = pd.read_csv(tmp_path / "summary_folds.csv").set_index("optimizer.lr")
    assert folds.loc[0.1, "val/acc_best mean"] == pytest.approx(0.92)
    assert folds.loc[0.1, "val/acc_best std"] == pytest.approx(statistics.stdev([0.90, 0.94]))
    assert folds.loc[0.01, "completed"] == 2 and list(folds.index) == [0.1, 0.01]
    assert "Mean ± std over folds" in (tmp_path / "summary.md").read_text()


# ---- through the command line (slow) -------------------------------------------------------------
def cli_train(args: list[str], cwd: Path) -> tuple[int, str]:
    proc = run_cli([str(ROOT / "src" / "train.py"), *args], cwd=cwd, timeout=600)
    return proc.returncode, proc.stdout + proc.stderr


@pytest.mark.slow
def test_kill_during_a_fold_then_resume_finishes_only_that_fold_and_the_rest(tmp_path, cache_dir):
    run = tmp_path / "run"
    common = [*ONE_EPOCH, "trainer.max_epochs=2", "cv.folds=3", f"paths.cache_dir={cache_dir}"]
    kill = fault("SignalAt", name="KILL", epoch=1, fold=1)
    code, out = cli_train([*common, *kill, f"hydra.run.dir={run}"], tmp_path)
    assert code == -signal.SIGKILL, out[-3000:]
    assert results(run / "fold_0")["status"] == "completed"
    assert not (run / "fold_1" / "results.json").exists() and not (run / "fold_2").exists()
    assert not (run / "results.json").exists()
    kept = {p: p.stat().st_mtime_ns for p in (run / "fold_0").rglob("*")}

    # the cache is typed again: a run directory's overrides never set a place (docs/faults.md T4)
    resume = [f"resume={run}", "~callbacks.fault", f"paths.cache_dir={cache_dir}"]
    code, out = cli_train(resume, tmp_path)
    assert code == 0, out[-3000:]
    assert {p: p.stat().st_mtime_ns for p in kept} == kept
    assert results(run / "fold_1")["resumed_from"].endswith("fold_1/checkpoints/last.ckpt")
    assert [results(run / f"fold_{k}")["status"] for k in range(3)] == ["completed"] * 3
    parent = results(run)
    assert parent["status"] == "completed"
    folds = [results(run / f"fold_{k}")["metrics"]["test/acc"] for k in range(3)]
    assert parent["metrics"]["test/acc"] == pytest.approx(statistics.fmean(folds))
    # a fold directory resumes on its own too: its overrides are the run's plus cv.fold=k
    overrides = (run / "fold_2" / ".hydra" / "overrides.yaml").read_text()
    assert "cv.folds=3" in overrides and overrides.strip().endswith("cv.fold=2")


@pytest.mark.slow
def test_bad_value_through_the_command_line_is_one_line(tmp_path):
    code, out = cli_train([*ONE_EPOCH, "cv.folds=1", f"paths.log_dir={tmp_path}"], tmp_path)
    assert code == 1
    assert "cv.folds=1 is not allowed" in out and "Traceback" not in out


@pytest.mark.slow
def test_cross_validation_under_ddp_runs_every_fold_on_every_rank(tmp_path, cache_dir):
    """Two CPU ranks run folds 0 and 1 one after the other (each fit needs both); fold 2 fails on
    cue: the loop ends there and the run exits, naming it, with no rank left behind."""
    run = tmp_path / "run"
    args = [*ONE_EPOCH, "trainer=ddp_sim", "cv.folds=3", f"paths.cache_dir={cache_dir}"]
    code, out = cli_train(
        [*args, *fault("RaiseAt", epoch=0, fold=2), f"hydra.run.dir={run}"], tmp_path
    )
    assert code == 1, out[-3000:]
    assert "fold 2 failed: RuntimeError: injected failure" in out
    statuses = [results(run / f"fold_{k}")["status"] for k in range(3)]
    assert statuses == ["completed", "completed", "failed"]
    parent = results(run)
    assert parent["status"] == "failed" and parent["cv"]["completed"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no stray rank directories
