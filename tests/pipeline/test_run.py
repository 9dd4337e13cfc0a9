"""`dshub run PIPELINE.yaml` end to end against the loopback fake hub: download -> verify -> BF16 + INT4 + GGUF
Q4_K_M -> recipe, run twice (the second does no work), one output corrupted (exactly its step is redone)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from dshub.pipeline.report import REPORT_NAME
from tests.support.fakehub import REPO, TEST_TOKEN
from tests.support.pipelines import PIPELINE, STEPS



def run_json(cli, *args: str) -> dict:
    r = cli("run", *args, "--json")
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


@pytest.fixture
def gated_pipeline(hub, repo_files, tmp_path, monkeypatch) -> Path:
    hub.add_repo(REPO, repo_files, gated=True)
    monkeypatch.setenv("HF_TOKEN", TEST_TOKEN)
    path = tmp_path / "pipeline.yaml"
    path.write_text(PIPELINE)
    return path


def test_pipeline_runs_then_skips_then_redoes_exactly_the_corrupted_step(cli, hub, gated_pipeline, repo_files):
    first = run_json(cli, gated_pipeline)
    assert first["order"] == STEPS and first["ran"] == STEPS and first["ok"]
    work = gated_pipeline.parent / "work"
    report_text = (work / REPORT_NAME).read_text()
    assert TEST_TOKEN not in report_text and "${HF_TOKEN}" in report_text  # the reference, never the token
    report = json.loads(report_text)
    gguf = work / "q4" / next(iter(report["steps"]["q4"]["outputs"]["files"]))
    assert gguf.suffix == ".gguf" and (work / "serve" / "serve.sh").is_file()
    for name in ("bf16", "int4", "q4"):  # the report's digests are the files' digests, its inputs the download's
        step = report["steps"][name]
        assert step["inputs"] == {"step": "fetch", "digest": report["steps"]["fetch"]["outputs"]["digest"]}
        assert step["options"]["convert"]["input"] == "fetch" and step["seconds"] >= 0
    assert set(report["steps"]["fetch"]["outputs"]["files"]) == set(repo_files)
    assert hub.bytes_sent() == sum(len(v) for v in repo_files.values())

    hub.clear_log()
    second = run_json(cli, gated_pipeline)
    assert second["ran"] == [] and {s["status"] for s in second["steps"].values()} == {"skipped"}
    assert hub.gets() == []  # no file fetched again
    r = cli("run", gated_pipeline)
    assert r.exit_code == 0 and "nothing to do: all 6 steps unchanged and verified" in r.stdout

    before = gguf.read_bytes()
    with open(gguf, "r+b") as f:  # one byte of the GGUF's data changed, size kept
        f.seek(len(before) - 100)
        f.write(bytes([before[-100] ^ 0xFF]))
    third = run_json(cli, gated_pipeline)
    assert third["ran"] == ["q4"]
    assert "does not match its recorded sha256" in third["steps"]["q4"]["reason"]
    assert gguf.read_bytes() == before  # redone, the same bytes as the first run
    assert third["steps"]["q4"]["outputs"]["digest"] == report["steps"]["q4"]["outputs"]["digest"]


def test_dry_run_plans_every_step_before_any_weight_moves(cli, hub, gated_pipeline, repo_files):
    doc = run_json(cli, gated_pipeline, "--dry-run")
    steps = doc["steps"]
    assert steps["fetch"]["plan"]["to_download"] == sum(len(v) for v in repo_files.values())
    for name in ("bf16", "int4", "q4"):
        assert steps[name]["plan"]["writes"] > 0 and "planned_from" in steps[name]["plan"]
    assert steps["serve"]["plan"]["layout"] is not None
    assert {e.file for e in hub.gets()} <= {"config.json"}  # the config alone, to size the conversions
    assert doc["plan"]["peak_disk"] == sum(s["plan"]["writes"] for s in steps.values())
    assert not (gated_pipeline.parent / "work").exists()
    r = cli("run", gated_pipeline, "--dry-run")
    assert r.exit_code == 0 and "disk at the peak" in r.stdout and "refused" not in r.stdout


def test_dry_run_names_the_layouts_a_recipe_step_refuses(cli, tiny_ckpt, tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(f"source: {{path: {tiny_ckpt}}}\nsteps:\n  - name: serve\n    recipe: {{input: source, gpu: h200}}\n")
    r = cli("run", path, "--dry-run")
    assert r.exit_code == 0, r.output
    assert "refused TP8" in r.stdout and "not divisible by attention TP 8" in r.stdout


def test_a_failed_verify_stops_the_pipeline_exit_1(cli, tiny_copy, tmp_path):
    (tiny_copy / "model-00002-of-00009.safetensors").write_bytes(b"\0" * 10)
    path = tmp_path / "p.yaml"
    path.write_text(f"source: {{path: {tiny_copy}}}\nsteps:\n  - name: check\n    verify: {{input: source}}\n"
                    "  - name: bf16\n    convert: {input: source, to: bf16, after: [check]}\n")
    r = cli("run", path)
    assert r.exit_code == 1 and "step check:" in r.stderr
    report = json.loads((tmp_path / "dshub-work" / REPORT_NAME).read_text())
    assert report["steps"]["check"]["status"] == "failed" and "bf16" not in report["steps"]


def test_schema_is_json_schema_of_the_pipeline_file(cli):
    schema = run_json(cli, "--schema")
    assert schema["title"] == "Pipeline" and {"source", "steps"} <= set(schema["properties"])
    assert schema["$defs"]["Step"]["additionalProperties"] is False
    assert {"ConvertBf16", "ConvertInt4", "ConvertGguf"} <= set(schema["$defs"])


def test_the_documented_example_pipeline_is_valid(monkeypatch):
    from dshub.pipeline.graph import ordered
    from dshub.pipeline.loader import load

    example = Path(__file__).resolve().parents[2] / "examples" / "pipeline.yaml"
    loaded = load(example, env={"HF_TOKEN": "hf_x"})
    assert [s.name for s in ordered(loaded)][:2] == ["fetch", "check"]
    assert yaml.safe_load(example.read_text())["source"]["token"] == "${HF_TOKEN}"


def test_a_killed_run_resumes_the_interrupted_step(tiny_ckpt, tmp_path):
    import signal
    import subprocess
    import sys
    import time

    from dshub.constants import MANIFEST_NAME

    path = tmp_path / "p.yaml"
    path.write_text(f"source: {{path: {tiny_ckpt}}}\nsteps:\n  - name: int4\n"
                    "    convert: {input: source, to: int4, group_size: 32, workers: 1}\n")
    manifest = tmp_path / "dshub-work" / "int4" / MANIFEST_NAME
    cmd = [sys.executable, "-m", "dshub.cli", "run", str(path), "--json"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    recorded, deadline = 0, time.monotonic() + 180
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            recorded = len(json.loads(manifest.read_text())["files"])
        except (OSError, ValueError):
            recorded = 0
        if recorded >= 2:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    proc.wait(60)
    assert proc.returncode == -signal.SIGKILL and 2 <= recorded < 9
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    step = json.loads(r.stdout)["steps"]["int4"]
    assert step["status"] == "ran" and step["detail"]["files_resumed"] >= 2
    assert step["detail"]["files_resumed"] + step["detail"]["files_written"] == 9
