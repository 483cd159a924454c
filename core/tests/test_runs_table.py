"""`python -m expkit.runs_table`: one table of every run and sweep job, filtered, sorted, written out.

Most tests build run directories by hand, shaped as train.py and Hydra write them (results.json,
config.yaml, .hydra/overrides.yaml, .hydra/hydra.yaml), and call the command line's `main` in
process; broken and crafted files must give rows marked `unreadable`, never a crash. One slow test
makes a real sweep with `python src/train.py -m` and reads it with `python -m expkit.runs_table`.
"""

import csv
import json
import os
from pathlib import Path

import pytest
import yaml

from expkit.runs_table.cli import main
from expkit.runs_table.lookup import ABSENT, MAPPING, NotSimple, find_value
from expkit.runs_table.read import MISSING, Run, read_run
from helpers import FAST, compose_config, run_cli


def make_run(
    run_dir: Path,
    *,
    lr: float = 0.001,
    model: str = "mlp",
    overrides: list[str] | None = None,
    tags: list[str] = (),
    status: str | None = "completed",
    started: str = "2026-11-10T10:00:00",
    metrics: dict | None = None,
    choices: dict | None = None,
    commit: str = "a" * 40,
    dirty: bool = False,
    task: str = "train",
) -> Path:
    """A run directory as train.py leaves it (status None: no results.json, as while it runs)."""
    (run_dir / ".hydra").mkdir(parents=True)
    config = {
        "task_name": "train",
        "seed": 42,
        "tags": list(tags),
        "data": {"_target_": "expkit.data.digits.DigitsDataModule", "batch_size": 64},
        "model": {
            "_target_": "src.models.classifier.Classifier",
            "net": {"_target_": f"src.models.nets.{model}.X", "hidden_sizes": [64, 128, 64]},
        },
        "optimizer": {"_target_": "torch.optim.Adam", "_partial_": True, "lr": lr},
        "trainer": {"max_epochs": 3, "deterministic": False},
    }
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    (run_dir / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    overrides = [f"model={model}", f"optimizer.lr={lr}"] if overrides is None else overrides
    (run_dir / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    hydra = {
        "hydra": {
            "run": {"dir": str(run_dir)},
            "runtime": {
                "version": "1.3.2",
                "choices": {"data": "digits", "model": model, **(choices or {})},
            },
        }
    }
    (run_dir / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump(hydra, sort_keys=False))
    if status is not None:
        results = {
            "status": status,
            "task": task,
            "metrics": {"val/acc_best": 0.9, "test/acc": 0.88, "train/loss": 0.1}
            if metrics is None
            else metrics,
            "wall_time_s": 12.5,
            "started_at": started,
            "output_dir": str(run_dir),
            "tags": list(tags),
            "provenance": {"commit": commit, "branch": "main", "dirty": dirty},
        }
        if status == "failed":
            results["error"] = {"type": "RuntimeError", "message": "boom"}
        (run_dir / "results.json").write_text(json.dumps(results, indent=2))
    (run_dir / "checkpoints").mkdir()
    (run_dir / "checkpoints" / "last.ckpt").write_bytes(b"never read")
    return run_dir


def table(tmp_path: Path, *args: str, dirs: list[Path] | None = None) -> list[dict]:
    """Rows of `python -m expkit.runs_table <dirs> <args> --csv` as dicts."""
    out = tmp_path / "out.csv"
    assert main([*(str(d) for d in dirs or [tmp_path / "logs"]), *args, "--csv", str(out)]) == 0
    with out.open() as f:
        return list(csv.DictReader(f))


def names(rows: list[dict]) -> list[str]:
    return [Path(r["run_dir"]).name for r in rows]


@pytest.fixture
def logs(tmp_path) -> Path:
    """Two single runs, a sweep of three jobs, an Optuna trial, one still running, one failed."""
    root = tmp_path / "logs"
    runs = root / "train" / "runs"
    make_run(
        runs / "r_mlp_small",
        lr=0.0001,
        tags=["baseline"],
        started="2026-10-30T09:00:00",
        metrics={"val/acc_best": 0.85, "test/acc": 0.84},
    )
    make_run(
        runs / "r_cnn",
        model="cnn",
        lr=0.01,
        tags=["baseline", "cnn"],
        dirty=True,
        started="2026-11-02T09:00:00",
        metrics={"val/acc_best": 0.95, "test/acc": 0.93},
    )
    sweep = root / "train" / "multiruns" / "2026-11-05_10-00-00_abc123"
    for job, lr in enumerate([0.001, 0.003, 0.1]):
        make_run(
            sweep / str(job),
            lr=lr,
            overrides=[f"optimizer.lr={lr}"],
            tags=["sweep"],
            started=f"2026-11-05T10:0{job}:00",
            metrics={"val/acc_best": 0.1 * (job + 7)},
        )
    (sweep / "multirun.yaml").write_text("hydra: {}\n")
    make_run(
        root / "train" / "optuna" / "study" / "0",
        model="cnn",
        overrides=["experiment=digits_cnn"],
        choices={"experiment": "digits_cnn"},
        started="2026-11-06T10:00:00",
    )
    make_run(runs / "2026-11-07_10-00-00_running", status=None)
    make_run(
        root / "eval" / "runs" / "e_failed",
        status="failed",
        overrides=[],
        task="eval",
        started="2026-11-08T10:00:00",
    )
    (root / "mlflow" / "1" / "abc").mkdir(parents=True)  # a logger's store: never a run
    (root / "mlflow" / "1" / "abc" / "results.json").write_text("{}")
    return root


# ---- discovery and fields ----------------------------------------------------------------------
def test_every_run_and_sweep_job_is_listed_once_newest_first(logs, tmp_path):
    os.symlink(logs, logs / "train" / "loop")  # a symlink loop must not hang or duplicate
    rows = table(tmp_path)
    assert names(rows) == [
        "e_failed",
        "2026-11-07_10-00-00_running",
        "0",
        "2",
        "1",
        "0",
        "r_cnn",
        "r_mlp_small",
    ]
    cnn = next(r for r in rows if r["run_dir"].endswith("r_cnn"))
    assert cnn["tags"] == "baseline,cnn" and cnn["commit"] == "a" * 40 and cnn["dirty"] == "True"
    assert cnn["overrides"] == "model=cnn optimizer.lr=0.01" and cnn["status"] == "completed"
    assert float(cnn["val/acc_best"]) == 0.95 and float(cnn["wall_time_s"]) == 12.5
    running = next(r for r in rows if "running" in r["run_dir"])
    assert running["status"] == "missing" and running["started_at"] == "2026-11-07T10:00:00"
    failed = next(r for r in rows if "e_failed" in r["run_dir"])
    assert failed["task"] == "eval" and failed["error"] == "RuntimeError: boom"
    # a run directory given directly, or reached twice, is one row
    assert names(
        table(tmp_path, dirs=[logs / "train" / "runs" / "r_cnn", logs / "train" / "runs"])
    ) == ["2026-11-07_10-00-00_running", "r_cnn", "r_mlp_small"]


def test_it_never_opens_a_checkpoint(logs, tmp_path, monkeypatch):
    opened = []
    real_open = os.open

    def spy(path, *args, **kwargs):
        opened.append(Path(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", spy)
    table(tmp_path, "--where", "optimizer.lr>0", "--where", "model=cnn", "--sort", "val/acc_best")
    monkeypatch.undo()
    # what was read: not the CSV's temp file, nor the directory fsynced after the CSV's rename
    read = {p.name for p in opened if not p.name.startswith(".out.csv.") and not p.is_dir()}
    assert read == {"results.json", "overrides.yaml", "config.yaml", "hydra.yaml"}


# ---- filters -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--tag", "baseline"], {"r_cnn", "r_mlp_small"}),
        (["--tag", "baseline", "--tag", "cnn"], {"r_cnn"}),  # every tag given
        (["--task", "eval"], {"e_failed"}),
        (
            ["--status", "failed", "--status", "missing"],
            {"e_failed", "2026-11-07_10-00-00_running"},
        ),
        (["--since", "2026-11-05", "--until", "2026-11-06"], {"0", "1", "2"}),
        (
            ["--since", "2026-11-05T10:01"],
            {"1", "2", "0", "2026-11-07_10-00-00_running", "e_failed"},
        ),
        # numbers as numbers: 1e-3 is 0.001, 0.01 > 0.003, whatever the spelling
        (["--where", "optimizer.lr>1e-3"], {"r_cnn", "1", "2"}),
        (
            ["--where", "optimizer.lr>=1e-3", "--where", "optimizer.lr<0.01"],
            {"0", "1", "2026-11-07_10-00-00_running", "e_failed"},
        ),
        (
            ["--where", "optimizer.lr=0.001", "--task", "train"],
            {"0", "2026-11-07_10-00-00_running"},
        ),
        (
            ["--where", "optimizer.lr!=0.001", "--where", "optimizer.lr<1"],
            {"r_mlp_small", "r_cnn", "1", "2"},
        ),
        # a group: typed on the command line, or only in Hydra's choices (set by an experiment)
        (["--where", "model=cnn"], {"r_cnn"} | {"0"}),
        (["--where", "experiment=digits_cnn"], {"0"}),
        (["--where", "model.net.hidden_sizes=[64,128,64]", "--tag", "cnn"], {"r_cnn"}),
        (["--where", "trainer.deterministic=false", "--tag", "sweep"], {"0", "1", "2"}),
        (["--where", "val/acc_best>=0.9", "--task", "train"], {"r_cnn", "2", "0"}),
        (["--where", "status!=completed"], {"e_failed", "2026-11-07_10-00-00_running"}),
        (["--where", "no.such.key!=1"], set()),  # a run without the key never matches
    ],
)
def test_filters(logs, tmp_path, args, expected):
    assert set(names(table(tmp_path, *args))) == expected


def test_model_choice_of_a_run_whose_experiment_chose_it(logs, tmp_path):
    """The Optuna trial typed only experiment=digits_cnn: its model comes from Hydra's choices."""
    rows = table(tmp_path, "--where", "model=cnn", "--column", "experiment")
    trial = next(r for r in rows if "optuna" in r["run_dir"])
    assert trial["experiment"] == "digits_cnn"


def test_sort_numbers_as_numbers_and_missing_values_last(logs, tmp_path):
    rows = table(tmp_path, "--sort", "val/acc_best", "--desc", "--task", "train")
    scores = [r["val/acc_best"] for r in rows]
    assert [float(s) for s in scores if s] == sorted((float(s) for s in scores if s), reverse=True)
    assert scores[-1] == ""  # the running job has no metrics: last either way
    rows = table(tmp_path, "--sort", "optimizer.lr", "--tag", "sweep")
    assert [float(r["optimizer.lr"]) for r in rows] == [0.001, 0.003, 0.1]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--where", "optimizer.lr"],
            "--where 'optimizer.lr' is not a condition. Allowed: KEY OP VALUE",
        ),
        (["--where", "=3"], "is not a condition"),
        (["--since", "yesterday"], "--since 'yesterday' is not a date. Allowed: YYYY-MM-DD"),
    ],
)
def test_bad_filters_are_one_line(logs, tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) as exit_:
        main([str(logs), *args])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_a_missing_directory_is_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main([str(tmp_path / "nope")])
    err = capsys.readouterr().err
    assert "nope is not a directory" in err and err.count("\n") == 1


# ---- broken and crafted files --------------------------------------------------------------------
@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ('{"status": "completed", "metrics": {"val/ac', "not valid JSON"),
        ("", "empty"),
        (b"\xff\xfe\x00binary", "not UTF-8"),
        ("[1, 2, 3]", "a JSON list, not an object"),
        ("[" * 100_000 + "]" * 100_000, "not valid JSON"),  # nesting deep enough to overflow
        ("x" * 6_000_000, "larger than 5 MB"),
    ],
    ids=["half-written", "empty", "binary", "list", "deep", "huge"],
)
def test_a_broken_results_file_is_listed_as_unreadable(tmp_path, content, reason):
    run = make_run(tmp_path / "logs" / "train" / "runs" / "broken", status="completed")
    path = run / "results.json"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    make_run(tmp_path / "logs" / "train" / "runs" / "good")
    rows = {Path(r["run_dir"]).name: r for r in table(tmp_path)}
    assert rows["broken"]["status"] == "unreadable" and reason in rows["broken"]["error"]
    assert rows["broken"]["task"] == "train" and rows["good"]["status"] == "completed"


def test_a_fifo_or_device_in_place_of_a_file_does_not_hang(tmp_path):
    run = make_run(tmp_path / "logs" / "fifo")
    (run / "results.json").unlink()
    os.mkfifo(run / "results.json")  # opening it to read would block until a writer comes
    (run / "config.yaml").unlink()
    (run / "config.yaml").symlink_to("/dev/zero")
    (row,) = table(tmp_path, "--column", "optimizer.lr")
    assert row["status"] == "unreadable" and "not a regular file" in row["error"]
    assert row["optimizer.lr"] == "0.001"  # from .hydra/config.yaml, the next one


def test_wrong_types_and_crafted_yaml_do_not_break_the_table(tmp_path):
    root = tmp_path / "logs"
    odd = make_run(root / "train" / "runs" / "odd")
    (odd / "results.json").write_text(
        json.dumps(
            {
                "status": ["not", "a", "string"],
                "metrics": ["no"],
                "tags": "notalist",
                "wall_time_s": "slow",
                "provenance": "x",
                "started_at": 5,
                "error": 7,
            }
        )
    )
    bomb = make_run(root / "train" / "runs" / "bomb")
    laughs = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
        for p, c in zip("abcdefgh", "bcdefghi", strict=True)
    )
    (bomb / "config.yaml").write_text(laughs + "optimizer:\n  lr: 0.5\n")
    (bomb / ".hydra" / "config.yaml").write_text(laughs)
    (bomb / ".hydra" / "overrides.yaml").write_text(laughs)
    rows = {
        Path(r["run_dir"]).name: r
        for r in table(tmp_path, "--column", "optimizer.lr", "--column", "i")
    }
    assert rows["odd"]["status"] == '["not", "a", "string"]' and rows["odd"]["tags"] == ""
    assert rows["odd"]["wall_time_s"] == "" and rows["odd"]["error"] == "7"
    assert rows["bomb"]["optimizer.lr"] == "" and rows["bomb"]["i"] == ""  # anchors: not read
    assert rows["bomb"]["status"] == "completed" and "YAML anchors" in rows["bomb"]["error"]


# ---- outputs -------------------------------------------------------------------------------------
def test_markdown_and_console(logs, tmp_path, capsys):
    md = tmp_path / "runs.md"
    assert main([str(logs), "--tag", "baseline", "--md", str(md), "--limit", "1"]) == 0
    text = md.read_text()
    assert text.startswith("# Runs: 2 of 8 (2 completed)")
    assert "| aaaaaaaaaa* |" in text  # the dirty run's commit, marked
    assert text.count("\n| ") == 4  # header, rule and both rows (the file has every row)
    out = capsys.readouterr().out
    assert "2 of 8 run(s) selected" in out and "1 more (--limit 0 shows all)" in out
    assert "r_cnn" in out and "r_mlp_small" not in out


def test_overrides_with_brackets_and_pipes_stay_data(tmp_path, capsys):
    make_run(tmp_path / "logs" / "r", overrides=["tags=[a,b]", "x='a|b'"], tags=["a", "b"])
    md = tmp_path / "runs.md"
    assert main([str(tmp_path / "logs"), "--md", str(md)]) == 0
    assert "tags=[a,b] x='a\\|b'" in md.read_text()
    assert "tags=[a,b]" in capsys.readouterr().out  # not swallowed as rich markup


# ---- the YAML lookup agrees with a full parse --------------------------------------------------
TRICKY = """\
a: 1
b:
  c: {}
  d:
  - 1
  - 2
  e:
  - x: 1
    y: 2
  long: this is a long
    folded plain scalar
  quoted: 'it''s: quoted'
  text: |
    block
    scalar
  empty:
  dots.in.key: 3
bb: 4
b_c: 5
"""


def _paths(node, prefix=()):
    if isinstance(node, dict):
        for key, value in node.items():
            yield (*prefix, str(key)), value
            yield from _paths(value, (*prefix, str(key)))


@pytest.mark.parametrize("source", ["tricky", "composed"])
def test_lookup_agrees_with_a_full_parse_for_every_key(source, tmp_path):
    if source == "tricky":
        text = TRICKY
    else:
        cfg = compose_config("train", tmp_path / "run", [*FAST, "model=cnn", "tags=[a,b]"])
        from omegaconf import OmegaConf

        text = OmegaConf.to_yaml(cfg, resolve=True)
    full = yaml.safe_load(text)
    run_dir = tmp_path / "r"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text(text)
    run = Run(run_dir=run_dir, status="completed")
    for path, expected in _paths(full):
        if "." in "".join(path):
            continue  # a key with a dot cannot be named by a dotted path
        try:
            fast = find_value(text, list(path))
            assert fast == (MAPPING if isinstance(expected, dict) else expected), path
        except NotSimple:
            pass  # the caller then parses the whole file: checked through Run below
        got = run._lookup((Path("config.yaml"),), list(path))
        assert got == (MAPPING if isinstance(expected, dict) else expected), path
    for absent in (["zz"], ["b", "zz"], ["a", "x"], ["b", "c", "x"]):
        assert find_value(text, absent) is ABSENT, absent
    assert run.value("no.such") is MISSING and run.value("b.c") is MISSING


# ---- a real sweep, end to end --------------------------------------------------------------------
@pytest.mark.slow
def test_a_real_sweep_through_both_command_lines(tmp_path):
    result = run_cli(
        [
            "src/train.py",
            "-m",
            "optimizer.lr=1e-3,1e-2",
            "tags=[sweep,mlp]",
            "trainer.max_epochs=1",
            "logger=none",
            "extras.print_config=false",
            f"paths.log_dir={tmp_path}",
        ]
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = tmp_path / "t.csv"
    result = run_cli(
        [
            "-m",
            "expkit.runs_table",
            str(tmp_path),
            "--where",
            "optimizer.lr>1e-3",
            "--where",
            "model=mlp",
            "--tag",
            "sweep",
            "--csv",
            str(out),
        ]
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (row,) = list(csv.DictReader(out.open()))
    assert (
        row["optimizer.lr"] == "0.01"
        and row["status"] == "completed"
        and row["tags"] == "sweep,mlp"
    )
    assert len(row["commit"]) == 40 and float(row["test/acc"]) > 0.3
    assert row["run_dir"].endswith("/1") and "1 of 2 run(s) selected" in result.stdout
    assert read_run(Path(row["run_dir"])).value("data") == "digits"  # from Hydra's choices
