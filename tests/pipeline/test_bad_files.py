"""Bad pipeline files: one line naming the file and the YAML line, exit 2, nothing run."""
from __future__ import annotations

import json

import pytest

GOOD = """\
source: {path: ckpt}
steps:
  - name: bf16
    convert: {input: source, to: bf16}
  - name: q8
    convert:
      input: bf16
      to: gguf
      quant: Q8_0
"""

CASES = {
    "unknown key": (GOOD.replace("quant: Q8_0", "quant: Q8_0\n      qaunt: Q4_0"), 10, "steps[1].convert.qaunt: unknown key"),
    "wrong type": (GOOD.replace("quant: Q8_0", "quant: Q8_0\n      split_max_tensors: lots"), 10,
                   "steps[1].convert.split_max_tensors: input should be a valid integer"),
    "bad option value": (GOOD.replace("to: bf16}", "to: int4, group_size: 48}"), 4, "--group-size 48: choose one of"),
    "missing output": (GOOD.replace("input: bf16", "input: bf17"), 7, "'bf17' is no step's output"),
    "cycle": (GOOD.replace("to: bf16}", "to: bf16, after: [q8]}"), 3, "cycle: bf16 -> q8 -> bf16"),
    "unset variable": (GOOD.replace("quant: Q8_0", "quant: ${DSHUB_TEST_UNSET_QUANT}"), 9, "${DSHUB_TEST_UNSET_QUANT} is not set"),
    "two actions": (GOOD.replace("convert: {input: source, to: bf16}", "convert: {input: source, to: bf16}\n    verify: {input: source}"),
                    3, "a step does exactly one of download, verify, convert, recipe"),
    "literal token": ("source: {repo: a/b, token: hf_abcdef}\nsteps:\n  - name: f\n    download: {}\n", 1,
                      "source.token: write a reference such as ${HF_TOKEN}"),
    "unknown target": (GOOD.replace("to: gguf", "to: tflite"), 8, "'tflite' is not one of"),
    "not yaml": ("source: {path: ckpt\nsteps: []\n", 2, "not valid YAML"),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_bad_pipeline_file_is_one_line_with_its_yaml_line_exit_2(cli, tmp_path, monkeypatch, case):
    monkeypatch.delenv("DSHUB_TEST_UNSET_QUANT", raising=False)
    text, line, message = CASES[case]
    path = tmp_path / "p.yaml"
    path.write_text(text)
    r = cli("run", path)
    assert r.exit_code == 2, r.output
    err = r.stderr.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in r.output
    assert err.startswith(f"error: {path}:{line}: ") and message in err, err
    assert not (tmp_path / "dshub-work").exists()
    j = cli("run", path, "--json")
    assert j.exit_code == 2 and json.loads(j.stdout)["error"]["type"] == "PipelineError"
