"""`python -m addray.data`: write train.jsonl and test.jsonl; bad options are one line."""

import subprocess
import sys

import pytest

from addray import data as data_cli
from addray.core.data import read_jsonl


def test_cli_writes_disjoint_files(tmp_path):
    args = ["--out", str(tmp_path), "--train", "200", "--test", "20", "--seed", "4"]
    assert data_cli.main(args) == 0
    train = read_jsonl(tmp_path / "train.jsonl")
    test = read_jsonl(tmp_path / "test.jsonl")
    assert len(train) == 200 and len(test) == 20
    assert not {tuple(e["input"]) for e in train} & {tuple(e["input"]) for e in test}


@pytest.mark.parametrize("args,message", [
    (["--train", "100", "--test", "10", "--operand-max", "5"], "must be <= the 36 distinct pairs"),
    (["--seed", "-1"], "data.seed = -1: must be >= 0"),
    (["--operand-max", "1000000000000"], "data.operand_max = 1000000000000: must be >= 1"),
    (["--seed", "99999999999999999999"], "data.seed = 99999999999999999999: must be >= 0"),
    (["--base", "1"], "data.base = 1: must be >= 2"),
    (["--train", "0"], "data.n_train = 0: must be >= 1"),
])
def test_bad_options_are_one_line_with_exit_2(tmp_path, args, message):
    proc = subprocess.run([sys.executable, "-m", "addray.data", "--out", str(tmp_path / "o"),
                           *args], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and message in proc.stderr, proc.stderr
    assert not (tmp_path / "o").exists()


def test_out_pointing_to_a_file(tmp_path):
    (tmp_path / "f").write_text("")
    proc = subprocess.run([sys.executable, "-m", "addray.data", "--out", str(tmp_path / "f"),
                           "--train", "10", "--test", "5"], capture_output=True, text=True)
    assert proc.returncode == 2 and "is a file, not a folder" in proc.stderr
