"""What `pip install .` installs: one import name (`dshub`), every package and data file the source tree holds, and
nothing importable as `converters`, `quant` or `recipes` in a fresh environment."""
from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.support.import_graph import package_dirs, setuptools_config
from tests.support.tools import REPO_ROOT

DATA_SUFFIXES = (".yaml", ".yml", ".json", ".jinja", ".c")  # .c: the native kernels, compiled on first use
SKIP = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build", "dist", "*.dshub-tmp")


def source_packages() -> dict[str, Path]:
    """Package name -> folder, for every folder holding an __init__.py under the package-dir roots."""
    found: dict[str, Path] = {}
    for name, root in package_dirs().items():
        for init in root.rglob("__init__.py"):
            rel = init.parent.relative_to(root).parts
            found[".".join((name, *rel))] = init.parent
    return found


def wheel_path(module_file: Path) -> str:
    """Where a source file lands in the wheel (pyproject's package-dir applied, longest mapping first)."""
    for name, root in sorted(package_dirs().items(), key=lambda kv: -len(kv[0])):
        if module_file.is_relative_to(root):
            return "/".join((*name.split("."), *module_file.relative_to(root).parts))
    raise AssertionError(f"{module_file} is under no package-dir root")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel built from a copy of the working tree (the checkout's own build/ folder cannot leak stale files in)."""
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO_ROOT / name, src / name)
    for root in {p.relative_to(REPO_ROOT).parts[0] for p in package_dirs().values()}:
        shutil.copytree(REPO_ROOT / root, src / root, ignore=SKIP)
    dist = tmp_path_factory.mktemp("dist")
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
                        str(src), "-w", str(dist)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    (whl,) = dist.glob("dshub-*.whl")
    return whl


def names_in(whl: Path) -> list[str]:
    with zipfile.ZipFile(whl) as z:
        return z.namelist()


def test_pyproject_lists_every_package_folder() -> None:
    listed = setuptools_config()["packages"]
    assert len(listed) == len(set(listed)), "a package is listed twice"
    assert sorted(listed) == sorted(source_packages())


def test_every_folder_of_modules_is_a_package() -> None:
    """A folder of .py files without __init__.py would be left out of the explicit packages list, and the wheel."""
    bare = sorted(str(d.relative_to(REPO_ROOT)) for root in package_dirs().values() for d in [root, *root.rglob("*")]
                  if d.is_dir() and d.name != "__pycache__" and any(d.glob("*.py")) and not (d / "__init__.py").exists())
    assert not bare, f"folders with modules but no __init__.py: {bare}"


def test_wheel_installs_one_import_name(wheel: Path) -> None:
    names = names_in(wheel)
    (dist_info,) = {n.split("/")[0] for n in names if n.split("/")[0].endswith(".dist-info")}
    assert {n.split("/")[0] for n in names} == {"dshub", dist_info}
    with zipfile.ZipFile(wheel) as z:
        assert z.read(f"{dist_info}/top_level.txt").decode().split() == ["dshub"]
        record = z.read(f"{dist_info}/RECORD").decode().splitlines()
    assert {line.split("/")[0] for line in record if line} == {"dshub", dist_info}


def test_wheel_holds_every_module_and_data_file(wheel: Path) -> None:
    names = set(names_in(wheel))
    files = [p for root in package_dirs().values() for p in root.rglob("*")
             if p.is_file() and "__pycache__" not in p.parts and p.suffix in (".py", *DATA_SUFFIXES)]
    data = [p for p in files if p.suffix in DATA_SUFFIXES]
    assert any(p.parent.name == "policies" for p in data), "the GGUF policy presets were not found in the source tree"
    missing = sorted(wheel_path(p) for p in files if wheel_path(p) not in names)
    assert not missing, f"in the source tree but not in the wheel: {missing}"


def test_fresh_venv_has_dshub_and_no_other_name(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    r = subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "--no-index", "-q",
                        str(wheel)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    check = (
        "import importlib.util as u, sys\n"
        "for name in ('converters', 'quant', 'recipes'):\n"
        "    assert u.find_spec(name) is None, (name, u.find_spec(name))\n"
        "print(u.find_spec('dshub').origin)\n"
    )
    r = subprocess.run([str(py), "-I", "-c", check], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    origin = Path(r.stdout.strip())
    assert origin.name == "__init__.py" and venv in origin.parents
    site = {p.name for p in origin.parent.parent.iterdir()}
    assert site == {"dshub", wheel.name.split("-py3")[0] + ".dist-info"}, site
    for sub in ("converters", "quant", "recipes"):
        assert (origin.parent / sub / "__init__.py").is_file(), sub
    r = subprocess.run([str(py), "-I", "-c", "import converters"], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert r.returncode == 1 and "No module named 'converters'" in r.stderr
