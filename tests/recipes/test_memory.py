"""GPU memory as the card reports it (issue 17, item 3): the table holds the driver's figure (GiB) with its source,
`--gpu-memory` overrides it, verdicts within 5 % of the limit are marked borderline, and the summary gives the KV
token count the engine logs."""
from __future__ import annotations

import json

import pytest

from dshub.errors import UsageError
from dshub.recipes import Request, plan
from dshub.recipes.hardware import GPUS, GiB, MiB, parse_memory
from dshub.recipes.planner import BORDERLINE, GB
from dshub.recipes.render import summary_lines


def test_the_table_holds_what_the_cards_report():
    assert GPUS["h200"].memory_bytes == 143771 * MiB and round(GPUS["h200"].memory_gib, 1) == 140.4
    assert GPUS["h100"].memory_bytes == 81559 * MiB and GPUS["b200"].memory_bytes == 183359 * MiB
    assert GPUS["mi300x"].memory_bytes == 206141652992
    for card in GPUS.values():  # every row says where its figure comes from
        assert card.memory_source and (("MiB" in card.memory_source or " B " in card.memory_source)
                                       or card.memory_source.startswith(("marketed", "as the")))
    # the marketed "141 GB" understates the H200 by 6-7 %
    assert 0.06 < GPUS["h200"].memory_bytes / 141e9 - 1 < 0.07


@pytest.mark.parametrize("text,expected", [("143771MiB", 143771 * MiB), ("140.4GiB", int(140.4 * GiB)),
                                           ("150.7GB", int(150.7e9)), ("80", 80 * GiB), ("96 GiB", 96 * GiB)])
def test_gpu_memory_parses_what_users_copy_from_the_driver(text, expected):
    assert parse_memory(text) == expected


@pytest.mark.parametrize("bad", ["", "-1GiB", "lots", "80TB", "0"])
def test_bad_gpu_memory_is_a_usage_error(bad):
    with pytest.raises(UsageError, match="--gpu-memory"):
        plan(Request("deepseek-r1", gpu_memory=bad))


def test_gpu_memory_overrides_the_table():
    base = plan(Request("deepseek-r1", gpu="h200", mtp=False)).chosen
    less = plan(Request("deepseek-r1", gpu="h200", mtp=False, gpu_memory="130GiB"))
    assert less.gpu.memory_bytes == 130 * GiB and less.gpu.memory_source == "--gpu-memory 130GiB"
    assert base.kv_budget_per_gpu - less.chosen.kv_budget_per_gpu == pytest.approx(0.9 * (143771 * MiB - 130 * GiB), abs=2)


def test_verdicts_near_the_limit_are_borderline():
    # weights ~86 GB per GPU at TP8; a card whose budget leaves only a few % over (or under) the need is borderline
    need = plan(Request("deepseek-r1", gpu="h200", mtp=False)).chosen
    required = need.weights_per_gpu + 4096 * need.kv_bytes_per_token_per_gpu + 5 * GB  # + vLLM's headroom
    for factor, fits in ((1.03, True), (0.98, False)):
        gib = required * factor / 0.9 / GiB
        p = plan(Request("deepseek-r1", gpu="h200", mtp=False, gpu_memory=f"{gib:.3f}GiB"), suggest=False)
        first = p.evaluations[0]
        assert first.ok is fits and first.borderline, (factor, first.margin)
        if fits:
            assert p.chosen is first and any("borderline fit" in n for n in p.notes)
            assert "borderline" in " ".join(summary_lines(p))
        else:
            assert any("borderline" in r for r in first.reasons)
    roomy = plan(Request("deepseek-r1", gpu="h200", mtp=False)).chosen
    assert roomy.margin > BORDERLINE and not roomy.borderline


def test_summary_gives_the_engines_kv_log_line():
    for engine, line in (("vllm", "GPU KV cache size: {:,} tokens"), ("sglang", "max_total_num_tokens={}")):
        p = plan(Request("deepseek-r1", engine=engine, gpu="h200"))
        assert line.format(p.chosen.tokens_per_group) in "\n".join(summary_lines(p))


def test_cli_gpu_memory_and_json(cli):
    r = cli("plan", "deepseek-r1", "--gpu-memory", "143771MiB", "--json")
    doc = json.loads(r.stdout)
    assert r.exit_code == 0 and doc["gpu"]["memory_bytes"] == 143771 * MiB and doc["gpu"]["memory_gib"] == 140.4
    assert "borderline" in doc["chosen"]
    r = cli("plan", "deepseek-r1", "--gpu-memory", "lots")
    assert r.exit_code == 2 and "--gpu-memory 'lots'" in r.stderr
