"""Child processes of the local stack: free ports, log files, readiness polling, clean stops.

Every server the stack starts runs in its own session (process group), writes its output to a
log file whose path appears in every error, and is stopped with SIGTERM, then SIGKILL, so
nothing outlives the test session or the demo.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType


class StackError(RuntimeError):
    """A component of the local stack could not be built or started; the message says why."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def tail(path: Path, lines: int = 30) -> str:
    """The last lines of a log file, for error messages."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log written)"


class ManagedProcess:
    """A server process with its own process group and a log file.

    Use as a context manager, or call :meth:`stop` explicitly; stopping twice is harmless.
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        *,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as log:
            self._popen = subprocess.Popen(
                list(argv),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **(env or {})},
                cwd=cwd,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        return self._popen.pid

    def running(self) -> bool:
        return self._popen.poll() is None

    @property
    def exit_code(self) -> int | None:
        """The exit status once the process has ended (negative: the signal), else None."""
        return self._popen.poll()

    def wait_until(
        self, ready: Callable[[], bool], *, timeout: float, what: str, interval: float = 0.2
    ) -> None:
        """Poll ``ready`` until it returns true; fail with the log's tail if the process dies
        or the timeout passes."""
        deadline = time.monotonic() + timeout
        while True:
            if not self.running():
                raise StackError(
                    f"{self.name} exited with code {self._popen.returncode} before {what}; "
                    f"log: {self.log_path}\n{tail(self.log_path)}"
                )
            if ready():
                return
            if time.monotonic() > deadline:
                raise StackError(
                    f"{self.name} did not reach '{what}' within {timeout:.0f} s; "
                    f"log: {self.log_path}\n{tail(self.log_path)}"
                )
            time.sleep(interval)

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM the process group, then SIGKILL it if it has not exited within ``timeout``."""
        if not self.running():
            return
        self._signal_group(signal.SIGTERM)
        try:
            self._popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self._signal_group(signal.SIGKILL)
            self._popen.wait(timeout)

    def kill(self) -> None:
        """SIGKILL the process group at once (fault tests: a crash, not a shutdown)."""
        if self.running():
            self._signal_group(signal.SIGKILL)
            self._popen.wait(15.0)

    def _signal_group(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._popen.pid, signum)

    def __enter__(self) -> ManagedProcess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def run_logged(
    argv: Sequence[str],
    log_path: Path,
    *,
    what: str,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float | None = None,
) -> None:
    """Run a build or setup command to completion, its output appended to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        result = subprocess.run(
            list(argv),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=cwd,
            env={**os.environ, **(env or {})},
            timeout=timeout,
            check=False,
        )
    if result.returncode != 0:
        raise StackError(
            f"{what} failed with exit code {result.returncode}; log: {log_path}\n{tail(log_path)}"
        )
