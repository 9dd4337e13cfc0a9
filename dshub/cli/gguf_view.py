"""Rich rendering of `dshub info` for GGUF files (the command itself lives in dshub.cli.checkpoint)."""
from __future__ import annotations

from typing import Any

from rich.table import Table

from dshub.cli.format import human
from dshub.cli.output import out_console


def print_gguf_info(doc: dict[str, Any]) -> None:
    hp = doc["hparams"]
    out_console.print(f"[bold]GGUF {doc['architecture']}[/] {doc['name'] or ''} ({doc['file_type']}) at {doc['path']}")
    out_console.print(f"layers {hp.get('block_count')} ({hp.get('leading_dense_block_count', 0)} dense), hidden {hp.get('embedding_length')}, "
                      f"heads {hp.get('attention.head_count')}, experts {hp.get('expert_count')} routed + {hp.get('expert_shared_count')} shared, "
                      f"{hp.get('expert_used_count')} per token, context {hp.get('context_length')}")
    tok = doc["tokenizer"]
    out_console.print(f"tokenizer: {tok['model']} / {tok['pre']}, {tok['tokens']} tokens, {tok['merges']} merges"
                      + (", chat template" if tok["chat_template"] else ""))
    out_console.print(f"{doc['tensors']} tensors, {doc['params'] / 1e9:.3f} B params, {doc['bits_per_weight']} bits/weight, "
                      f"{len(doc['files'])} file(s), {human(doc['bytes'])}")
    table = Table("type", "tensors", "params", "size")
    for name, t in doc["types"].items():
        table.add_row(name, str(t["tensors"]), f"{t['params'] / 1e6:.2f} M", human(t["bytes"]))
    out_console.print(table)
