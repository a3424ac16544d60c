"""A real `cadence serve` in a child process, and headless Debian Chromium for it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.runner_env import ROOT

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def serve_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "cadence_engine.cli", "serve", *args]


@contextmanager
def serving(
    env: dict[str, str], *args: str, prefix: str = "", host: str = "127.0.0.1"
) -> Iterator[str]:
    """`cadence serve` on a free port of the loopback `host`; yields its base URL once it
    listens (CADENCE_BASE_URL is that address, plus `prefix` as a proxy's path would be)."""
    port = free_port(host)
    address = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
    base = address + prefix
    child = subprocess.Popen(
        serve_command("--host", host, "--port", str(port), *args),
        env={**os.environ, **env, "CADENCE_BASE_URL": base},
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert child.stdout is not None
        first = child.stdout.readline()
        if not first.startswith(f"Command Center on {address}"):
            child.kill()  # (reading the rest of a server that runs on would never end)
            raise AssertionError(first + child.communicate(timeout=30)[0])
        yield base
        child.send_signal(signal.SIGTERM)
        rest = child.communicate(timeout=30)[0]
        assert child.returncode == 0, f"cadence serve ended {child.returncode} on SIGTERM: {rest}"
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        if child.stdout is not None:
            child.stdout.close()


@contextmanager
def chromium_page() -> Iterator[Any]:
    """A page in headless Debian Chromium driven by Playwright; skipped without them."""
    if not Path(CHROMIUM).exists():
        pytest.skip("needs Debian's Chromium at /usr/bin/chromium: apt-get install chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("needs Playwright for Python: pip install -e '.[dev]'")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 860})
            page.set_default_timeout(20_000)
            yield page
        finally:
            browser.close()
