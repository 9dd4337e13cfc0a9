"""`verify --hashes` checks a dshub output against its own conversion manifest (issue 17, item 9)."""
from __future__ import annotations

import json


def test_verify_hashes_against_the_conversion_manifest(cli, tiny_ckpt, tmp_path):
    out = tmp_path / "bf16"
    assert cli("convert", tiny_ckpt, "--to", "bf16", "--out", out).exit_code == 0
    r = cli("verify", out, "--hashes", "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    recorded = json.loads((out / "dshub-manifest.json").read_text())["files"]
    assert doc["hashes"]["ok"] and doc["hashes"]["checked"] == len(recorded) > 0
    assert doc["hashes"]["reference"].startswith("conversion manifest dshub-manifest.json")
    shard = sorted(out.glob("*.safetensors"))[-1]
    data = bytearray(shard.read_bytes())
    data[-10] ^= 0x01  # inside tensor data: the structure still parses
    shard.write_bytes(bytes(data))
    assert cli("verify", out, "--json").exit_code == 0  # structure alone cannot see it
    r = cli("verify", out, "--hashes", "--json")
    doc = json.loads(r.stdout)
    assert r.exit_code == 1 and doc["error"]["code"] == "hash_mismatch" and doc["error"]["path"] == shard.name
    r = cli("verify", out, "--hashes")
    assert r.exit_code == 1 and shard.name in r.stdout and "1 bad" in r.stdout


def test_verify_hashes_without_any_manifest_says_so(cli, tiny_ckpt):
    r = cli("verify", tiny_ckpt, "--hashes")
    assert r.exit_code == 1 and "dshub-manifest.json" in r.stderr and "--against-hub" in r.stderr


def test_info_on_an_int4_output_says_what_it_is(cli, tiny_ckpt, tmp_path):
    out = tmp_path / "int4"
    assert cli("convert", tiny_ckpt, "--to", "int4", "--out", out).exit_code == 0
    r = cli("info", out)
    assert r.exit_code == 0 and "encoding: INT4 compressed-tensors W4A16 g128 (expert), rest bf16, with MTP" in r.stdout
    doc = json.loads(cli("info", out, "--json").stdout)
    assert doc["kind"].startswith("INT4 compressed-tensors") and doc["int4"]["quantized_roles"] == ["expert"]
    assert "int4 w4a16 g128 (experts)" not in doc["output_sizes"]  # it is INT4 already
    plain = json.loads(cli("info", tiny_ckpt, "--json").stdout)
    assert plain["kind"] == "fp8-block e4m3 blocks [128, 128], with MTP"
