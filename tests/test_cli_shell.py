"""What a person types: shell completion (click's, through the real console script's
environment-variable protocol, with ids read from the store) and the demo, whose closing
lines state what its history proves and print commands that run as printed."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from cli_ops_app import SCRIPT, cli, engine_run, new_store
from click.shell_completion import BashComplete

import durably
from durably import _demo
from durably._cli import main


def complete(words: str, store: Path | None = None) -> list[str]:
    """What bash is offered for the last word of ``words``, by the console script."""
    env = {
        "_DURABLY_COMPLETE": "bash_complete",
        "COMP_WORDS": words,
        "COMP_CWORD": str(len(words.split(" ")) - 1),
    }
    done = cli(store=store, env=env)
    assert done.returncode == 0, done.stderr
    return [line for line in done.stdout.splitlines() if line]


def offered(words: str, store: Path | None = None) -> list[str]:
    """The same, asked in this process (quick): the values offered."""
    *args, incomplete = words.split(" ")[1:]
    if store is not None:
        args = ["--store", str(store), *args]
    completer = BashComplete(main, {}, "durably", "_DURABLY_COMPLETE")
    return [item.value for item in completer.get_completions(args, incomplete)]


def test_completion_scripts_and_commands_options_and_ids(tmp_path: Path) -> None:
    bash = cli(env={"_DURABLY_COMPLETE": "bash_source"})
    assert bash.returncode == 0
    assert "_durably_completion()" in bash.stdout
    assert "complete -o nosort -F _durably_completion durably" in bash.stdout
    zsh = cli(env={"_DURABLY_COMPLETE": "zsh_source"})
    assert zsh.stdout.startswith("#compdef durably")
    assert complete("durably sch") == ["plain,schedules"]

    assert offered("durably st") == ["start"]
    assert offered("durably schedules tr") == ["trigger"]
    assert offered("durably force-fail x --re") == ["--reason"]
    assert "--utc" in offered("durably show x --")

    store = new_store(tmp_path)

    async def setup(engine: durably.Engine) -> list[str]:
        await engine.ensure_schedule("tick", 1, id="nightly", cron="0 3 * * *")
        await engine.ensure_schedule("tick", 1, id="noon", cron="0 12 * * *")
        return [await engine.start("echo", n) for n in range(3)]

    ids = engine_run(store, setup)
    # The store from DURABLY_STORE, read by the console script:
    assert complete("durably show ", store) == [f"plain,{eid}" for eid in ids]
    prefix = ids[1][:-1]  # ids made in one millisecond may share all but their last digits
    found = offered(f"durably skip-step {prefix}", store)
    assert found == [eid for eid in ids if eid.startswith(prefix)] and ids[1] in found
    assert offered(f"durably retry {ids[2]}", store) == [ids[2]]
    assert offered("durably force-fail fff", store) == []  # ids begin with their time
    assert offered("durably schedules pause n", store) == ["nightly", "noon"]
    assert offered("durably schedules trigger nig", store) == ["nightly"]
    assert offered("durably show 01", tmp_path / "nowhere") == []  # no store: nothing


@pytest.mark.slow
def test_the_demo_says_what_its_history_proves_and_its_commands_run_as_printed(
    tmp_path: Path,
) -> None:
    store = tmp_path / "shop.durably"
    demo = cli("demo", "--store", str(store), cwd=tmp_path)
    assert demo.returncode == 0, demo.stderr
    out = demo.stdout
    child = re.search(r"step reserve-stock runs \(process (\d+)\)", out)
    restarted = re.search(r"restarted in process (\d+):", out)
    assert child is not None and restarted is not None and child[1] != restarted[1]
    proof = " ".join(out.split("What the history proves:\n")[1].split("\n\n")[0].split())
    assert proof.startswith(
        f"reserve-stock and charge-card ran once, in process {child[1]}, before it was killed"
    )
    assert f"The restarted process {restarted[1]} replayed those results and ran none of" in proof
    assert re.search(r"(?<![0-9a-f])\d{13}(?![0-9a-f])", out) is None  # no raw epoch ms

    printed = out.split("(these run as printed):\n")[1].splitlines()
    assert len(printed) == 2 and all(str(store) in line for line in printed)
    runs = [
        subprocess.run(
            line, shell=True, capture_output=True, text=True, cwd=tmp_path, timeout=60, check=False
        )
        for line in printed
    ]
    assert [r.returncode for r in runs] == [0, 0], [r.stderr for r in runs]
    listed = runs[0].stdout.splitlines()
    assert len(listed) == 2 and all(" completed " in line for line in listed)
    eid = printed[1].split()[-1]
    assert runs[1].stdout.startswith(eid) and "signal.received" in runs[1].stdout


def test_the_demo_prints_the_command_this_installation_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    venv = SCRIPT.parent.parent
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    monkeypatch.chdir(venv.parent)
    assert _demo._command() == f"{venv.name}/bin/durably"  # beside the interpreter, relative
    monkeypatch.chdir(tmp_path)
    assert _demo._command() == str(SCRIPT)  # elsewhere: its path
    monkeypatch.setenv("PATH", f"{SCRIPT.parent}{os.pathsep}/usr/bin")
    assert _demo._command() == "durably"  # on PATH: its name
    python = tmp_path / "bin" / "python"
    monkeypatch.setattr(sys, "executable", str(python))
    assert _demo._command() == "bin/python -m durably"  # no console script: the module
    monkeypatch.chdir("/")
    assert _demo._command() == f"{python} -m durably"  # from /: absolute
    python.parent.mkdir()
    monkeypatch.chdir(python.parent)
    assert _demo._command() == "./python -m durably"  # never a bare name PATH would find
