"""`pip wheel .` gives a wheel that installs into a fresh venv, imports and parses natively."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_installs_into_fresh_venv(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", str(ROOT), "-w", str(dist)],
        check=True,
        env=env,
    )
    (wheel,) = dist.glob("swirl-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert any(n.startswith("swirl/_native") and n.endswith(".so") for n in names)
    assert "swirl/_native.pyi" in names and "swirl/kernels/target_logprobs.py" in names
    # kernels/ ships as the namespace package swirl.kernels: no __init__.py, so that the top-level
    # directory never shadows an installed distribution named ``kernels`` (test_import_shadowing).
    assert "swirl/kernels/__init__.py" not in names

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    # Only what the import below needs: the full dependency set (torch...) is not the point here.
    pip = [str(python), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, "msgspec", "numpy"], check=True, env=env)
    subprocess.run([*pip, "--no-deps", str(wheel)], check=True, env=env)
    code = (
        "import swirl, swirl._native;"
        "a = swirl.parse_action('t <answer>42</answer>');"
        "assert (a.kind, a.payload) == ('answer', '42'), a;"
        "import importlib.util as u;"
        "assert u.find_spec('swirl.kernels.target_logprobs').origin.startswith(swirl.__path__[0]);"
        "print(swirl._native.__file__)"
    )
    out = subprocess.run(
        [str(python), "-c", code], check=True, capture_output=True, text=True, cwd=tmp_path
    ).stdout
    assert str(venv) in out
