"""Starting an OpenAI-compatible server as a child process and waiting until it answers.

Used for the servers swirl starts itself (``--rollout vllm``) and for the real servers of the
integration tests (llama.cpp, vLLM). The server's output goes to a log file whose path every
error names; the process is stopped (SIGTERM, then SIGKILL) when the context exits.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class ServerFailedError(RuntimeError):
    """The server process exited or did not answer in time; the message names its log."""


def _die_with_parent() -> None:
    """In the child: ask Linux to send it SIGTERM when swirl dies, even by SIGKILL, so no server
    outlives the run that started it (a no-op elsewhere)."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def _log_tail(log: Path, lines: int = 15) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


@contextmanager
def serve(
    command: Sequence[str],
    url: str,
    log: Path,
    *,
    env: Mapping[str, str] | None = None,
    startup_timeout: float = 600.0,
) -> Iterator[subprocess.Popen]:
    """Run ``command`` until ``{url}/models`` answers 200, yield the process, stop it at exit.

    ``url`` is the API root (``http://127.0.0.1:PORT/v1``); ``log`` receives stdout and stderr;
    ``env`` entries are added to this process's environment. Raises :class:`ServerFailedError`
    (with the log's last lines) when the process exits or ``startup_timeout`` seconds pass.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as sink:
        process = subprocess.Popen(
            list(command),
            stdout=sink,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=True,  # a Ctrl-C in the terminal reaches swirl, which stops it
            preexec_fn=_die_with_parent,
        )
    try:
        deadline = time.monotonic() + startup_timeout
        while True:
            if process.poll() is not None:
                raise ServerFailedError(
                    f"{command[0]} exited with {process.returncode} while starting; "
                    f"log {log}:\n{_log_tail(log)}"
                )
            try:
                if httpx.get(f"{url}/models", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise ServerFailedError(
                    f"no answer from {url} after {startup_timeout:g} s; log {log}:\n"
                    f"{_log_tail(log)}"
                )
            time.sleep(0.5)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
