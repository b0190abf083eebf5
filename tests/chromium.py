"""Headless Chromium driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``): no extra package.

Chromium reads NUL-terminated JSON commands on fd 3 and writes replies and events on fd 4. :class:`Browser` opens a
page, collects console messages, uncaught exceptions, log entries and failed loads, and evaluates JavaScript.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

__all__ = ["Browser", "find_chromium", "require_chromium", "page_images", "CHROMIUM_FLAGS", "LOAD_EVERY_IMAGE"]

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--remote-debugging-pipe",
]


def find_chromium() -> str | None:
    """Debian's ``chromium`` (what .ci/run installs), or None."""
    for name in ("/usr/bin/chromium", shutil.which("chromium"), shutil.which("chromium-browser")):
        if name and Path(name).is_file():
            return name
    return None


# Every <img> brought into view (lazy ones load only then, as for a reader scrolling) and awaited: src and the
# decoded size (0 x 0 for an image that failed).
LOAD_EVERY_IMAGE = """(async () => {
  const imgs = [...document.images];
  for (const img of imgs) {
    img.scrollIntoView();
    if (!img.complete) await new Promise(r => { img.addEventListener('load', r, {once: true}); img.addEventListener('error', r, {once: true}); });
  }
  return imgs.map(i => ({src: i.getAttribute('src'), w: i.naturalWidth, h: i.naturalHeight}));
})()"""


def require_chromium() -> str:
    """Chromium's path; skips the test without it, or fails it where EXLPOSE_REQUIRE_BROWSER is set (.ci/run)."""
    chromium = find_chromium()
    if chromium is None:
        if os.environ.get("EXLPOSE_REQUIRE_BROWSER"):
            pytest.fail("chromium is not installed (.ci/run installs Debian's chromium)")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    return chromium


def page_images(browser: "Browser", page: Path) -> list[dict[str, Any]]:
    """Open ``page`` and return its images as loaded (see :data:`LOAD_EVERY_IMAGE`)."""
    browser.open(page.as_uri())
    return browser.evaluate(LOAD_EVERY_IMAGE)


class Browser:
    """One headless Chromium with a fresh profile, one page; use as a context manager."""

    def __init__(self, executable: str, *, timeout_s: float = 60.0) -> None:
        self._profile = tempfile.mkdtemp(prefix="exlpose-chromium-")
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()
        # The child wants them on fds 3 (its input) and 4 (its output); moved above 10 first so that the two
        # dup2 calls in the child cannot overwrite each other's source.
        child_r, child_w = fcntl.fcntl(to_browser_r, fcntl.F_DUPFD, 10), fcntl.fcntl(from_browser_w, fcntl.F_DUPFD, 10)
        for fd in (to_browser_r, from_browser_w):
            os.close(fd)
        self._proc = subprocess.Popen(
            [executable, *CHROMIUM_FLAGS, f"--user-data-dir={self._profile}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            pass_fds=(3, 4), preexec_fn=lambda: (os.dup2(child_r, 3), os.dup2(child_w, 4)),
        )
        os.close(child_r)
        os.close(child_w)
        self._timeout_s = timeout_s
        self._next_id = 0
        self._buffer = b""
        self.events: list[dict[str, Any]] = []
        self._session: str | None = None

    def __enter__(self) -> "Browser":
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        self._session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Runtime", "Log", "Network", "Page"):
            self.call(f"{domain}.enable")
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            self.call("Browser.close", session=False)
        except Exception:  # noqa: BLE001 - the browser may already be gone; it is killed below either way
            pass
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        os.close(self._to_browser)
        os.close(self._from_browser)
        shutil.rmtree(self._profile, ignore_errors=True)

    def _read_message(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            if time.monotonic() > deadline or self._proc.poll() is not None:
                raise TimeoutError("no reply from Chromium")
            chunk = os.read(self._from_browser, 1 << 16)
            if not chunk:
                raise TimeoutError("Chromium closed the pipe")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(raw)

    def call(self, method: str, params: dict[str, Any] | None = None, *, session: bool = True) -> dict[str, Any]:
        """Send one command and return its result; events received meanwhile go to :attr:`events`."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session and self._session:
            message["sessionId"] = self._session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + self._timeout_s
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            if "method" in reply:
                self.events.append(reply)

    def open(self, url: str) -> None:
        """Navigate and wait for this navigation's load event (an earlier page's must not count)."""
        first = len(self.events)
        self.call("Page.navigate", {"url": url})
        deadline = time.monotonic() + self._timeout_s
        while not any(e.get("method") == "Page.loadEventFired" for e in self.events[first:]):
            self.events.append(self._read_message(deadline))

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression (promises awaited)."""
        result = self.call("Runtime.evaluate", {"expression": expression, "awaitPromise": True, "returnByValue": True})
        if "exceptionDetails" in result:
            raise RuntimeError(f"JavaScript failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def problems(self) -> list[str]:
        """Console errors and warnings, uncaught exceptions, error log entries and failed loads so far."""
        out = []
        for e in self.events:
            method, params = e.get("method"), e.get("params", {})
            if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "warning", "assert"):
                out.append(f"console.{params['type']}: {[a.get('value', a.get('description')) for a in params.get('args', [])]}")
            elif method == "Runtime.exceptionThrown":
                out.append(f"exception: {params['exceptionDetails'].get('text')} {params['exceptionDetails'].get('exception', {}).get('description', '')}")
            elif method == "Log.entryAdded" and params["entry"].get("level") in ("error", "warning"):
                out.append(f"log {params['entry']['level']}: {params['entry'].get('text')} {params['entry'].get('url', '')}")
            elif method == "Network.loadingFailed":
                out.append(f"load failed: {params.get('errorText')} ({params.get('type')})")
        return out
