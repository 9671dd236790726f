"""A real browser for kvmnet serve's tests and bench: Playwright for Python driving
Debian's chromium package (scripts/setup installs it; Playwright downloads no browser),
and `kvmnet serve` as a process of its own, its URL read from what it prints."""

from __future__ import annotations

import ctypes
import os
import re
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
KVMNET = str(Path(sys.executable).parent / "kvmnet")
PR_SET_PDEATHSIG = 1
URL_RE = re.compile(r"kvmnet serve: (https?://\S+?/)(\?token=(\S+))?\s")


def launch(playwright: object) -> object:
    """Chromium from Debian's package, headless."""
    return playwright.chromium.launch(  # type: ignore[attr-defined]
        executable_path=CHROMIUM, args=CHROMIUM_ARGS)


def _die_with_parent() -> None:
    """In the child: SIGTERM when the test process ends, however it ends (a killed
    pytest leaves no server behind; `ip netns exec` keeps it across its exec)."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class Served:
    """`kvmnet serve ARGS` running until stop(): .url, .token (None on loopback)."""

    def __init__(self, args: Sequence[str], prefix: Sequence[str] = (),
                 timeout: float = 30.0) -> None:
        self.argv = [*prefix, KVMNET, "serve", *args]
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     start_new_session=True, preexec_fn=_die_with_parent)
        self.url, self.token, self.lines = "", None, []
        assert self.proc.stderr is not None
        fd = self.proc.stderr.fileno()
        deadline = time.monotonic() + timeout
        text = ""
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.1)
            chunk = os.read(fd, 65536) if ready else b""
            text += chunk.decode(errors="replace")
            m = URL_RE.search(text)
            if m:
                self.url, self.token = m.group(1), m.group(3)
                self.lines = text.splitlines()
                threading.Thread(target=self._drain, args=(fd,), daemon=True).start()
                return
            if ready and not chunk:   # EOF: serve exited
                break
        self.stop()
        raise RuntimeError(f"kvmnet serve did not start: {self.argv}\n{text}")

    def _drain(self, fd: int) -> None:
        """Keep reading what serve says (a full pipe would stop it); kept in .lines."""
        while chunk := os.read(fd, 65536):
            self.lines += chunk.decode(errors="replace").splitlines()

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)   # our own session: serve and its kids
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)

    def __enter__(self) -> Served:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
