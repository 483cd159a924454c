"""Benchmark: peak memory (RSS) of a one-epoch MNIST run, ours against what its dependencies cost.

    python bench/bench_memory.py --data-dir ../shared/datasets
    python bench/bench_memory.py --data-dir ../shared/datasets --rival-dir ../lightning-hydra-template

Each command runs in a fresh process, measured by a small parent that reads its child's peak RSS
(`getrusage(RUSAGE_CHILDREN).ru_maxrss`, what `/usr/bin/time -f %M` prints), in rounds so that a
noisy moment hits every row alike:

- `imports`: `import pytorch_lightning, hydra` alone, the floor every Lightning + Hydra template pays
  (Lightning itself imports torchmetrics, torchvision, scipy, sympy, matplotlib and torch._dynamo);
- `Lightning alone`: the same MLP fitted and tested for one epoch by a bare `pl.Trainer` (no logger,
  no callbacks) on torchvision's MNIST tensors: what the dependency costs for this run;
- `Lightning alone, no teardown`: the same, ended as our entry points end (`core/expkit/run/exit.py`: the
  interpreter's teardown, ~127 MB of torch's library destructors paged in at exit, is skipped), so
  that row and `ours` differ by what the template itself holds;
- `ours`: `python src/train.py data=mnist trainer.max_epochs=1`, the user's defaults (TensorBoard,
  checkpoints, history plot, provenance, test of the best checkpoint);
- `rival` (with `--rival-dir`): the best-known public template's `src/train.py trainer.max_epochs=1`
  with its `data/MNIST` linked to ours; `test=False`, because its test step fails on torch >= 2.6
  (its checkpoints do not load with `weights_only=True`).
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

LIGHTNING_ALONE = """
import sys
import pytorch_lightning as pl, torch, torch.nn.functional as F
from torchvision.datasets import MNIST
sys.path.insert(0, {root!r})
from src.models.nets.mlp import MLP

def tensors(train):
    ds = MNIST({data_dir!r}, train=train, download=False)
    return ds.data.unsqueeze(1), ds.targets  # uint8, as torchvision holds them

class Module(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = MLP([1, 28, 28], 10, (64, 128, 64))
    def step(self, batch):
        x, y = batch
        return F.cross_entropy(self.net(x.float().div_(255).sub_(0.5).div_(0.5)), y)
    def training_step(self, batch, i):
        return self.step(batch)
    def test_step(self, batch, i):
        self.log("test/loss", self.step(batch))
    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=0.002)

loader = lambda t, shuffle: torch.utils.data.DataLoader(
    torch.utils.data.TensorDataset(*t), batch_size=128, shuffle=shuffle)
trainer = pl.Trainer(max_epochs=1, logger=False, enable_checkpointing=False,
                     enable_progress_bar=False, enable_model_summary=False, callbacks=[])
model = Module()
trainer.fit(model, loader(tensors(True), True))
trainer.test(model, loader(tensors(False), False), verbose=False)
{ending}
"""

MEASURE = """
import resource, subprocess, sys
proc = subprocess.run(sys.argv[2:], cwd=sys.argv[1], capture_output=True, text=True)
if proc.returncode:
    sys.exit(proc.stdout[-2000:] + proc.stderr[-2000:])
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def peak_rss_mb(command: list[str], cwd: Path) -> float:
    """Peak RSS of `command` (in a fresh process), in MB (10^6 bytes)."""
    out = subprocess.run(
        [sys.executable, "-c", MEASURE, str(cwd), *command],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    if out.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{out.stderr}")
    return int(out.stdout.strip()) * 1024 / 1e6


def rows(args: argparse.Namespace, log_dir: str) -> dict[str, tuple[list[str], Path]]:
    python = sys.executable
    data_dir = str(Path(args.data_dir).resolve())
    found = {
        "imports": ([python, "-c", "import pytorch_lightning, hydra"], ROOT),
        "Lightning alone": (
            [python, "-c", LIGHTNING_ALONE.format(root=str(ROOT), data_dir=data_dir, ending="")],
            ROOT,
        ),
        "Lightning alone, no teardown": (
            [
                python,
                "-c",
                LIGHTNING_ALONE.format(
                    root=str(ROOT),
                    data_dir=data_dir,
                    ending="from expkit.run.exit import exit_after_run; exit_after_run(0)",
                ),
            ],
            ROOT,
        ),
        "ours": (
            [
                python,
                "src/train.py",
                "data=mnist",
                "trainer.max_epochs=1",
                f"paths.data_dir={data_dir}",
                f"paths.log_dir={log_dir}",
            ],
            ROOT,
        ),
    }
    if args.rival_dir:
        rival = Path(args.rival_dir).resolve()
        (rival / "data").mkdir(exist_ok=True)
        link = rival / "data" / "MNIST"
        if not link.exists():
            link.symlink_to(Path(data_dir) / "MNIST")
        (rival / ".project-root").touch()
        rival_python = args.rival_python or python
        found["rival"] = (
            [rival_python, "src/train.py", "trainer.max_epochs=1", "test=False"],
            rival,
        )
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", required=True, help="folder holding MNIST/raw")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--rival-dir", help="a checkout of the best-known public template")
    parser.add_argument(
        "--rival-python", help="the Python with its packages (lightning, rootutils)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as log_dir:
        commands = rows(args, log_dir)
        peaks: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.rounds):
            for name, (command, cwd) in commands.items():
                peaks[name].append(peak_rss_mb(command, cwd))
    median = {name: statistics.median(values) for name, values in peaks.items()}
    print(f"peak RSS, median of {args.rounds} rounds (MB = 10^6 bytes):")
    for name, value in median.items():
        runs = ", ".join(f"{v:.0f}" for v in peaks[name])
        print(f"  {name:29s} {value:7.0f} MB   ({runs})")
    floor = median["Lightning alone, no teardown"]
    print(f"ours - Lightning alone (both without teardown): {median['ours'] - floor:+.0f} MB")
    if "rival" in median:
        print(f"ours - rival: {median['ours'] - median['rival']:+.0f} MB")


if __name__ == "__main__":
    main()
