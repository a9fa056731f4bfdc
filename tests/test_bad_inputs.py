"""Bad input to any command: one line naming the file or option, the value and the rule;
exit 2; no traceback; nothing written outside (or into) the results folder."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import CONFIGS, ROOT, SWEEPS

TINY = (CONFIGS / "phase1_tiny.yaml").read_text()
LAUGHS = "a: &a [x, x, x, x, x, x, x, x]\n" + "".join(
    f"{c}: &{c} [{', '.join(['*' + p] * 8)}]\n"
    for p, c in zip("abcdefgh", "bcdefghi", strict=True))
SMALL = ("model: {vocab_size: 13, d_model: 16, n_layers: 1, n_heads: 2, d_ff: 16, "
         "max_seq_len: 16}\ndata: {base: 10, operand_max: 99, n_train: 500, n_test: 50}\n")

CASES = [
    # (id, files to create, command, message)
    ("int-inf", {"c.yaml": TINY + "data: {n_train: .inf}\n"}, ["train", "c.yaml"],
     "c.yaml: data.n_train = inf: must be an integer"),
    ("int-nan", {"c.yaml": SMALL.replace("n_layers: 1", "n_layers: .nan")},
     ["train", "c.yaml"], "model.n_layers = nan: must be an integer"),
    ("int-1e400", {"c.yaml": SMALL.replace("n_test: 50", "n_test: 1e400")},
     ["train", "c.yaml"], "data.n_test = '1e400': must be an integer"),
    ("inf-weight-decay", {"c.yaml": SMALL + "optimizer: {weight_decay: .inf}\n"},
     ["train", "c.yaml"], "optimizer.weight_decay = inf: must be a finite number"),
    ("duplicate-section", {"c.yaml": SMALL + "model: {d_model: 256}\n"}, ["train", "c.yaml"],
     "duplicate key 'model'"),
    ("billion-laughs", {"c.yaml": LAUGHS}, ["train", "c.yaml"], "anchors and aliases"),
    ("binary-config", {"c.yaml": b"\x00\x01\x02\xff\xfe"}, ["train", "c.yaml"],
     "c.yaml: not a text (UTF-8) config file"),
    ("latin1-config", {"c.yaml": "name: caf\xe9\n".encode("latin-1")}, ["train", "c.yaml"],
     "not a text (UTF-8) config file"),
    ("name-escapes", {"c.yaml": SMALL + "name: ../../../somewhere\n"}, ["train", "c.yaml"],
     "name = '../../../somewhere': must be a plain name"),
    ("name-absolute", {"c.yaml": SMALL + "name: /tmp/x\n"}, ["train", "c.yaml"],
     "name = '/tmp/x': must be a plain name"),
    ("train-out-file", {"c.yaml": SMALL, "f": ""}, ["train", "c.yaml", "--out", "f"],
     "--out f: is a file, not a folder"),
    ("train-threads", {"c.yaml": SMALL}, ["train", "c.yaml", "--threads", "100000"],
     "--threads: 100000: must be >= 1 and <= 4096"),
    ("study-up", {}, ["phase1", "--smoke-test", "--study", "../x"],
     "--study '../x': must be a plain name"),
    ("study-absolute", {}, ["phase1", "--smoke-test", "--study", "/tmp/abs"],
     "--study '/tmp/abs': must be a plain name"),
    ("set-name-slash", {}, ["phase1", "--smoke-test", "--set", "name=a/b"],
     "name = 'a/b': must be a plain name"),
    ("set-bad-yaml", {}, ["phase1", "--smoke-test", "--set", "k=[x"],
     "--set k: line 1: not valid YAML"),
    ("seeds-runaway", {}, ["phase1", "--smoke-test", "--seeds", "100000"],
     "--seeds: 100000: must be >= 1 and <= 100"),
    ("time-budget-nan", {}, ["phase3", "--smoke-test", "--time-budget", "nan"],
     "--time-budget: nan: must be >="),
    ("data-seed", {}, ["data", "--out", "d", "--seed", "-1"], "data.seed = -1: must be >= 0"),
    ("data-huge-operands", {}, ["data", "--out", "d", "--operand-max", "10000000000000"],
     "data.operand_max = 10000000000000: must be >= 1 and <= 999999"),
    ("predict-empty-file", {"p.txt": ""}, ["predict", "CKPT", "--file", "p.txt"],
     "p.txt: no pairs"),
    ("predict-binary-file", {"p.txt": b"\xff\xfe1 2"}, ["predict", "CKPT", "--file", "p.txt"],
     "p.txt: not a text (UTF-8) file"),
    ("report-out-file", {"f": ""}, ["report", str(ROOT / "results" / "reference" / "h100"),
                                     "--out", "f"], "--out f: is a file, not a folder"),
    ("verify-not-a-checkpoint", {"x.pt": "hello"}, ["verify", "x.pt"],
     "x.pt: not an addray checkpoint"),
]

COMMANDS = {"phase1": [str(SWEEPS / "phase1.py"), "--results", "results"],
            "phase3": [str(SWEEPS / "phase3_search.py"), "--results", "results"]}
CHECKPOINT = str(ROOT / "results" / "reference" / "tuned_phase1_lower" / "checkpoint.pt")


@pytest.mark.parametrize("files,command,message", [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, files, command, message):
    for name, content in files.items():
        path = tmp_path / name
        (path.write_bytes if isinstance(content, bytes) else path.write_text)(content)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    head, rest = command[0], [CHECKPOINT if a == "CKPT" else a for a in command[1:]]
    argv = COMMANDS[head] + rest if head in COMMANDS else ["-m", f"addray.{head}", *rest]
    proc = subprocess.run([sys.executable, *argv], capture_output=True, text=True,
                          cwd=tmp_path, timeout=120)
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1, proc.stderr
    assert message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert len(proc.stderr) < 400
    # nothing was written: no run folder, no study, no stray file anywhere
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
    assert not (Path("/tmp/abs").exists() or (tmp_path.parent / "somewhere").exists())
