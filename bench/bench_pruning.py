"""Benchmark: an Optuna study with a pruner against the same study without one.

    python bench/bench_pruning.py                                   # digits, 20 trials x 10 epochs
    python bench/bench_pruning.py --pruner hyperband --trials 30
    python bench/bench_pruning.py --search mnist_optuna --epochs 3 -- paths.data_dir=../shared/datasets

Runs `python src/train.py -m hparams_search=<search> hydra.sweeper.n_trials=N
trainer.max_epochs=E` twice in a temporary log directory, with `hydra.sweeper.pruner=<pruner>`
and with `hydra.sweeper.pruner=null` (same sampler seed, same settings), then prints for each:
trials complete/pruned/failed, training epochs summed over trials (from each trial's history.csv,
or `epochs` in results.json for a pruned trial), the best `val/acc_best`, and wall time; then the
ratio of epochs and the difference in best accuracy (in points, i.e. percent).
"""

import argparse
import csv
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_study(args: argparse.Namespace, pruner: str, log_dir: Path) -> dict:
    command = [
        sys.executable,
        "src/train.py",
        "-m",
        f"hparams_search={args.search}",
        f"hydra.sweeper.n_trials={args.trials}",
        f"trainer.max_epochs={args.epochs}",
        f"hydra.sweeper.pruner={pruner}",
        f"paths.log_dir={log_dir}",
        "extras.print_config=false",
        "logger=csv",
        "callbacks.model_summary=null",
        "callbacks.rich_progress_bar=null",
        "callbacks.history.plot=false",
        *args.overrides,
    ]
    t0 = time.perf_counter()
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{proc.stderr[-3000:]}")
    sweep = next((log_dir / "train" / "optuna").iterdir())
    epochs, best, states = 0, float("nan"), {"completed": 0, "pruned": 0, "failed": 0}
    for job in sorted(p for p in sweep.iterdir() if (p / "results.json").is_file()):
        done = json.loads((job / "results.json").read_text())
        states[done["status"]] = states.get(done["status"], 0) + 1
        if "epochs" in done:
            epochs += done["epochs"]
        elif (job / "history.csv").is_file():
            with open(job / "history.csv") as f:
                epochs += len(list(csv.DictReader(f)))
        value = done["metrics"].get("val/acc_best")
        if done["status"] == "completed" and isinstance(value, float):
            best = value if best != best else max(best, value)
    return {"pruner": pruner, "epochs": epochs, "best": best, "wall_s": wall, **states}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--search", default="digits_optuna")
    parser.add_argument("--pruner", default="median")
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("overrides", nargs="*", help="more overrides for both studies")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for pruner in (args.pruner, "null"):
            rows.append(run_study(args, pruner, Path(tmp) / pruner))
            r = rows[-1]
            print(
                f"pruner={r['pruner']:<18} trials: {r['completed']} completed, {r['pruned']} "
                f"pruned, {r['failed']} failed | training epochs {r['epochs']:4d} | best "
                f"val/acc_best {r['best']:.4f} | wall {r['wall_s']:.0f} s",
                flush=True,
            )
    pruned, full = rows
    print(
        f"{args.search}, {args.trials} trials x {args.epochs} epochs: pruned study ran "
        f"{pruned['epochs']}/{full['epochs']} = {pruned['epochs'] / max(full['epochs'], 1):.0%} "
        f"of the epochs; best val/acc_best {100 * (pruned['best'] - full['best']):+.2f} points."
    )


if __name__ == "__main__":
    main()
