"""No directory at the repo root shadows an installed distribution of the same name.

``python -m pytest`` and ``python`` run from the repo root put the root first on ``sys.path``.
The top-level ``kernels/`` (shipped as ``swirl.kernels``) must therefore not be a regular package:
transformers >= 5.25 imports Hugging Face's ``kernels`` distribution, and a regular package at the
root would win over it. As a namespace portion (no ``__init__.py``) it loses to any regular
package found later on the path, wherever the interpreter starts.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_repo_kernels_dir_does_not_shadow_an_installed_kernels_distribution(tmp_path: Path) -> None:
    # A stand-in distribution named ``kernels`` in a site directory that comes after the current
    # directory on sys.path, exactly where site-packages comes.
    site = tmp_path / "site"
    package = site / "kernels"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("CUDAProperties = 'installed'\n")
    (site / "kernels-9.9.9.dist-info").mkdir()
    (site / "kernels-9.9.9.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: kernels\nVersion: 9.9.9\n"
    )
    code = "import sys, kernels; print(sys.path[0] == '', kernels.__file__)"
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"},
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    assert out[0] == "True", "the check needs the repo root (the current directory) on sys.path"
    assert Path(out[1]).resolve() == (package / "__init__.py").resolve(), (
        f"`import kernels` from the repo root resolved to {out[1]}, not the installed distribution"
    )


def test_swirl_kernels_still_imports_from_the_top_level_directory() -> None:
    import swirl.kernels.target_logprobs as module

    assert Path(module.__file__).resolve().parent == ROOT / "kernels"
