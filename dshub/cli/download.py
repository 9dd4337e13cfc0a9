"""Command `download`, and the hash part of `verify` (`--hashes`, `--against-hub`)."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table

from dshub.cli.format import gb
from dshub.cli.options import DryRunOpt, ExecutorOpt, JsonOpt, PatternOpt, RayAddressOpt, RevisionOpt, choice
from dshub.cli.output import err_console, failure, out_console, print_json
from dshub.recipes.models import hub_id_for
from dshub.hub.download import DEFAULT_WORKERS, DownloadPlan, DownloadResult, download as run_download
from dshub.hub.hash_check import HashReport, verify_hashes
from dshub.hub.sources import SOURCES
from dshub.hub.validate import printable


def shown(value: object) -> str:
    """A name from outside (repo, revision, path, message) as rich markup that prints it verbatim: control
    characters and terminal escapes as `\\xNN`, `[` escaped so rich never reads it as a tag."""
    return escape(printable(str(value)))


def print_plan(plan: DownloadPlan) -> None:
    d = plan.to_dict()
    t = d["totals"]
    out_console.print(
        f"[bold]{shown(d['repo_id'])}[/] @ {shown(d['revision'])} -> commit {shown(d['commit'])} ({shown(d['source'])}, "
        f"{shown(d['endpoint'])})", soft_wrap=True,
    )
    out_console.print(
        f"{t['files']} files, {gb(t['bytes'])}: {gb(t['verified_bytes'])} verified, {gb(t['present_unverified_bytes'])} "
        f"present (to hash), {gb(t['resumable_bytes'])} resumable, {gb(t['to_fetch_bytes'])} to download; "
        f"{gb(t['free_bytes'])} free at {shown(d['local_dir'])}", soft_wrap=True,
    )


def print_plan_files(plan: DownloadPlan) -> None:
    table = Table("file", "size", "state", "have")
    for f in plan.to_dict()["files"]:
        table.add_row(shown(f["path"]), str(f["size"]), f["state"], str(f["have"]) if f["have"] else "")
    out_console.print(table)


def print_result(res: DownloadResult) -> None:
    out_console.print(
        f"fetched {len(res.fetched)} files ({gb(res.bytes_transferred)} transferred), {len(res.verified)} already verified"
        + (f", {len(res.refetched_bad)} bad files re-fetched" if res.refetched_bad else "")
        + (" (offline: nothing fetched)" if res.offline else ""),
        soft_wrap=True,
    )
    for c in res.checks:
        out_console.print(f"{c['severity']}: {printable(c['message'])}", soft_wrap=True, markup=False)
    for f in res.failures:
        err_console.print(f"[bold red]error:[/] {shown(f.message)}", soft_wrap=True, highlight=False)
    status = (
        "complete and verified" if res.ok
        else "INCOMPLETE (run again to resume)" if res.failures
        else "every file matches the hub, but the checkpoint fails the structural checks above"
    )
    out_console.print(f"{shown(res.plan.root)}: {status}", soft_wrap=True)


def download(
    repo: Annotated[str, typer.Argument(help="Repository id, e.g. deepseek-ai/DeepSeek-V3, or a catalog name (deepseek-v4-flash; see `dshub plan`).")],
    revision: RevisionOpt = None,
    local_dir: Annotated[Optional[Path], typer.Option("--local-dir", help="Download here (default: the HF cache).")] = None,
    include: PatternOpt = None,
    exclude: PatternOpt = None,
    source: Annotated[str, choice("--source", f"Where from: {' | '.join(SOURCES)}. HF_ENDPOINT picks a mirror.")] = "hf",
    workers: Annotated[int, typer.Option("--workers", min=1, help="Files transferred / hashed in parallel.")] = DEFAULT_WORKERS,
    dry_run: DryRunOpt = False,
    no_verify: Annotated[bool, typer.Option("--no-verify", help="Trust files whose size matches; skip the structural check.")] = False,
    executor: ExecutorOpt = "local",
    ray_address: RayAddressOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Fetch a complete, verified checkpoint; a rerun resumes and fetches only what is missing or bad.

    Honours HF_ENDPOINT (mirrors), HF_TOKEN and HF_HUB_OFFLINE. With --executor ray each file is one task on the
    cluster, into a --local-dir every node mounts; the nodes read HF_TOKEN from their own environment.
    Exit 0 complete, 1 failed, 2 usage error.
    """
    out = run_download(
        hub_id_for(repo), revision=revision, local_dir=local_dir, include=include or (), exclude=exclude or (), source=source,
        workers=workers, dry_run=dry_run, verify=not no_verify, executor=executor, ray_address=ray_address,
    )
    if isinstance(out, DownloadPlan):
        if json_:
            print_json({"dry_run": True, "plan": out.to_dict()})
        else:
            print_plan(out)
            print_plan_files(out)
        return
    if json_:
        print_json(out.to_dict(), error=None if out.ok else download_failure(out))
    else:
        print_plan(out.plan)
        print_result(out)
    if not out.ok:
        raise typer.Exit(1)


def download_failure(res: DownloadResult) -> dict:
    """The `error` of an incomplete or structurally failed download: the first failure, and how many there are."""
    if res.failures:
        f = res.failures[0]
        return failure(f"{printable(f.message)} ({len(res.failures)} files failed; run again to resume)",
                       code="download_incomplete", path=f.path)
    first = next((c for c in res.checks if c["severity"] == "error"), None)
    message = printable(first["message"]) if first else "the checkpoint fails the structural checks"
    return failure(message, path=(first or {}).get("file") or res.plan.root, tensor=(first or {}).get("tensor"))


# ------------------------------------------------------------------------ verify --hashes (called by cli.checkpoint)
def hash_report(path: Path, hashes: bool, against_hub: str | None) -> HashReport | None:
    """Run the hash verification when asked for; None otherwise."""
    if not (hashes or against_hub):
        return None
    return verify_hashes(path, against_hub=against_hub)


def print_hash_report(report: HashReport) -> None:
    for f in report.findings:
        out_console.print(f"error: {printable(f.message)}", soft_wrap=True, markup=False)
    out_console.print(
        f"hashes against {printable(report.reference)}: {report.checked - len(report.findings)}/{report.checked} files match"
        + ("" if report.ok else f", {len(report.findings)} bad"), soft_wrap=True, markup=False,
    )
