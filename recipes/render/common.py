"""Shared by the renderers: the plan summary, quoting (user text as data, our runtime expressions live), names."""
from __future__ import annotations

import re
import shlex

from dshub.recipes.launch import Launch, NodeLaunch, pieces, plain
from dshub.recipes.planner import GB, Plan

HEAD_IP_SHELL = "${HEAD_IP:?set HEAD_IP to the address of node 0}"
HEAD_IP_JSON = "${HEAD_IP}"
LWS_LEADER = "${LWS_LEADER_ADDRESS}"
# Finds NET_IFACE (unless the environment sets it) as the interface that reaches the head: `ip route get` names it;
# on the head itself the route is local (dev lo), so the interface holding that address is taken instead.
DETECT_IFACE_SH = """if [ -z "${{NET_IFACE:-}}" ] && command -v ip >/dev/null 2>&1; then
  NET_IFACE="$(ip -o route get "{head}" 2>/dev/null | sed -n 's/.* dev \\([^ ]*\\).*/\\1/p' || true)"
  if [ -z "$NET_IFACE" ] || [ "$NET_IFACE" = lo ]; then
    NET_IFACE="$(ip -o addr show to "{head}" 2>/dev/null | awk '{{print $2; exit}}' || true)"
  fi
fi"""
SHM_GB = 32
STARTUP_BUDGET_S = 3 * 3600  # a 700 GB load from network storage plus compilation can take well over an hour


def summary_lines(p: Plan) -> list[str]:
    """The plan in a few lines: hardware, layout, memory per GPU, KV budget, context and why."""
    c = p.chosen
    lines = [f"{p.model.name} ({p.weights.name} weights) on {p.nodes}x{p.gpus_per_node} {p.gpu.label}, "
             f"{p.engine.name} {p.engine_version}, goal {p.request.goal}"]
    if c is None:
        return lines + ["no layout fits"]
    lines.append(f"layout {c.layout.label} ({c.layout.kind}); MTP {'on' if p.mtp else 'off'}; KV cache {p.kv_dtype}")
    if p.engine.name == "llamacpp":
        lines.append(f"weights {c.weights_per_gpu / GB:.1f} GB per GPU; experts in system RAM: "
                     f"{c.experts_on_cpu_bytes / GB:.0f} GB ({c.experts_on_cpu_layers} layers)")
        lines.append(f"KV cache {c.concurrency} slot(s) x {c.max_context:,} tokens x {p.kv_bytes_per_token:,} B = "
                     f"{c.total_tokens * p.kv_bytes_per_token / GB:.1f} GB (spread over the GPUs with the layers)")
    else:
        lines.append(f"weights {c.weights_per_gpu / GB:.1f} GB per GPU; KV budget {c.kv_budget_per_gpu / GB:.1f} GB per GPU "
                     f"at memory fraction {p.memory_fraction:g}")
        if p.kv_bytes_per_token:
            lines.append(f"KV {p.kv_bytes_per_token:,} B/token; {c.tokens_per_group:,} tokens per attention group, "
                         f"{c.total_tokens:,} in all; max context {c.max_context:,}; "
                         f"{c.concurrency} concurrent requests at {p.serve_context:,} tokens")
            if p.engine.kv_log:
                lines.append(f"{p.engine.name} logs this as about `{p.engine.kv_log.format(tokens=c.tokens_per_group)}` "
                             "per attention group: a much smaller number means less free memory than planned")
    lines.append(f"GPU memory {p.gpu.memory_gib:.1f} GiB per card ({p.gpu.memory_source})"
                 + ("; borderline: within 5% of the limit" if c.borderline else ""))
    for e in p.evaluations:
        if e is c:
            break
        lines.append(f"not {e.layout.label} ({e.layout.kind}): {'; '.join(e.reasons)}")
    lines += [f"note: {n}" for n in p.notes]
    return lines


def quote_ours(text: str) -> str:
    """Our own text: double-quoted when it holds a ${VAR} or $((...)) expression, so that expands; else quoted."""
    if "$" in text:
        return '"' + re.sub(r'(["\\`])', r"\\\1", text) + '"'
    return shlex.quote(text)


def shell_word(arg: str) -> str:
    """Quote a word for sh: user text (marked, see launch.user) always as data; our expressions left to expand."""
    parts = pieces(arg)
    if not any(not is_user and "$" in text for is_user, text in parts):
        return shlex.quote(plain(arg))
    return "".join(shlex.quote(text) if is_user else quote_ours(text) for is_user, text in parts)


def shell_join(argv: list[str]) -> str:
    return " ".join(shell_word(a) for a in argv)


def compose_word(value: str) -> str:
    """A value for a Compose file: `$` in user text doubled, so Compose never interpolates it; ours kept."""
    return "".join(text.replace("$", "$$") if is_user else text for is_user, text in pieces(value))


def k8s_word(value: str) -> str:
    """A command, args or env value for Kubernetes, which expands $(VAR) there: every `$` doubled."""
    return plain(value).replace("$", "$$")


def comment_text(line: str) -> str:
    """A line safe inside a `#` comment: anything not printable (a line break above all) escaped."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in line)


def app_name(launch: Launch) -> str:
    raw = f"{launch.plan.model.name}-{launch.engine}"
    return re.sub(r"[^a-z0-9-]+", "-", raw.lower()).strip("-")[:50]


def node_file_stem(node: NodeLaunch, nodes: int) -> str:
    return "serve" if nodes == 1 else f"node{node.rank}-{node.role}"


def comment_block(launch: Launch, prefix: str = "# ") -> str:
    lines = ["Generated by `dshub recipe`. The plan it came from:", *summary_lines(launch.plan)]
    lines += [f"note: {n}" for n in launch.notes if n not in launch.plan.notes]
    lines += [f"warning: {w}" for w in launch.warnings]
    return "\n".join(prefix + comment_text(ln) for ln in lines) + "\n"
