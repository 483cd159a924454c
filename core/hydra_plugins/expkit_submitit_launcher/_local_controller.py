"""The process that runs one job of `hydra/launcher=submitit_local`: submitit's own controller,
plus two things its launcher needs (`local.py`).

    python -m hydra_plugins.expkit_submitit_launcher._local_controller <submitit_folder>

- It writes how the job's tasks ended (`<folder>/<job id>_exit.json`: their exit codes, negative
  for a signal, and whether the time limit stopped them): submitit's controller keeps that to
  itself, so a launcher could only say "no result".
- It stops the tasks at the per-job time limit (`TOLERANT_JOB_TIMEOUT_S`, from
  `hydra.launcher.job_timeout_s`) with SIGKILL, which ends a stopped (SIGSTOP) process too.

submitit's own time limit (`timeout_min`: USR2 `signal_delay_s` before it, then the job is
requeued, as on SLURM) works as before. An underscore module: Hydra's plugin scan skips it.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
import typing as tp
from pathlib import Path

from submitit.local.local import Controller, LocalJobEnvironment

ENV_TIMEOUT = "TOLERANT_JOB_TIMEOUT_S"


def exit_file(folder: Path, job_id: str) -> Path:
    """`<folder>/<job id>_exit.json`, `%j` in `folder` read as the job id (as submitit does)."""
    return Path(str(folder).replace("%j", str(job_id))) / f"{job_id}_exit.json"


class RecordingController(Controller):
    """submitit's Controller that records its tasks' exit codes and enforces the time limit."""

    def __init__(self, folder: Path) -> None:
        super().__init__(folder)
        limit = os.environ.get(ENV_TIMEOUT, "")
        self.job_timeout_s = float(limit) if limit else math.inf
        self.started = time.monotonic()
        self.timed_out = False

    def wait(self, freq: int = 24) -> tp.Sequence[int | None]:
        """As submitit's `wait` (USR2 before `timeout_min`, return at it), plus the time limit."""
        assert self.tasks, "Nothing to do!"
        deadline = time.monotonic() + self.timeout_s
        signal_at = deadline - self.signal_delay_s
        signalled = False
        while time.monotonic() < deadline:
            codes = [t.poll() for t in self.tasks]
            if all(c is not None for c in codes):
                return self._record(codes)
            if time.monotonic() - self.started >= self.job_timeout_s:
                self.timed_out = True
                for task in self.tasks:
                    if task.poll() is None:
                        task.kill()
                return self._record([t.wait() for t in self.tasks])
            if not signalled and time.monotonic() >= signal_at:
                signalled = True
                self._forward_signal(LocalJobEnvironment._usr_sig())
            time.sleep(1.0 / freq)
        return self._record([t.poll() for t in self.tasks])

    def _record(self, codes: list[int | None]) -> list[int | None]:
        path = exit_file(self.folder, self.pid)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        payload = {"exit_codes": codes, "timed_out": self.timed_out}
        if self.timed_out:
            payload["job_timeout_s"] = self.job_timeout_s
        try:
            tmp.write_text(json.dumps(payload))
            tmp.replace(path)
        except OSError as err:  # a full disk: the launcher then says only "no result"
            sys.stderr.write(f"could not record the job's exit codes in {path}: {err}\n")
        return codes


if __name__ == "__main__":
    assert len(sys.argv) == 2, "Usage: _local_controller.py <submitit_folder>"
    RecordingController(Path(sys.argv[1])).run()
