"""Small helpers for starting and waiting on local processes."""

from __future__ import annotations

import ctypes
import socket
import time
from collections.abc import Callable


class InfraError(RuntimeError):
    """Local infrastructure could not be obtained, started or stopped; the message says why."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``condition`` until it holds; raise ``InfraError`` naming ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise InfraError(f"{what} was not ready within {timeout:.0f} s")
        time.sleep(0.05)


def die_with_parent(sig: int) -> Callable[[], None]:
    """A ``preexec_fn`` that has the kernel send ``sig`` to the child when its parent dies, so a
    test run killed without cleanup leaves no broker or database behind (Linux only)."""

    def bind() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, sig) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")

    return bind


PR_SET_PDEATHSIG = 1
