"""What a user sees on the console of a run: the order of its parts, what must not be there, and
user errors as one line alone. Through the real command line, in a terminal (a pty) and redirected
to a file, since Rich and Hydra's logging behave differently in each."""

import csv
import os
import pty
import re
import select
import subprocess
from pathlib import Path

import pytest

from helpers import PYTHON, PYTHONPATH, ROOT, run_cli

EPOCHS = 3
#: nothing of this may reach the console of a default run
ABSENT = (
    "Instantiating",  # our build messages: the log file only
    "💡",
    "Tip:",  # Lightning's litlogger / litmodels advertisements
    "FLOPs",
    "MetricCollection",
    "MeanMetric",  # metric containers in the model summary
    "CONFIG",  # the whole config tree (extras.print_config=full)
    "0.00it/s",  # a speed before it is known
    "HYDRA_FULL_ERROR",
    "GPU available",  # Lightning's device lines: the log file only
    "Test metric",  # Lightning's test table: the summary has the test metrics
    "Traceback",
    "srun",  # Lightning's advice to prefix srun wherever SLURM is installed (CI runs one)
)
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def train_args(tmp_path: Path) -> list[str]:
    return [
        str(ROOT / "src" / "train.py"),
        f"trainer.max_epochs={EPOCHS}",
        "~callbacks.early_stopping",
        f"paths.log_dir={tmp_path / 'logs'}",
    ]


def run_dir(tmp_path: Path) -> Path:
    (found,) = (tmp_path / "logs" / "train" / "runs").iterdir()
    return found


def history(tmp_path: Path) -> list[dict[str, str]]:
    with open(run_dir(tmp_path) / "history.csv") as f:
        return list(csv.DictReader(f))


def in_a_terminal(args: list[str], cwd: Path, columns: int = 120) -> str:
    """Run `python args…` with a pty as its stdout and stderr; everything it wrote."""
    master, slave = pty.openpty()
    env = {**os.environ, "COLUMNS": str(columns), "LINES": "40", "TERM": "xterm-256color"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [PYTHONPATH, env.get("PYTHONPATH")]))
    proc = subprocess.Popen([PYTHON, *args], cwd=cwd, stdout=slave, stderr=slave, env=env)
    os.close(slave)
    out = bytearray()
    while True:
        ready, _, _ = select.select([master], [], [], 300)
        if not ready:
            proc.kill()
            break
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the child closed the pty
            break
        if not chunk:
            break
        out += chunk
    proc.wait(timeout=60)
    os.close(master)
    assert proc.returncode == 0, out.decode(errors="replace")[-3000:]
    return out.decode(errors="replace")


def screen_lines(raw: str) -> list[str]:
    """The lines as they stay on screen: colours dropped, each redraw (\\r) keeping its last state."""
    text = ANSI.sub("", raw)
    return [line.split("\r")[-1].rstrip() for line in text.replace("\r\n", "\n").split("\n")]


def index_of(lines: list[str], pattern: str) -> int:
    for i, line in enumerate(lines):
        if re.search(pattern, line):
            return i
    raise AssertionError(f"{pattern!r} not on the console:\n" + "\n".join(lines))


def check_order_and_absence(lines: list[str], first_epoch: str) -> None:
    header = index_of(lines, r"^train → ")
    data = index_of(lines, r"^data digits: train \d+ · val \d+ · test \d+$")
    model = index_of(lines, r"^model Classifier: .* parameters")
    epoch = index_of(lines, first_epoch)
    summary = index_of(lines, r"^Train summary: completed")
    assert header < data < model < epoch < summary
    assert epoch < 25, "\n".join(lines[:epoch])  # lines before the first epoch
    for line in lines[header : header + 4]:
        assert line.startswith(("train → ", "  choices", "  overrides", "  config")), line
    text = "\n".join(lines)
    for absent in ABSENT:
        assert absent not in text, f"{absent!r} on the console:\n{text}"
    model_rows = lines[model + 1 : epoch]
    assert model_rows and all(re.match(r"^  net\S*\s+\w+\s+[\d.]+ ?\w?$", r) for r in model_rows)


@pytest.mark.slow
def test_a_default_run_redirected_to_a_file_prints_one_line_per_epoch(tmp_path):
    proc = run_cli(train_args(tmp_path), cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = (proc.stdout + proc.stderr).splitlines()
    check_order_and_absence(lines, r"^Epoch 0/")
    epochs = [line for line in lines if line.startswith("Epoch ")]
    assert len(epochs) == EPOCHS
    for line, row in zip(epochs, history(tmp_path), strict=True):
        # each epoch's line holds that epoch's own train metrics, not the epoch before's
        assert f"train/loss {float(row['train/loss']):.3f}" in line, (line, row)
        assert f"val/acc {float(row['val/acc']):.3f}" in line, (line, row)
    assert not any(line.startswith(" ") and ":" in line and "/" in line for line in lines[:3])


@pytest.mark.slow
def test_a_default_run_in_a_terminal(tmp_path):
    lines = screen_lines(in_a_terminal(train_args(tmp_path), cwd=tmp_path))
    check_order_and_absence(lines, r"^(Sanity Checking|Epoch \d+/)")
    start = max(i for i, line in enumerate(lines) if line.startswith(f"Epoch {EPOCHS - 1}/"))
    final_bar = " ".join(lines[start : index_of(lines, r"^Train summary")])  # metrics may wrap
    last = history(tmp_path)[-1]
    # the bar's last state shows the last epoch's train loss (Lightning's showed the one before)
    assert f"train/loss: {float(last['train/loss']):.3f}" in final_bar, final_bar


# ---- user errors: one line, alone ----------------------------------------------------------------
def one_error_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(errors) == 1, proc.stderr
    assert "Traceback" not in proc.stdout
    return errors[0]


@pytest.mark.slow
def test_a_user_error_is_one_line(tmp_path):
    proc = run_cli([*train_args(tmp_path), "data.batch_size=0"], cwd=tmp_path, timeout=300)
    assert (
        one_error_line(proc)
        == "data.batch_size=0 is not allowed: it must be a whole number > 0, at most 2147483647."
    )


@pytest.mark.slow
def test_a_missing_checkpoint_is_one_line(tmp_path):
    missing = tmp_path / "nonexistent.ckpt"
    args = [str(ROOT / "src" / "eval.py"), f"ckpt_path={missing}", f"paths.log_dir={tmp_path}"]
    line = one_error_line(run_cli(args, cwd=tmp_path, timeout=300))
    assert line.startswith(f"ckpt_path='{missing}' does not exist"), line
    assert "is not a key" not in line


@pytest.mark.slow
@pytest.mark.parametrize(
    ("arg", "expected"),
    [
        ("trainer.max_epoch=3", "trainer.max_epoch=3: trainer.max_epoch is not a key"),
        (
            "model=foo",
            "Could not find 'model/foo'. Available options in 'model': "
            + ", ".join(sorted(p.stem for p in (ROOT / "configs" / "model").glob("*.yaml"))),
        ),
    ],
    ids=["misspelled-key", "unknown-option"],
)
def test_a_bad_override_is_one_line(tmp_path, arg, expected):
    line = one_error_line(run_cli([*train_args(tmp_path), arg], cwd=tmp_path, timeout=300))
    assert expected in line, line


@pytest.mark.slow
def test_full_error_still_shows_the_stack_when_asked(tmp_path):
    args = [*train_args(tmp_path), "data.batch_size=0"]
    proc = run_cli(args, cwd=tmp_path, timeout=300, env={"HYDRA_FULL_ERROR": "1"})
    assert proc.returncode == 1 and "Traceback" in proc.stderr
    assert "data.batch_size=0 is not allowed" in proc.stderr


# ---- shell completion ----------------------------------------------------------------------------
def complete(line: str, path: str | None = None) -> list[str]:
    """What `scripts/completion.bash` offers for `line` with the cursor at its end."""
    script = (
        f"source {ROOT / 'scripts' / 'completion.bash'}; COMP_LINE='{line}'; "
        "COMP_POINT=${#COMP_LINE}; COMP_WORDS=($COMP_LINE); "
        "COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 )); _template_hydra_complete; "
        'printf "%s\\n" "${COMPREPLY[@]}"'
    )
    env = {**os.environ, "PYTHONPATH": PYTHONPATH}
    if path:
        env["PATH"] = path
    proc = subprocess.run(
        ["bash", "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120, env=env
    )
    return proc.stdout.split()


def test_completion_with_the_venv_python_typed_as_a_path():
    # Hydra's own script ran `.venv/bin/python -sc query=bash`: "NameError: name 'bash' is not defined"
    assert complete(f"{PYTHON} src/train.py trainer.max_ep") == ["trainer.max_epochs="]


def test_completion_with_an_activated_venv():
    path = os.pathsep.join([str(Path(PYTHON).parent), os.environ.get("PATH", "")])
    assert "model=cnn" in complete("python src/train.py model=", path)


def test_completion_answers_before_lightning_is_imported():
    env = {**os.environ, "PYTHONPATH": PYTHONPATH, "COMP_LINE": "python src/train.py mod"}
    env["COMP_POINT"] = str(len(env["COMP_LINE"]))
    proc = subprocess.run(
        [PYTHON, "-X", "importtime", "src/train.py", "-sc", "query=bash"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert proc.returncode == 0 and "model=" in proc.stdout, proc.stderr[-2000:]
    imported = proc.stderr  # -X importtime: one line per module imported
    assert "pytorch_lightning" not in imported and "torch" not in imported.split()


# ---- debug presets -------------------------------------------------------------------------------
@pytest.mark.parametrize("preset", ["default", "fdr", "limit", "overfit", "profiler"])
def test_every_debug_preset_runs_on_the_default_data(make_cfg, caplog, preset):
    from src.train import train

    overrides = [f"debug={preset}", "extras.print_config=false", "callbacks.history.plot=false"]
    if preset == "overfit":
        overrides.append("trainer.max_epochs=3")  # its 30 epochs prove nothing more here
    with caplog.at_level("INFO", logger="expkit"):
        metrics = train(make_cfg("train", overrides))
    assert "test/acc" in metrics
    # fast_dev_run writes no checkpoint: said so, not "no ModelCheckpoint callback?"
    assert "No best checkpoint" not in caplog.text and "no ModelCheckpoint" not in caplog.text
    if preset == "fdr":
        assert "fast_dev_run writes no checkpoint" in caplog.text


def test_debug_logging_is_this_projects_only():
    """debug=…: DEBUG on the console for this project's loggers; the root stays at INFO, so
    matplotlib's font lookups and the like stay out."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=["debug=fdr"], return_hydra_config=True)
    logging_cfg = cfg.hydra.job_logging
    assert logging_cfg.root.level == "INFO"
    assert logging_cfg.handlers.console.level == "DEBUG"
    assert logging_cfg.loggers.src.level == "DEBUG"
    assert logging_cfg.loggers.expkit.level == "DEBUG"
    assert "matplotlib" not in logging_cfg.get("loggers", {})


def test_a_continued_run_does_not_warn_that_its_checkpoint_directory_is_not_empty(make_cfg):
    """resume= and a requeue continue a run in its own directory on purpose: Lightning's
    "Checkpoint directory … exists and is not empty" says nothing there."""
    import warnings

    from expkit.run.setup import prepare_run

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        prepare_run(make_cfg("train", ["extras.print_config=false"]))
        warnings.warn("Checkpoint directory /x/checkpoints exists and is not empty.", stacklevel=1)
    assert not [w for w in caught if "exists and is not empty" in str(w.message)]
