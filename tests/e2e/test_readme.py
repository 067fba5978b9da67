"""The README, verbatim: its command blocks run in order, in a fresh clone, and do what they say.

Why this module exists: a newcomer's first hour is the README. A command block that fails, or
prints something else than the text beside it, loses them. So this test clones the commit under
test into a new folder (what a newcomer sees: no ``.venv``, no ``.run``, nothing uncommitted),
and runs every ``sh`` / ``bash`` / ``console`` block of README.md, in order, in one ``bash -e``
session (an ``export`` of one block holds in the next, as in a terminal), against the local
control plane ``make run`` starts from that clone. Output shown in the README is fenced as
``text`` and never run; any other fence fails the test, so the convention holds.

Each block that runs has a check of what the README says it does (``CHECKS``; a block without
one fails the test). The blocks too long or impossible here are named in ``NOT_RUN``, each with
where it is covered, or that it is not: ``make test`` is what CI runs (``.ci/run``), and it runs
this test, so running it here would recurse.

``make run`` cannot collide with the suite's own control planes: it keeps its state under the
clone's ``.run/`` and every component listens on free loopback ports (``devcluster.cluster``);
the README's own ``make stop`` block stops it, and the test stops it again if a block failed.
The Go-built binaries come from the shared cache (``~/.cache/greenplace``: the clone's Go
modules hash the same), so the run costs the clone's ``make venv`` (about a minute) and
``make run`` (about 30 s).
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import re
import subprocess
import urllib.request
from collections.abc import Callable

import pytest
import yaml
from markdown_it import MarkdownIt

from devcluster import cluster

pytestmark = pytest.mark.cluster

ROOT = pathlib.Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
COMMANDS = ("sh", "bash", "console")
OUTPUT = "text"
FRENCH_POOLS = {"gcp-europe-west9-a100", "ovh-gra-h100"}

# First line of a block -> why it does not run here, and where it is covered (or that it is not).
NOT_RUN = {
    "make test": "CI runs exactly this block (.ci/run is `make test`), which runs this test",
    "GREENPLACE_KUBECONFIG=$HOME/.kube/config make run": (
        "needs a cluster of the reader's own (kind); CI machines have no Docker. Not exercised "
        "(the README says so); the integration suite's GREENPLACE_KUBECONFIG path is the same "
        "devcluster.cluster.ExistingCluster"
    ),
    "make run-multi": (
        "79 s and 3.8 GiB for five control planes: tests/integration/multi/test_dispatch.py "
        "starts the same devcluster.multi fleet and asserts both dispatchers' outcomes; the "
        "target's own printout (devcluster.cli.multi_demo) is not run by any test"
    ),
}


@dataclasses.dataclass(frozen=True)
class Block:
    info: str
    text: str
    line: int  # 1-based line of the fence in README.md

    @property
    def head(self) -> str:
        return self.text.strip().splitlines()[0].split("  #")[0].strip()


@dataclasses.dataclass(frozen=True)
class Ran:
    block: Block
    stdout: str
    stderr: str
    after: Block | None  # the output block shown after it (blocks not run here skipped), if any
    session: Session = dataclasses.field(repr=False)  # to look at the cluster, as a reader would


def blocks(markdown: str) -> list[Block]:
    """Every fenced block of ``markdown``, in order."""
    return [
        Block(token.info.strip(), token.content, (token.map or [0])[0] + 1)
        for token in MarkdownIt().parse(markdown)
        if token.type == "fence"
    ]


def table_rows(text: str) -> list[list[str]]:
    """The rows of a table greenplace prints (columns two or more spaces apart), header off."""
    lines = [line for line in text.splitlines() if line.strip()]
    return [re.split(r"\s{2,}", line.strip()) for line in lines[1:]]


def rows_after(output: str, header: str) -> list[list[str]]:
    """The table in ``output`` that starts at the line starting with ``header``."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    table = []
    for line in lines[start:]:
        if not line.strip():
            break
        table.append(line)
    return table_rows("\n".join(table))


# --- what each block says it does -------------------------------------------------------------


def check_make_run(ran: Ran) -> None:
    """The placements table of the README, every column but NODE (kube-scheduler's choice
    within the pool), and the operator's metrics and liveness URLs, answering."""
    assert ran.after is not None and ran.after.info == OUTPUT
    shown = {row[0]: row[:4] + row[5:] for row in table_rows(ran.after.text)}
    printed = {row[0]: row[:4] + row[5:] for row in rows_after(ran.stdout, "POD ")}
    assert printed == shown, ran.stdout
    for name in ("metrics", "liveness"):
        (url,) = re.findall(rf"^Operator {name}: (http://\S+)$", ran.stdout, re.MULTILINE)
        with urllib.request.urlopen(url, timeout=10) as answer:
            assert answer.status == 200, url


def check_first_policy(ran: Ran) -> None:
    assert "No resources found in ml namespace." in ran.stderr, ran.stderr


def check_first_pod(ran: Ran) -> None:
    (row,) = rows_after(ran.stdout, "POD ")
    assert row[:4] == ["ml/train", "1", "Placed", "gcp-europe-west9-a100"], ran.stdout


def check_try_policy(ran: Ran) -> None:
    """The held pod would be placed in France; nothing was applied (it is still held)."""
    line = next(x for x in ran.stdout.splitlines() if "ml-ch/train-patient-model" in x)
    outcome, _, pool, *_ = line.split()
    assert outcome == "Placed" and pool in FRENCH_POOLS, ran.stdout
    gates = ran.session.shell(
        "kubectl get pod -n ml-ch train-patient-model -o jsonpath='{.spec.schedulingGates[*].name}'"
    )
    assert gates == "greenplace.dev/placement", gates


def check_make_stop(ran: Ran) -> None:
    (stopped,) = [line for line in ran.stdout.splitlines() if line.startswith("stopped: ")]
    assert {"kube-apiserver", "greenplace-operator"} <= set(stopped[9:].split(", ")), stopped


CHECKS: dict[str, Callable[[Ran], None]] = {
    "make run": check_make_run,
    "export KUBECONFIG=$PWD/.run/cluster/kubeconfig": check_first_policy,
    "kubectl wait -n ml --for=condition=Ready placementpolicy/eu-sovereign --timeout=60s": (
        check_first_pod
    ),
    "cat > swiss-or-french.yaml <<'EOF'": check_try_policy,
    "make stop": check_make_stop,
}


# --- the tests --------------------------------------------------------------------------------


def test_every_block_is_run_output_or_named() -> None:
    """Each fence is commands or ``text``; each command block is checked or in NOT_RUN, and
    NOT_RUN names only blocks that exist (it cannot hide a block the README dropped)."""
    found = blocks(README.read_text())
    odd = [(b.line, b.info) for b in found if b.info not in (*COMMANDS, OUTPUT)]
    assert not odd, f"README fences must be sh/bash/console (run) or text (output): {odd}"
    heads = [b.head for b in found if b.info in COMMANDS]
    assert set(NOT_RUN) <= set(heads), set(NOT_RUN) - set(heads)
    unchecked = [h for h in heads if h not in CHECKS and h not in NOT_RUN]
    assert not unchecked, f"README command blocks with no check in this test: {unchecked}"
    assert len(heads) == len(set(heads)), "two command blocks start alike: make them distinct"


def test_readme_runs_verbatim_in_a_fresh_clone(tmp_path: pathlib.Path) -> None:
    clone = tmp_path / "greenplace"
    head = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
    subprocess.run(["git", "-C", str(clone), "checkout", "--quiet", head], check=True)
    found = blocks((clone / "README.md").read_text())
    run = [b for b in found if b.info in COMMANDS and b.head not in NOT_RUN]
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("KUBECONFIG", "GREENPLACE_KUBECONFIG", "VIRTUAL_ENV", "PYTHONPATH")
    }
    session = Session(clone, tmp_path / "exported.sh", env)
    try:
        for block in run:
            ran = session.run(block, found)
            CHECKS[block.head](ran)
    finally:
        if (clone / ".venv" / "bin" / "python").exists():  # a block failed before make stop
            subprocess.run(
                [str(clone / ".venv/bin/python"), "-m", "devcluster", "down"],
                cwd=clone,
                capture_output=True,
                check=False,
            )
    kubeconfig = yaml.safe_load((clone / ".run/cluster/kubeconfig").read_text())
    server = kubeconfig["clusters"][0]["cluster"]["server"]
    port = int(server.rsplit(":", 1)[1])
    assert not cluster.port_open(port), f"make stop left the API server at {server} running"


@dataclasses.dataclass
class Session:
    """One terminal: each block runs in ``bash -e`` in the clone, starting from the variables
    the blocks before it exported (``export -p``), so checks run between blocks while the
    cluster is up. (Variables a block sets without exporting do not carry: none does.)"""

    clone: pathlib.Path
    exported: pathlib.Path
    env: dict[str, str]

    def run(self, block: Block, found: list[Block]) -> Ran:
        result = self._bash(block.text)
        assert result.returncode == 0, (
            f"README block at line {block.line} failed (exit {result.returncode}):\n"
            f"{block.text}\n--- stdout\n{result.stdout[-4000:]}\n--- stderr\n"
            f"{result.stderr[-4000:]}"
        )
        following = [b for b in found[found.index(block) + 1 :] if b.head not in NOT_RUN]
        after = following[0] if following and following[0].info == OUTPUT else None
        return Ran(block, result.stdout, result.stderr, after, self)

    def shell(self, command: str) -> str:
        """What ``command`` prints in this session (not a README block: the test looking)."""
        result = self._bash(command, keep=False)
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    def _bash(self, text: str, keep: bool = True) -> subprocess.CompletedProcess[str]:
        script = f"[ ! -f {self.exported} ] || source {self.exported}\ncd {self.clone}\n{text}\n"
        if keep:
            script += f"export -p > {self.exported}\n"
        return subprocess.run(
            ["bash", "-e", "-c", script],
            cwd=self.clone,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=1200,
            check=False,
        )
