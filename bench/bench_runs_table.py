"""How long `python -m expkit.runs_table` takes over 2,000 run directories (the target: under 2 s).

Generates N synthetic run directories shaped like real ones (results.json, .hydra/overrides.yaml,
.hydra/config.yaml, .hydra/hydra.yaml, config.yaml: the config composed from configs/train.yaml
and saved as train.py saves it), as single runs and as sweep jobs, with some failed, some still
running (no results.json) and some with a half-written results.json. Then times, in this process
(median and quartiles of --repeats), the table with no filter, with tag/status filters, with
config-key conditions (which read each run's config) and sorting, and the CSV + Markdown output;
and once, end to end, the command line in a new Python process (imports included).

    python bench/bench_runs_table.py               # 2,000 runs in a temporary directory
    python bench/bench_runs_table.py --runs 5000 --keep /tmp/runs   # keep them to try the CLI
"""

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def composed_texts(overrides: list[str]) -> tuple[str, str, str]:
    """(config.yaml resolved, .hydra/config.yaml, .hydra/hydra.yaml) as a run would write them."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    import expkit.utils  # noqa: F401  (resolvers)

    GlobalHydra.instance().clear()
    with initialize_config_dir(str(ROOT / "configs"), version_base="1.3"):
        cfg = compose(
            "train", overrides=["paths.output_dir=/tmp/x", *overrides], return_hydra_config=True
        )
    from hydra.core.hydra_config import HydraConfig

    HydraConfig.instance().set_config(cfg)  # ${hydra:...} interpolations resolve as in a run
    hydra_part = OmegaConf.to_yaml(OmegaConf.create({"hydra": OmegaConf.to_container(cfg.hydra)}))

    def plain(key: str, resolve: bool):
        value = cfg._get_node(key)._value() if not resolve else cfg[key]
        return (
            OmegaConf.to_container(value, resolve=resolve) if OmegaConf.is_config(value) else value
        )

    resolved = {k: plain(k, True) for k in cfg if k != "hydra"}
    raw = {k: plain(k, False) for k in cfg if k != "hydra"}
    return OmegaConf.to_yaml(resolved), OmegaConf.to_yaml(raw), hydra_part


def make_runs(root: Path, n: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    texts = {model: composed_texts([f"model={model}"]) for model in ("mlp", "cnn")}
    for i in range(n):
        model = rng.choice(["mlp", "cnn"])
        lr = rng.choice([1e-4, 1e-3, 3e-3, 1e-2])
        overrides = [f"model={model}", f"optimizer.lr={lr}", f"seed={i % 5}"]
        if i % 3:  # a job of a sweep of 20
            run_dir = (
                root
                / "train"
                / "multiruns"
                / f"2026-11-{1 + i // 400:02d}_10-00-00_s{i // 20:04d}"
                / str(i % 20)
            )
        else:
            run_dir = (
                root / "train" / "runs" / f"2026-11-{1 + i // 400:02d}_10-{i % 60:02d}-00_{i:06x}"
            )
        (run_dir / ".hydra").mkdir(parents=True)
        resolved, raw, hydra = texts[model]
        resolved = resolved.replace("lr: 0.001", f"lr: {lr}", 1)
        resolved = resolved.replace("seed: 42", f"seed: {i % 5}")
        (run_dir / "config.yaml").write_text(resolved)
        (run_dir / ".hydra" / "config.yaml").write_text(raw)
        (run_dir / ".hydra" / "hydra.yaml").write_text(hydra)
        (run_dir / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
        (run_dir / "checkpoints").mkdir()
        if i % 97 == 5:
            continue  # still running / killed: no results.json
        acc = rng.uniform(0.8, 0.99)
        results = {
            "status": "failed" if i % 50 == 7 else "completed",
            "task": "train",
            "metrics": {
                "val/acc": acc,
                "val/acc_best": acc + 0.005,
                "val/loss": 1 - acc,
                "train/loss": 0.3,
                "train/acc": 0.9,
                "test/acc": acc - 0.01,
                "test/loss": 0.4,
            },
            "best_model_path": str(run_dir / "checkpoints" / "epoch_003.ckpt"),
            "wall_time_s": rng.uniform(1, 100),
            "started_at": f"2026-11-{1 + i // 400:02d}T10:{i % 60:02d}:00",
            "output_dir": str(run_dir),
            "tags": ["baseline"] if i % 4 == 0 else ["cnn", "ablation"] if model == "cnn" else [],
            "provenance": {"commit": f"{i:040x}", "branch": "main", "dirty": i % 2 == 0},
        }
        text = json.dumps(results, indent=2)
        if i % 101 == 3:
            text = text[: len(text) // 2]  # a half-written file
        (run_dir / "results.json").write_text(text)


def timed(fn, repeats: int) -> tuple[float, float, float, float]:
    """Wall-clock q1, median, q3, and the median CPU time of this process (on a shared machine the
    wall clock also counts the time other processes held the cores; the CPU time does not)."""
    times, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    q = statistics.quantiles(times, n=4) if len(times) > 1 else [times[0]] * 3
    return q[0], statistics.median(times), q[2], statistics.median(cpu)


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--runs", type=int, default=2000)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--keep", type=Path, help="generate into this directory and keep it")
    args = p.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="bench_runs_table_"))
    if args.keep and root.exists():
        shutil.rmtree(root)
    t0 = time.perf_counter()
    make_runs(root, args.runs)
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"{args.runs} run directories generated in {time.perf_counter() - t0:.1f} s under {root}")

    from expkit.runs_table.filter import Filters, parse_condition
    from expkit.runs_table.output import to_csv, to_markdown
    from expkit.runs_table.table import build_table

    where = Filters(where=(parse_condition("optimizer.lr>1e-3"), parse_condition("model=cnn")))
    cases = {
        "no filter": lambda: build_table([root]),
        "--tag baseline --status completed": lambda: build_table(
            [root], Filters(tags=["baseline"], statuses=["completed"])
        ),
        "--where optimizer.lr>1e-3 --where model=cnn --sort val/acc_best --desc": lambda: (
            build_table([root], where, sort="val/acc_best", descending=True)
        ),
        "--where data=digits --where seed>=2 (a group only Hydra's choices record)": (
            lambda: build_table(
                [root],
                Filters(where=(parse_condition("data=digits"), parse_condition("seed>=2"))),
            )
        ),
        "no filter + CSV + Markdown text": lambda: (lambda t: (to_csv(t), to_markdown(t)))(
            build_table([root])
        ),
    }
    print(f"in-process, {args.repeats} repeats: wall q1 / median / q3, CPU median (seconds)")
    for name, fn in cases.items():
        q1, med, q3, cpu = timed(fn, args.repeats)
        print(f"  {name:75s} {q1:.3f} / {med:.3f} / {q3:.3f}   cpu {cpu:.3f}")
    table = build_table([root])
    print(f"  ({table.found} run directories found, {len(table.runs)} listed)")

    command = [
        sys.executable,
        "-m",
        "expkit.runs_table",
        str(root),
        "--where",
        "optimizer.lr>1e-3",
        "--where",
        "model=cnn",
        "--sort",
        "val/acc_best",
        "--desc",
        "--csv",
        str(root / "runs.csv"),
        "--md",
        str(root / "runs.md"),
    ]
    t0, before = time.perf_counter(), os.times()
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    wall, after = time.perf_counter() - t0, os.times()
    cpu = (after.children_user - before.children_user) + (
        after.children_system - before.children_system
    )
    print(
        f"command line, new process, imports included ({' '.join(command[2:4])} ... --csv --md): {wall:.2f} s"
        f" wall, {cpu:.2f} s CPU (exit {result.returncode})"
    )
    if result.returncode:
        print(result.stderr[-2000:])
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
