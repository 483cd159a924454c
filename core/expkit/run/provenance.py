"""Where a run came from, written into `<run_dir>/provenance/` so a result can be traced to its code.

- `provenance.json`: git commit, branch, dirty flag, changed and untracked files; Python, torch, CUDA
  and cuDNN versions; host, GPU names, SLURM job; the command line, interpreter and working dir.
- `diff.patch`: `git diff HEAD` (the uncommitted changes to tracked files) followed by each small
  untracked text file of the project as a new file (a user's new model often is one), only when
  dirty, so `git checkout <commit> && git apply diff.patch` gives back the code that ran. Untracked
  files (not ignored) make a checkout dirty; larger or binary ones are listed by name only.
- `pip-freeze.txt`: every installed distribution as `name==version`.

It runs in every run, so it must be cheap (a few ms next to a ~2 s default run):
- packages are read from the `*.dist-info` directory names on `sys.path` (~1 ms), not by
  `pip freeze` (~800 ms here, a new Python process) nor `importlib.metadata` (~110 ms: it parses
  every METADATA file);
- git is asked once (`git status --porcelain=v2 --branch` gives commit, branch and changes), plus
  `git diff HEAD` only when something changed; `GIT_OPTIONAL_LOCKS=0` stops `git status` from
  taking the index lock, which parallel sweep jobs would otherwise contend for; external diff
  tools and textconv filters are off (the patch must be the plain change, and a run must not
  start programs named in a repository's config).
No git binary, no repository, a repository without commits, a git that hangs: recorded as such,
never an error. A failed write (full disk) is logged and the run goes on: provenance must not be
the reason a training run dies. Only rank 0 writes; every file is written atomically.
"""

import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from expkit import __version__ as library_version
from expkit.project import project_root
from expkit.run.lock import is_rank_zero
from expkit.utils.atomic import atomic_write_bytes, atomic_write_text
from expkit.utils.logging_utils import get_logger

log = get_logger(__name__)

PROVENANCE_DIR = "provenance"
PROVENANCE_FILE = "provenance.json"
DIFF_FILE = "diff.patch"
FREEZE_FILE = "pip-freeze.txt"
GIT_TIMEOUT_S = 10
#: untracked files listed by name in provenance.json
MAX_UNTRACKED = 200
#: an untracked file up to this size, if it is text, goes into the diff as a new file
MAX_UNTRACKED_BYTES = 64 * 1024
#: at most this many untracked files' contents in the diff (and this many bytes in all)
MAX_UNTRACKED_IN_DIFF = 50
MAX_UNTRACKED_DIFF_BYTES = 1024 * 1024


def write_provenance(
    output_dir: Path, argv: list[str] | None = None, repo: Path | None = None
) -> dict[str, Any]:
    """Collect the run's provenance and write it into `output_dir/provenance/`; return it.

    `argv` defaults to `sys.argv`; `repo` to the project's checkout (`expkit.project`). A resumed run (its directory
    already holds a provenance) writes into `provenance/resume-N/`, keeping every attempt's record.
    On ranks other than 0 nothing is collected or written and `{}` is returned.
    """
    if not is_rank_zero():
        return {}
    started = time.perf_counter()
    repo = project_root() if repo is None else Path(repo)
    git, diff = _git_state(repo)
    packages = installed_packages()
    record: dict[str, Any] = {
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": {
            "argv": list(sys.argv if argv is None else argv),
            "executable": sys.executable,
            "cwd": os.getcwd(),
        },
        "git": git,
        "library": {"name": "expkit", "version": library_version},
        **_versions(),
        "host": _host(),
        "packages": {"count": len(packages), "file": FREEZE_FILE},
    }
    target = _target_dir(Path(output_dir))
    record["dir"] = str(target)
    try:
        if diff:
            atomic_write_bytes(target / DIFF_FILE, diff)
            git["diff_file"] = DIFF_FILE
        atomic_write_text(target / FREEZE_FILE, "".join(f"{line}\n" for line in packages))
        record["collected_in_ms"] = round(1000 * (time.perf_counter() - started), 1)
        atomic_write_text(
            target / PROVENANCE_FILE, json.dumps(record, indent=2, default=str) + "\n"
        )
    except OSError as err:
        log.warning("Provenance not written to %s (the run goes on): %s", target, err)
        record["error"] = f"{type(err).__name__}: {err}"
    return record


def provenance_summary(record: dict[str, Any]) -> dict[str, Any]:
    """The few fields results.json carries (commit, branch, dirty, where the rest is)."""
    git = record.get("git") or {}
    summary = {
        "commit": git.get("commit"),
        "branch": git.get("branch"),
        "dirty": git.get("dirty"),
        "dir": record.get("dir"),
    }
    if not git.get("available", False):
        summary["git"] = git.get("reason", "unavailable")
    if record.get("error"):
        summary["error"] = record["error"]
    return summary


def _target_dir(output_dir: Path) -> Path:
    base = output_dir / PROVENANCE_DIR
    if not (base / PROVENANCE_FILE).exists():
        return base
    n = 1
    while (base / f"resume-{n}").exists():
        n += 1
    return base / f"resume-{n}"


# ---- git ------------------------------------------------------------------------------------------
def _git(repo: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0", "LC_ALL": "C"}
    return subprocess.run(
        ["git", "-C", str(repo), *args],
        capture_output=True,
        timeout=GIT_TIMEOUT_S,
        env=env,
        check=False,
    )


def _git_state(repo: Path) -> tuple[dict[str, Any], bytes]:
    """(what provenance.json says about git, the diff of uncommitted changes or b'')."""
    if shutil.which("git") is None:
        return {"available": False, "reason": "no git binary on PATH"}, b""
    try:
        status = _git(repo, "status", "--porcelain=v2", "--branch", "-z", "--untracked-files=all")
    except (OSError, subprocess.TimeoutExpired) as err:
        return {"available": False, "reason": f"git status failed: {err}"}, b""
    if status.returncode != 0:
        reason = status.stderr.decode(errors="replace").strip().splitlines()
        return {"available": False, "reason": reason[0] if reason else "git status failed"}, b""
    state = _parse_status(status.stdout.decode(errors="replace"))
    state["available"] = True
    state["root"] = str(repo)
    diff = b""
    if state["dirty"] and state["commit"]:
        try:
            result = _git(
                repo, "diff", "HEAD", "--no-color", "--no-ext-diff", "--no-textconv", "--binary"
            )
            diff = result.stdout if result.returncode == 0 else b""
            if result.returncode != 0:
                state["diff_error"] = result.stderr.decode(errors="replace").strip()[:500]
        except (OSError, subprocess.TimeoutExpired) as err:
            state["diff_error"] = str(err)
    if state["dirty"] and state["untracked_files"]:
        added, state["untracked_in_diff"] = _untracked_patch(repo, state["untracked_files"])
        diff += added
    state["diff_bytes"] = len(diff)
    state["diff_file"] = None
    return state, diff


def _parse_status(text: str) -> dict[str, Any]:
    """`git status --porcelain=v2 --branch -z` → commit, branch, dirty, changed/untracked paths."""
    commit = branch = None
    changed: list[str] = []
    untracked: list[str] = []
    entries = iter(text.split("\0"))
    for entry in entries:
        if entry.startswith("# branch.oid "):
            oid = entry.split(" ", 2)[2]
            commit = None if oid == "(initial)" else oid
        elif entry.startswith("# branch.head "):
            head = entry.split(" ", 2)[2]
            branch = None if head == "(detached)" else head
        elif entry.startswith(("1 ", "u ")):
            changed.append(entry.split(" ", 8 if entry[0] == "1" else 10)[-1])
        elif entry.startswith("2 "):
            changed.append(entry.split(" ", 9)[-1])
            next(entries, None)  # a rename's original path follows as its own entry
        elif entry.startswith("? "):
            untracked.append(entry[2:])
    return {
        "commit": commit,
        "branch": branch,
        "dirty": bool(changed or untracked),
        "changed_files": changed,
        "untracked_files": untracked[:MAX_UNTRACKED],
        "untracked_count": len(untracked),
    }


def _untracked_patch(repo: Path, names: list[str]) -> tuple[bytes, list[str]]:
    """The small untracked text files as `git apply`-able new-file patches, and their names."""
    parts: list[bytes] = []
    included: list[str] = []
    total = 0
    for name in names:
        if len(included) >= MAX_UNTRACKED_IN_DIFF:
            break
        path = repo / name
        try:
            if path.is_symlink() or not path.is_file():
                continue
            size = path.stat().st_size
            if size > MAX_UNTRACKED_BYTES or total + size > MAX_UNTRACKED_DIFF_BYTES:
                continue
            data = path.read_bytes()
        except OSError:
            continue
        if b"\0" in data:
            continue  # binary: listed by name only
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            continue
        parts.append(new_file_patch(name, data))
        included.append(name)
        total += size
    return b"".join(parts), included


def new_file_patch(name: str, data: bytes) -> bytes:
    """`data` as git's patch creating file `name` (what `git diff` prints for an added file)."""
    header = f"diff --git a/{name} b/{name}\nnew file mode 100644\n".encode()
    if not data:
        return header
    lines = data.split(b"\n")
    ends_with_newline = data.endswith(b"\n")
    if ends_with_newline:
        lines = lines[:-1]
    body = b"".join(b"+" + line + b"\n" for line in lines)
    if not ends_with_newline:
        body += b"\\ No newline at end of file\n"
    hunk = f"--- /dev/null\n+++ b/{name}\n@@ -0,0 +1,{len(lines)} @@\n".encode()
    return header + hunk + body


# ---- packages, versions, host ---------------------------------------------------------------------
def installed_packages() -> list[str]:
    """`name==version` of every distribution on `sys.path` (first one wins, as for imports)."""
    found: dict[str, str] = {}
    for entry in sys.path:
        try:
            names = [e.name for e in os.scandir(entry or ".")]
        except OSError:
            continue
        for name in names:
            if not name.endswith((".dist-info", ".egg-info")):
                continue
            parts = name.rsplit(".", 1)[0].split("-")
            dist, version = parts[0], parts[1] if len(parts) > 1 else ""
            key = dist.lower().replace("_", "-").replace(".", "-")
            if key in found:
                continue
            if not version:  # an egg-info directory named without its version
                version = _metadata_version(dist)
            found[key] = f"{dist}=={version}"
    return sorted(found.values(), key=str.lower)


def _metadata_version(dist: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "unknown"


def _versions() -> dict[str, Any]:
    versions: dict[str, Any] = {
        "python": {"version": platform.python_version(), "implementation": sys.implementation.name}
    }
    try:
        import torch  # already imported by any training run: free here
    except ImportError:
        return {**versions, "torch": None, "gpus": []}
    cuda_available = torch.cuda.is_available()
    versions["torch"] = {
        "version": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if cuda_available else None,
        "cuda_available": cuda_available,
    }
    gpus = []
    if cuda_available:
        try:
            gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        except Exception as err:  # a broken driver must not stop the run here
            gpus = [f"unknown ({err})"]
    versions["gpus"] = gpus
    for name in ("pytorch_lightning", "hydra"):
        module = sys.modules.get(name)
        versions.setdefault("libraries", {})[name] = getattr(module, "__version__", None)
    return versions


def _host() -> dict[str, Any]:
    host = {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
    }
    for var in ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID", "SLURM_PROCID"):
        if os.environ.get(var):
            host[var.lower()] = os.environ[var]
    return host
