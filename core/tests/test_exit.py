"""The command line's exit skips only the interpreter's teardown (`core/expkit/run/exit.py`): what a normal
exit does for Python code still happens, and the exit status is the one `sys.exit` would give."""

import pytest

from helpers import run_cli

CHILD = """
import atexit, sys, threading, time
from pathlib import Path
from expkit.run.exit import exit_after_run
out = Path(sys.argv[1])
def late_writer():
    time.sleep(0.3)
    (out / "thread.txt").write_text("joined")
threading.Thread(target=late_writer).start()       # a non-daemon thread still working
atexit.register(lambda: (out / "atexit.txt").write_text("ran"))
from concurrent.futures import ThreadPoolExecutor  # its idle worker waits for threading's exit hook
pool = ThreadPoolExecutor(1)                      # (joblib's executors work alike): no hang
_ = pool.submit(time.sleep, 0.1)
sys.stdout.write("buffered, no newline")          # still in the buffer at exit
exit_after_run({code})
"""


@pytest.mark.parametrize(
    ("code", "status", "stderr"),
    [("None", 0, ""), ("143", 143, ""), ("'one line for the user'", 1, "one line for the user\n")],
)
def test_exit_runs_threads_atexit_and_flushes_with_the_sys_exit_status(
    tmp_path, code, status, stderr
):
    proc = run_cli(["-c", CHILD.format(code=code), str(tmp_path)], timeout=60)
    assert proc.returncode == status, proc.stderr
    assert proc.stdout == "buffered, no newline" and proc.stderr == stderr
    assert (tmp_path / "thread.txt").read_text() == "joined"
    assert (tmp_path / "atexit.txt").read_text() == "ran"
