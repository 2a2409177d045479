"""The package builds (sdist and wheel, with its type marker) and installs
with pip into a fresh virtual environment, where it imports."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]


def run(*args: str) -> None:
    done = subprocess.run(args, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_sdist_and_wheel_build_and_pip_installs_it_in_a_fresh_venv(tmp_path: Path) -> None:
    out = tmp_path / "dist"
    run(sys.executable, "-m", "build", "--sdist", "--wheel", "--outdir", str(out), str(HERE))
    wheels = list(out.glob("tollgate-*.whl"))
    assert len(wheels) == 1 and list(out.glob("tollgate-*.tar.gz"))
    names = zipfile.ZipFile(wheels[0]).namelist()
    assert "tollgate/py.typed" in names and "tollgate/surface.py" in names
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", str(venv))
    python = str(venv / "bin/python")
    run(python, "-m", "pip", "install", "--quiet", str(HERE))
    run(python, "-c", "import tollgate, tollgate.surface; assert tollgate.Client")
