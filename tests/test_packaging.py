"""What `pip install .` puts into site-packages: one import package and the console script."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    out = tmp_path_factory.mktemp("wheel")
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(ROOT)],
        capture_output=True,
        text=True,
        check=False,
    )
    if built.returncode != 0:
        pytest.skip(f"cannot build a wheel here (pip needs setuptools>=68): {built.stderr[-300:]}")
    (path,) = out.glob("cadence_engine-*.whl")
    return zipfile.ZipFile(path)


def test_the_wheel_holds_one_import_package(wheel: zipfile.ZipFile) -> None:
    top = {name.split("/")[0] for name in wheel.namelist()}
    packages = {name for name in top if not name.endswith(".dist-info")}
    assert packages == {"cadence_engine"}
    names = set(wheel.namelist())
    assert "cadence_engine/cli.py" in names
    assert "cadence_engine/schemas/cadence.schema.json" in names
    assert "cadence_engine/engine/py.typed" in names
    assert any(n.startswith("cadence_engine/engine/web/templates/") for n in names)
    assert any(n.startswith("cadence_engine/engine/web/static/") for n in names)
    assert not any(n.startswith("cadence_engine/tests/") for n in names)
    assert not any(n.startswith("cadence_engine/bench/") for n in names)


def test_the_console_script_points_into_the_package(wheel: zipfile.ZipFile) -> None:
    (entry,) = [n for n in wheel.namelist() if n.endswith(".dist-info/entry_points.txt")]
    text = wheel.read(entry).decode()
    assert "cadence = cadence_engine.cli:main" in text
