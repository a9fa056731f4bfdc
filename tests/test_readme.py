"""Every command in the README runs as written: each one of its code blocks (and each
`python ...` command quoted in its text) is run, a quick variant where the real one
takes minutes: a study script with --dry-run (its options and configs checked, nothing
started), a training with fewer steps into a temporary folder. A moved file or a
renamed option fails here."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow

README = (ROOT / "README.md").read_text()
PLACEHOLDER = re.compile(r"^[A-Z][A-Z_:0-9]*$|<\w+>|\.\.\.")  # CONFIG, DIR, HEAD:6379, <study>


def commands() -> list[str]:
    """The README's commands: its code blocks' lines (split at &&, comments dropped) and
    the `python ...` commands quoted in its text."""
    out = []
    for block in re.findall(r"^```\n(.*?)^```", README, flags=re.S | re.M):
        for line in block.splitlines():
            line = line.split("  #")[0].strip()
            out += [c.strip() for c in line.split("&&") if c.strip()]
    out += re.findall(r"`(python (?:sweeps/|-m addray)[^`]*)`", README)
    return list(dict.fromkeys(out))


def _dry_run(script: str, argv: list[str]) -> int:
    """A study script's main in this process (no Ray is started by a dry run)."""
    import importlib.util

    from addray.sweep import cli as sweep_cli

    spec = importlib.util.spec_from_file_location(Path(script).stem, ROOT / script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if hasattr(module, "PRESETS"):  # a grid script
        return sweep_cli.main(Path(script).stem, module.PRESETS, "", argv)
    return module.main(argv)


def _run(argv: list[str], timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *argv], capture_output=True, text=True,
                          cwd=ROOT, timeout=timeout)


def test_the_readme_has_the_commands_this_test_knows():
    found = commands()
    assert found[0].startswith("pip install torch==2.13.0 -e") and "python -m pytest -q" in found
    assert any(c.startswith("python sweeps/phase3_search.py") for c in found)
    assert any(c.startswith("python -m addray.verify") for c in found)


@pytest.mark.parametrize("command", [c for c in commands() if c.startswith("python ")])
def test_each_readme_command_runs(command, tmp_path, smoke_results, capsys):
    argv = shlex.split(command)[1:]
    if any(PLACEHOLDER.search(a) for a in argv):
        pytest.skip(f"an example with placeholders: {command}")
    if argv[:2] == ["-m", "pytest"]:
        pytest.skip("the test command itself")
    if argv[0].startswith("sweeps/"):  # a study: its options and configs, nothing started
        assert _dry_run(argv[0], [*argv[1:], "--dry-run", "--results", str(tmp_path)]) == 0
        assert "dry run" in capsys.readouterr().out
        return
    module = argv[1]
    if module == "addray.report" and argv[2:] == ["results/"]:  # after a study: a real one
        argv = ["-m", module, str(smoke_results[0]), "--out", str(tmp_path)]
    if module == "addray.train":
        argv = [*argv[:3], "--out", str(tmp_path / "run"), "--max-steps", "20",
                "--check-every", "10"]
    if module == "addray.collect":
        train = _run(["-m", "addray.train", "configs/phase1_tiny.yaml", "--out",
                      str(tmp_path / "a"), "--max-steps", "10", "--check-every", "10"])
        assert train.returncode == 0, train.stderr[-2000:]
        argv = ["-m", module, str(tmp_path / "a"), "--study", "my-runs", "--results",
                str(tmp_path / "results")]
    if module == "addray.evidence":
        argv = [*argv, "--check"]  # as written it rewrites INDEX.md: here, only check it
    if "--out" in argv and not str(argv[argv.index("--out") + 1]).startswith(str(tmp_path)):
        argv[argv.index("--out") + 1] = str(tmp_path / "out")
    proc = _run(argv)
    assert proc.returncode == 0, f"{command}\n{proc.stdout[-1500:]}\n{proc.stderr[-2000:]}"
    if module == "addray.predict":
        assert proc.stdout.strip().splitlines()[-1] == "1000"
