"""`make run`'s serving step (`make serve`: a Celery worker in the background, the web server in the foreground),
with stand-ins for both (SERVE_WORKER, SERVE_SERVER): Ctrl-C on a terminal, the normal way to stop it, ends make
with status 0 and stops the worker; a real failure of the web server still fails make, the worker stopped too.

make runs on a pseudo-terminal as in a terminal's foreground (its own session), and Ctrl-C is typed on it, so the
terminal driver sends SIGINT to the foreground process group as it would to a person's `make run`.
"""
from __future__ import annotations

import os
import re
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("make") is None or not hasattr(os, "fork"),
                                 reason="needs make and a POSIX terminal")]

# The worker: says when its SIGTERM handler is in place (the server waits for that), and that it was stopped.
WORKER = """
import pathlib, signal, sys, time
def stop(*_):
    print("worker: stopped", flush=True)
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
pathlib.Path("worker.ready").touch()
time.sleep(60)
"""
# The web server: "exit N" exits N at once; "django" waits for Ctrl-C and exits 0, as runserver does; "dies" waits
# and dies of the SIGINT (Python's own exit on an uncaught KeyboardInterrupt: Ctrl-C before runserver's loop).
SERVER = """
import pathlib, sys, time
while not pathlib.Path("worker.ready").exists():
    time.sleep(0.02)
if sys.argv[1] == "exit":
    sys.exit(int(sys.argv[2]))
if sys.argv[1] == "dies":
    print("server: ready", flush=True)
    time.sleep(60)
try:  # Ctrl-C may come as soon as "ready" is out, while print still runs: inside the try too
    print("server: ready", flush=True)
    time.sleep(60)
except KeyboardInterrupt:
    print("server: stopped by Ctrl-C", flush=True)
    sys.exit(0)
"""


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "var").mkdir()
    (tmp_path / "worker.py").write_text(WORKER)
    (tmp_path / "server.py").write_text(SERVER)
    return tmp_path


def make_serve(*server: str) -> list[str]:
    python = sys.executable
    return ["make", "-f", str(REPO / "Makefile"), "--no-print-directory", "serve", f"PYTHON={python}",
            f"SERVE_WORKER={python} -u worker.py", f"SERVE_SERVER={python} -u server.py {' '.join(server)}"]


def on_a_terminal(args: list[str], *, cwd: Path, ctrl_c: bool, timeout: float = 60) -> tuple[str, int]:
    """Run ``args`` on a pseudo-terminal in ``cwd``; with ``ctrl_c`` type Ctrl-C once the server says it is ready.
    Returns its output and its exit status as a shell gives it (128 + N when killed by signal N)."""
    import pty

    pid, fd = pty.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.chdir(cwd)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            # a make of its own, as a user's at a terminal: not a sub-make of `make test` (CI), which would say
            # "make[1]" and pass its flags on
            env = {k: v for k, v in os.environ.items() if k not in ("MAKELEVEL", "MAKEFLAGS", "MFLAGS")}
            os.execvpe(args[0], args, env)
        finally:
            os._exit(127)
    output, deadline, typed = b"", time.monotonic() + timeout, False
    try:
        while time.monotonic() < deadline:
            if ctrl_c and not typed and b"server: ready" in output:
                os.write(fd, b"\x03")
                typed = True
            ready, _, _ = select.select([fd], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(fd, 4096)
                except OSError:  # the terminal closed: everything on it has exited
                    break
                if not chunk:
                    break
                output += chunk
        else:
            os.killpg(pid, signal.SIGKILL)
            pytest.fail(f"{' '.join(args)} did not end within {timeout} s: {output.decode(errors='replace')}")
        _, status = os.waitpid(pid, 0)
    finally:
        os.close(fd)
    code = os.waitstatus_to_exitcode(status)
    return output.decode(errors="replace").replace("\r\n", "\n"), 128 - code if code < 0 else code


def assert_worker_stopped(output: str, folder: Path) -> None:
    assert "worker: stopped" in (folder / "var" / "worker.log").read_text()
    pid = int(re.search(r"worker pid (\d+)", output).group(1))
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_ctrl_c_stops_the_server_and_the_worker_and_make_exits_0(folder):
    output, status = on_a_terminal(make_serve("django"), cwd=folder, ctrl_c=True)
    assert status == 0, output
    assert "server: stopped by Ctrl-C" in output and "make: ***" not in output
    assert_worker_stopped(output, folder)


@pytest.mark.skipif(os.path.realpath("/bin/sh").endswith("bash"),
                    reason="bash as /bin/sh ends a job-control script whose foreground job died of a trapped SIGINT "
                           "with status 1")
def test_ctrl_c_that_kills_the_server_by_sigint_still_exits_0(folder):
    output, status = on_a_terminal(make_serve("dies"), cwd=folder, ctrl_c=True)
    assert status == 0, output
    assert "KeyboardInterrupt" in output and "make: ***" not in output
    assert_worker_stopped(output, folder)


def test_a_failing_server_fails_make_and_the_worker_is_stopped(folder):
    output, status = on_a_terminal(make_serve("exit", "1"), cwd=folder, ctrl_c=False)
    assert status == 2, output  # make's status for a failed recipe
    assert "the web server exited with status 1 (the worker is stopped)" in output
    assert re.search(r"make: \*\*\* \[.*Makefile:\d+: serve\] Error 1", output)
    assert_worker_stopped(output, folder)


@pytest.mark.parametrize(("server_status", "make_status"), [(0, 0), (1, 2)])
def test_without_a_terminal_the_servers_status_decides(folder, server_status, make_status):
    # make run > log < /dev/null, or from a script: no job control, the same statuses
    result = subprocess.run(make_serve("exit", str(server_status)), cwd=folder, stdin=subprocess.DEVNULL,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == make_status, result.stdout + result.stderr
    assert_worker_stopped(result.stdout, folder)
