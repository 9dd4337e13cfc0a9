"""Run generated recipes through the engines' and tools' own checkers, from the validator venv built by
.ci/recipe-validators.sh (vLLM 0.33.0, SGLang 0.5.23, llama-server b10434, Compose v2.40.3,
kubernetes-validate 1.37.0). Used by the tests; callable by users who built the venv."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

STAMP = ".dshub-validators-v1"
SCRIPTS = Path(__file__).parent / "validators"
K8S_VERSION = "1.33"


def validator_venv() -> Path | None:
    """The venv from $DSHUB_VALIDATORS or ~/.cache/dshub/recipe-validators, if it finished installing."""
    root = Path(os.environ.get("DSHUB_VALIDATORS") or Path.home() / ".cache" / "dshub" / "recipe-validators")
    return root if (root / STAMP).exists() else None


def _python(venv: Path) -> str:
    return str(venv / "bin" / "python")


def _site(venv: Path) -> Path:
    out = subprocess.run([_python(venv), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                         capture_output=True, text=True, check=True)
    return Path(out.stdout.strip())


def _run_script(venv: Path, script: str, items: list[dict[str, Any]], timeout: int = 600) -> list[dict[str, Any]]:
    env = {**os.environ, "VLLM_TARGET_DEVICE": "cpu", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([_python(venv), str(SCRIPTS / script)], input=json.dumps(items), capture_output=True,
                          text=True, timeout=timeout, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"{script} failed (rc {proc.returncode}): {proc.stderr[-2000:]}")
    return json.loads(proc.stdout)


def check_vllm(venv: Path, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """items: {"id", "argv"} with argv after `vllm serve`."""
    return _run_script(venv, "vllm_check.py", items)


def check_sglang(venv: Path, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """items: {"id", "argv"} with argv after `python3 -m sglang.launch_server`."""
    return _run_script(venv, "sglang_check.py", items)


def check_llama_server(venv: Path, args: list[str]) -> str | None:
    """llama-server parses every argument before printing --help: exit 0 means all were accepted."""
    exe = venv / "bin" / "llama-server-vulkan"
    proc = subprocess.run([str(exe), *args, "--help"], capture_output=True, text=True, timeout=60)
    if proc.returncode == 0:
        return None
    errors = [ln for ln in (proc.stderr + proc.stdout).splitlines() if "error" in ln.lower() or "invalid" in ln.lower()]
    return (errors[0] if errors else f"exit {proc.returncode}")[:500]


def _compose(venv: Path, path: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    exe = _site(venv) / "compose" / "docker-compose"  # the real binary; the package's Python wrapper always exits 0
    return subprocess.run([str(exe), "-f", str(path), "config", *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **env}, cwd=path.parent)


def check_compose(venv: Path, path: Path, env: dict[str, str]) -> str | None:
    """Docker Compose v2's own `config -q`: None when the file is valid."""
    proc = _compose(venv, path, env, "-q")
    return None if proc.returncode == 0 else (proc.stderr.strip() or f"exit {proc.returncode}")[:500]


def resolve_compose(venv: Path, path: Path, env: dict[str, str]) -> dict[str, Any]:
    """The model Compose itself builds from the file (variables interpolated), as JSON."""
    proc = _compose(venv, path, env, "--format", "json")
    if proc.returncode != 0:
        raise RuntimeError(f"{path.name}: compose config failed: {proc.stderr.strip()[:500]}")
    return json.loads(proc.stdout)


def check_k8s(venv: Path, paths: list[Path], version: str = K8S_VERSION) -> list[dict[str, Any]]:
    proc = subprocess.run([_python(venv), str(SCRIPTS / "k8s_check.py"), version, *map(str, paths)],
                          capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        raise RuntimeError(f"k8s_check.py failed (rc {proc.returncode}): {proc.stderr[-2000:]}")
    return json.loads(proc.stdout)


if __name__ == "__main__":  # pragma: no cover - manual use: python -m recipes.validate
    print(validator_venv() or "validator venv not built; run .ci/recipe-validators.sh", file=sys.stderr)
