"""px4_msgs for the PX4 tests: built from test/px4_msgs (PX4's own message definitions) with the rosidl
generators installed by the `test` extra, once per fixture content, into .venv/px4_msgs-<hash>."""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

SOURCE = Path(__file__).resolve().parent / "px4_msgs"


def build_px4_msgs() -> Path:
    """→ the install prefix (its lib/python3.X/site-packages holds px4_msgs). Raises RuntimeError with
    what is missing (cmake, a compiler, the generators) or the build log's tail."""
    missing = [tool for tool in ("cmake", "c++", "cc") if shutil.which(tool) is None]
    if missing:
        raise RuntimeError(f"building px4_msgs needs {missing} (apt-get install cmake g++)")
    venv = Path(sys.prefix)
    if not (venv / "share" / "rosidl_default_generators").is_dir():
        raise RuntimeError("building px4_msgs needs the rosidl generators: pip install -e '.[test]'")
    files = sorted(p for p in SOURCE.rglob("*") if p.is_file())
    digest = hashlib.sha256(b"".join(p.name.encode() + p.read_bytes() for p in files)).hexdigest()[:12]
    prefix = venv / f"px4_msgs-{digest}"
    if (prefix / ".built").is_file():
        return prefix
    shutil.rmtree(prefix, ignore_errors=True)
    env = dict(os.environ, AMENT_PREFIX_PATH=str(venv), PATH=f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}")
    build = prefix / "build"
    steps = [["cmake", "-S", str(SOURCE), "-B", str(build), f"-DCMAKE_PREFIX_PATH={venv}",
              f"-DCMAKE_INSTALL_PREFIX={prefix}", f"-DPython3_EXECUTABLE={sys.executable}", "-DBUILD_TESTING=OFF",
              # the generated modules find their libraries without LD_LIBRARY_PATH
              f"-DCMAKE_INSTALL_RPATH={prefix / 'lib'}", "-DCMAKE_BUILD_WITH_INSTALL_RPATH=ON"],
             ["cmake", "--build", str(build), "-j2"], ["cmake", "--install", str(build)]]
    for cmd in steps:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if proc.returncode:
            raise RuntimeError(f"{' '.join(cmd[:2])} failed:\n{(proc.stdout + proc.stderr)[-3000:]}")
    (prefix / ".built").write_text("ok\n")
    return prefix


def site_packages(prefix: Path) -> Path:
    return prefix / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
