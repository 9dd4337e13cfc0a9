"""Rich rendering of `dshub info` for GGUF files (the command itself lives in dshub.cli.checkpoint).

Everything shown comes from the file, so every value goes through `shown`: names and values holding rich markup
(`[bold]`, `[/]`) or control characters (terminal escapes, newlines) print verbatim, never as markup or escapes.
"""
from __future__ import annotations

from typing import Any

from rich.markup import escape
from rich.table import Table

from dshub.cli.format import human
from dshub.cli.output import out_console
from dshub.hub.validate import printable


def shown(value: Any) -> str:
    """A value from a GGUF file as rich markup that prints it as text (control characters as `\\xNN`)."""
    return escape(printable(value if isinstance(value, str) else str(value)))


def print_gguf_info(doc: dict[str, Any]) -> None:
    hp = {k: shown(v) for k, v in doc["hparams"].items()}
    out_console.print(f"[bold]GGUF {shown(doc['architecture'])}[/] {shown(doc['name'] or '')} ({shown(doc['file_type'])}) "
                      f"at {shown(doc['path'])}")
    out_console.print(f"layers {hp.get('block_count')} ({hp.get('leading_dense_block_count', 0)} dense), hidden {hp.get('embedding_length')}, "
                      f"heads {hp.get('attention.head_count')}, experts {hp.get('expert_count')} routed + {hp.get('expert_shared_count')} shared, "
                      f"{hp.get('expert_used_count')} per token, context {hp.get('context_length')}")
    tok = doc["tokenizer"]
    out_console.print(f"tokenizer: {shown(tok['model'])} / {shown(tok['pre'])}, {tok['tokens']} tokens, {tok['merges']} merges"
                      + (", chat template" if tok["chat_template"] else ""))
    out_console.print(f"{doc['tensors']} tensors, {doc['params'] / 1e9:.3f} B params, {doc['bits_per_weight']} bits/weight, "
                      f"{len(doc['files'])} file(s), {human(doc['bytes'])}")
    table = Table("type", "tensors", "params", "size")
    for name, t in doc["types"].items():
        table.add_row(shown(name), str(t["tensors"]), f"{t['params'] / 1e6:.2f} M", human(t["bytes"]))
    out_console.print(table)
