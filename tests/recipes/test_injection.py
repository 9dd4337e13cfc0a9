"""Recipes cannot inject (issue 12, item 7): user values reach the engine verbatim in every format, or are refused
with one line naming the option. Property-based over the sh, k8s and Compose renderers (YAML and a dry run of the
scripts with recording stubs), Compose's own parser for a few fixed hostile values."""
from __future__ import annotations

import json
import posixpath
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dshub.errors import UsageError
from dshub.recipes import Network, RecipeOptions, Request, plan
from dshub.recipes.api import render_recipe
from dshub.recipes.engines.common import host_path
from dshub.recipes.launch import USER_CLOSE, USER_OPEN, check_image
from dshub.recipes.render.common import comment_text
from dshub.recipes.validate import resolve_compose
from tests.support.tools import require_validator_venv

HEAD = "10.9.8.7"
MARK = "pwned"
# Ways a value could run something: each leaves a file named MARK in the working directory if it ever runs.
TEMPLATES = ("{}", "$(touch {m}){}", "{}`touch {m}`", "{}'; touch {m}; '", '{}"; touch {m}; "', "{}$(touch${{IFS}}{m})",
             "${{HEAD_IP}}{}", "{}\\$(touch {m})", "{};touch {m}", "{}|touch {m}", "{}&&touch {m}", "$$(touch {m}){}",
             "{}$(HF_TOKEN)")
SETTINGS = settings(max_examples=50, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])
# Printable text: letters, marks, digits, punctuation, symbols and spaces of any script.
TEXT = st.text(st.characters(blacklist_categories=("C", "Zl", "Zp")), max_size=12)
UNSAFE = st.characters(whitelist_categories=("Cc", "Cf", "Co", "Zl", "Zp"))
VALUES = st.builds(lambda text, tpl: tpl.format(text, m=MARK), TEXT, st.sampled_from(TEMPLATES))
SOME = VALUES.filter(bool)  # for options where an empty value means "not given"
OPTIONS = {"served_name": "--served-model-name", "model_path": "--model-path", "iface": "--net-iface", "ib_hca": "--ib-hca"}


@pytest.fixture(scope="module")
def plans():
    """One multi-node plan per engine shape the renderers distinguish (head IP and LWS rank expressions live)."""
    return {
        "vllm-2n": plan(Request("deepseek-r1", engine="vllm", gpu="h100", nodes=2)),
        "vllm-dep": plan(Request("deepseek-v3", engine="vllm", gpu="h100", nodes=2, goal="throughput")),
        "vllm-1n": plan(Request("deepseek-r1", engine="vllm", gpu="h200")),
    }


def render(p, fmt: str, **opts) -> dict[str, str] | None:
    """The rendered files, or None when the options are refused (with a one-line UsageError naming the option)."""
    net = {k: opts.pop(k) for k in ("iface", "ib_hca") if k in opts}
    try:
        _, files = render_recipe(p, RecipeOptions(network=Network(**net), **opts), fmt)
    except UsageError as e:
        assert "\n" not in str(e) and str(e).startswith(("--", "MODEL")), str(e)
        return None
    assert not any(USER_OPEN in t or USER_CLOSE in t for t in files.values())  # marks never reach a file
    return files


def flag(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


# ------------------------------------------------------------------------------------------------ sh: dry run
def stub(bindir: Path, name: str) -> None:
    """An executable `name` that writes its argv as JSON to $RECORD."""
    bindir.mkdir(exist_ok=True)
    (bindir / name).write_text('#!/usr/bin/env python3\nimport json, os, sys\n'
                               'open(os.environ["RECORD"], "w").write(json.dumps(sys.argv[1:]))\n')
    (bindir / name).chmod(0o755)


def dry_run(script: str, workdir: Path, argv: list[str] | None = None, shell: str = "bash",
            env: dict[str, str] | None = None) -> list[str]:
    """Run `script` in an empty `workdir` with the stubs first on PATH; the argv the stub saw. Nothing else may
    appear in `workdir`."""
    work = workdir / "cwd"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    record = workdir / "argv.json"
    record.unlink(missing_ok=True)
    full = {"PATH": f"{workdir / 'bin'}:/usr/bin:/bin", "HOME": "/home/u", "RECORD": str(record), "HEAD_IP": HEAD,
            "LC_ALL": "C.UTF-8", **(env or {})}
    r = subprocess.run([shell, "-c", script, *(argv or [])], cwd=work, env=full, capture_output=True, text=True,
                       timeout=20)
    assert r.returncode == 0, r.stderr
    assert list(work.iterdir()) == []  # nothing ran: no marker, no stray file
    return json.loads(record.read_text())


@pytest.fixture(scope="module")
def shdir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("sh")
    stub(d / "bin", "docker")
    stub(d / "bin", "vllm")
    return d


@SETTINGS
@given(served=VALUES, model=SOME, hca=SOME)
def test_sh_scripts_pass_user_values_verbatim(plans, shdir, served, model, hca):
    files = render(plans["vllm-2n"], "sh", served_name=served, model_path=model, ib_hca=hca)
    if files is None:
        return
    host = host_path("--model-path", model)  # resolved at generation time: absolute, as a bind mount needs
    base = posixpath.basename(host)
    for name, text in files.items():
        path = shdir / name
        path.write_text(text)
        assert subprocess.run(["bash", "-n", str(path)], capture_output=True).returncode == 0
        got = dry_run(text, shdir, env={"NET_IFACE": "ens9"})
        assert flag(got, "--served-model-name") == served
        assert flag(got, "-v") == f"{host}:/models/{base}" and got[got.index("serve") + 1] == f"/models/{base}"
        assert f"NCCL_IB_HCA={hca}" in got and "GLOO_SOCKET_IFNAME=ens9" in got
        assert flag(got, "--master-addr") == HEAD  # our runtime expression still expands


def test_a_local_directory_name_is_data_in_scripts_and_comments(tiny_ckpt, shdir, tmp_path):
    hostile = tmp_path / f"m$(touch {MARK}) `touch {MARK}`"
    shutil.copytree(tiny_ckpt, hostile)
    p = plan(Request(str(hostile), engine="vllm", gpu="l40s", gpus_per_node=1, mtp=False))
    files = render(p, "sh")
    assert files is not None
    got = dry_run(files["serve.sh"], shdir)
    assert got[got.index("serve") + 1] == f"/models/{hostile.name}" and flag(got, "--served-model-name") == hostile.name
    assert flag(got, "-v") == f"{hostile}:/models/{hostile.name}"


@pytest.mark.parametrize("option,kw", [
    ("--served-model-name", dict(served_name="a\nb")), ("--served-model-name", dict(served_name="x\u2028y")),
    ("--served-model-name", dict(served_name="-rf")), ("--model-path", dict(model_path="/m\x00x")),
    ("--model-path", dict(model_path="/m\u202ex")), ("--model-path", dict(model_path="/data/a:b")),
    ("--model-path", dict(model_path="/data/..")), ("--model-path", dict(model_path="./")),
    ("--net-iface", dict(iface="eth0\r")), ("--ib-hca", dict(ib_hca="mlx5\x1b[2J")),
    ("--image", dict(image="img$(touch x)")), ("--image", dict(image="img\n:1")),
])
def test_unrepresentable_values_are_refused_naming_the_option(plans, option, kw):
    net = {k: kw.pop(k) for k in ("iface", "ib_hca") if k in kw}
    with pytest.raises(UsageError) as e:
        render_recipe(plans["vllm-2n"], RecipeOptions(network=Network(**net), **kw), "sh")
    assert str(e.value).startswith(option) and "\n" not in str(e.value)


@SETTINGS
@given(before=TEXT, bad=UNSAFE, after=TEXT, option=st.sampled_from(list(OPTIONS)))
def test_any_unprintable_character_is_refused_naming_the_option(plans, before, bad, after, option):
    kw = {option: f"/{before}{bad}{after}"}
    net = {k: kw.pop(k) for k in ("iface", "ib_hca") if k in kw}
    with pytest.raises(UsageError) as e:
        render_recipe(plans["vllm-2n"], RecipeOptions(network=Network(**net), **kw), "sh")
    assert str(e.value).startswith(OPTIONS[option] + " ") and "\n" not in str(e.value)


@pytest.mark.parametrize("version", ["0.33.0$(touch pwned)", "0.33.0\nrm -rf /", "0.33.0 x"])
def test_an_engine_version_that_makes_no_image_tag_is_refused(version):
    with pytest.raises(UsageError, match="^--engine-version '0.33.0"):
        render_recipe(plan(Request("deepseek-r1", engine="vllm", gpu="h200", engine_version=version)), None, "sh")


def test_a_local_directory_with_a_newline_is_refused(tiny_ckpt, tmp_path):
    hostile = tmp_path / "m\necho pwned"
    shutil.copytree(tiny_ckpt, hostile)
    with pytest.raises(UsageError, match=r"^MODEL .*cannot be written safely"):
        render_recipe(plan(Request(str(hostile), engine="vllm", gpu="l40s", gpus_per_node=1, mtp=False)), None, "sh")


def test_cli_refuses_a_hostile_image_in_one_line(cli):
    r = cli("recipe", "deepseek-r1", "--gpu", "h200", "--image", "img$(touch pwned)")
    assert r.exit_code == 2 and r.output.count("\n") == 1 and "--image" in r.output and "Traceback" not in r.output
    r = cli("recipe", "deepseek-r1", "--gpu", "h200", "--served-model-name", "a\nrm -rf /")
    assert r.exit_code == 2 and "--served-model-name" in r.output and "Traceback" not in r.output


@pytest.mark.parametrize("ref,ok", [
    ("vllm/vllm-openai:v0.33.0", True), ("ghcr.io/ggml-org/llama.cpp:server-cuda-b10434", True),
    ("localhost:5000/team/img", True), ("[::1]:5000/img:tag", True), ("a__b/c--d.e:T_1", True),
    ("img@sha256:" + "a" * 64, True), ("img:tag@sha256:" + "0" * 64, True),
    ("Img:1", False), ("img:tag:x", False), ("img:" + "t" * 129, False), ("-img", False), ("img/", False),
    ("img@sha256:abc", False), ("img name", False), ("img;id", False), ("img`id`", False), ("", False),
    ("a" * 256, False),
])
def test_image_references_follow_the_oci_grammar(ref, ok):
    if ok:
        assert check_image("--image", ref) == ref
    else:
        with pytest.raises(UsageError, match="^--image"):
            check_image("--image", ref)


def test_an_empty_served_name_is_an_argument_of_its_own(plans):
    files = render(plans["vllm-dep"], "k8s", served_name="")
    worker = lws_containers(files)[1]
    assert '--served-model-name "${1}"' in worker["command"][2] and worker["args"] == ["dshub-recipe", ""]


def test_comments_escape_what_is_not_printable():
    assert comment_text("a\nb\rc\u2028d\x85e") == "a\\nb\\rc\\u2028d\\x85e"
    assert comment_text("$(x) `y` é") == "$(x) `y` é"


# ------------------------------------------------------------------------------------------------ k8s
def k8s_expand(text: str, env: dict[str, str]) -> str:
    """What Kubernetes makes of a command, args or env value: $$ -> $, $(VAR) -> its value when VAR is defined."""
    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)",
                  lambda m: "$" if m[0] == "$$" else env.get(m[1], m[0]), text)


POD_ENV = {"HF_TOKEN": "SECRET", "LWS_LEADER_ADDRESS": HEAD, "LWS_WORKER_INDEX": "1"}


@SETTINGS
@given(served=VALUES)
def test_k8s_deployment_is_exec_form_and_verbatim(plans, served):
    files = render(plans["vllm-1n"], "k8s", served_name=served)
    if files is None:
        return
    dep, _ = list(yaml.safe_load_all(files["k8s.yaml"]))[-2:]  # after the PVC (and Job)
    c = dep["spec"]["template"]["spec"]["containers"][0]
    argv = [k8s_expand(a, POD_ENV) for a in c["command"]]
    assert argv[:2] == ["vllm", "serve"] and flag(argv, "--served-model-name") == served


@SETTINGS
def lws_containers(files: dict[str, str]) -> list[dict]:
    tpl = list(yaml.safe_load_all(files["k8s.yaml"]))[-2]["spec"]["leaderWorkerTemplate"]
    return [tpl[t]["spec"]["containers"][0] for t in ("leaderTemplate", "workerTemplate")]


@SETTINGS
@given(served=VALUES, model=SOME, iface=VALUES)
def test_lws_pods_take_user_values_as_arguments_not_script(plans, shdir, served, model, iface):
    files = render(plans["vllm-dep"], "k8s", served_name=served, model_path=model, iface=iface)
    if files is None:
        return
    reference = lws_containers(render(plans["vllm-dep"], "k8s", served_name="s", model_path="/m"))
    base = posixpath.basename(host_path("--model-path", model))
    for rank, c, ref in zip(("0", "1"), lws_containers(files), reference):
        assert c["command"] == ref["command"]  # the script text is ours alone: the same whatever the user gave
        args = [k8s_expand(a, POD_ENV) for a in c["args"]]
        got = dry_run(k8s_expand(c["command"][2], POD_ENV), shdir, args, shell="/bin/sh",
                      env={**POD_ENV, "LWS_WORKER_INDEX": rank})
        assert got[:2] == ["serve", f"/models/{base}"] and flag(got, "--served-model-name") == served
        assert flag(got, "--data-parallel-address") == HEAD
        assert ("--data-parallel-start-rank" in got) == (rank == "1")
        assert rank == "0" or flag(got, "--data-parallel-start-rank") == "8"
        env = {e["name"]: k8s_expand(e["value"], POD_ENV) for e in c["env"] if "value" in e}
        assert env["NCCL_SOCKET_IFNAME"] == iface


# ------------------------------------------------------------------------------------------------ compose
@SETTINGS
@given(served=VALUES, model=SOME, hca=SOME)
def test_compose_yaml_escapes_dollars_in_user_values(plans, served, model, hca):
    files = render(plans["vllm-2n"], "compose", served_name=served, model_path=model, ib_hca=hca)
    if files is None:
        return
    for text in files.values():
        svc = yaml.safe_load(text)["services"]["vllm"]
        assert flag(svc["entrypoint"], "--served-model-name") == served.replace("$", "$$")
        assert svc["volumes"][0].startswith(host_path("--model-path", model).replace("$", "$$") + ":")
        assert svc["environment"]["NCCL_IB_HCA"] == hca.replace("$", "$$")
        assert flag(svc["entrypoint"], "--master-addr") == "${HEAD_IP:?set HEAD_IP to the address of node 0}"


HOSTILE = ["$(touch pwned)", "${HOME}", "$HF_TOKEN", "$$x", "a'b\"c`d`", "${HEAD_IP-x}", "x #y", "{a, b}", "z - y"]


@pytest.mark.parametrize("value", HOSTILE)
def test_compose_itself_reads_the_value_verbatim(plans, tmp_path, value):
    venv = require_validator_venv()
    files = render(plans["vllm-2n"], "compose", served_name=value, model_path=f"/data/{value}", ib_hca=value)
    assert files is not None
    for name, text in files.items():
        path = tmp_path / name
        path.write_text(text)
        model = resolve_compose(venv, path, {"HEAD_IP": HEAD, "NET_IFACE": "ens9", "HOME": "/home/u", "HF_TOKEN": "SECRET"})
        svc = model["services"]["vllm"]
        # `config` prints canonical Compose (a literal $ as $$): undo that for what the container sees
        entry = [literal(a) for a in svc["entrypoint"]]
        assert flag(entry, "--served-model-name") == value and flag(entry, "--master-addr") == HEAD
        assert literal(svc["environment"]["NCCL_IB_HCA"]) == value
        assert literal(svc["volumes"][0]["source"]) == f"/data/{value}"
        assert literal(svc["volumes"][0]["target"]) == f"/models/{value}"
        assert "SECRET" not in json.dumps(svc["entrypoint"]) and "/home/u" not in json.dumps(svc["entrypoint"])


def literal(canonical: str) -> str:
    return canonical.replace("$$", "$")
