import subprocess
import sys
from pathlib import Path

import pytest

from addray import predict
from addray.core.checkpoint import config_of, load_checkpoint
from addray.core.data import make_dataset, operands
from addray.errors import CheckpointError, DataError

ROOT = Path(__file__).resolve().parent.parent


def _held_out(trained_small, n):
    d = trained_small["config"].data
    return [operands(ex, d.base) for ex in make_dataset(d).test[:n]]


def test_answers_held_out_pairs(trained_small):
    pairs = _held_out(trained_small, 200)
    got = predict.answers(str(trained_small["dir"]), pairs)
    right = sum(g == str(a + b) for g, (a, b) in zip(got, pairs, strict=True))
    assert right >= 0.9 * len(pairs)


@pytest.mark.slow
def test_cli_single_pair_and_file(trained_small, tmp_path):
    ckpt = str(trained_small["dir"] / "checkpoint.pt")
    pairs = _held_out(trained_small, 20)
    (tmp_path / "pairs.txt").write_text("".join(f"{a} {b}\n" for a, b in pairs))
    proc = subprocess.run([sys.executable, "-m", "addray.predict", ckpt, "--file",
                           str(tmp_path / "pairs.txt")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.split()
    assert len(lines) == 20
    assert sum(line == str(a + b) for line, (a, b) in zip(lines, pairs, strict=True)) >= 17
    a, b = pairs[0]
    single = subprocess.run([sys.executable, "-m", "addray.predict", ckpt, str(a), str(b)],
                            capture_output=True, text=True)
    assert single.returncode == 0 and single.stdout.strip() == lines[0]


def test_operands_outside_trained_range(trained_small):
    with pytest.raises(DataError, match="trained on operands 0..99"):
        predict.answers(str(trained_small["dir"]), [(5, 500)])


def test_not_a_checkpoint(tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_text("hello")
    with pytest.raises(CheckpointError, match="not an addray checkpoint"):
        predict.answers(str(junk), [(1, 2)])
    proc = subprocess.run([sys.executable, "-m", "addray.predict", str(junk), "1", "2"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.startswith("error: ")
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("content,message", [
    (b"1 2\n3 plus 4\n", r"pairs.txt:2: expected two non-negative integers"),
    (b"", "no pairs"),
    (b"\n\n", "no pairs"),
    (b"1 2\n\xff\xfe 3\n", r"not a text \(UTF-8\) file"),
])
def test_bad_pairs_file_is_one_error(tmp_path, content, message):
    f = tmp_path / "pairs.txt"
    f.write_bytes(content)
    with pytest.raises(DataError, match=message):
        predict.parse_pairs(str(f))


@pytest.mark.parametrize("ckpt,n,least", [
    # configs/tuned/phase1_lower.yaml trained on CPU (docs/LOG.md): 1,000 pairs
    ("tuned_phase1_lower/checkpoint.pt", 1000, 990),
    # configs/smallest.yaml's seed 0 (1,960 params, learned; 100% uniform in verify):
    # all 10K pairs
    ("smallest/seed0.pt", 10_000, 9900),
    # configs/history/smallest_finetune.yaml's seed 0 (2,000 params, learned; 99.73% in verify)
    ("phase3/earlier/2000/best.pt", 1000, 990),
    # configs/history/smallest_nobias.yaml's seed 0 (1,888 params; 99.88% uniform, short of the
    # carry boundary in verify)
    ("phase3/earlier/1888/best.pt", 1000, 990),
    # the one before it (configs/history/smallest_16d.yaml, 7,879 params, untied, LayerNorm)
    ("phase3/earlier/16d/best.pt", 1000, 990),
])
def test_committed_checkpoint_answers_held_out_pairs(ckpt, n, least):
    # the held-out pairs are regenerated from the data seed saved in the checkpoint
    ckpt = ROOT / "results" / "reference" / ckpt
    d = config_of(load_checkpoint(ckpt), str(ckpt)).data
    pairs = [operands(ex, d.base) for ex in make_dataset(d).test[:n]]
    assert len(pairs) == n
    got = predict.answers(str(ckpt), pairs)
    right = sum(g == str(a + b) for g, (a, b) in zip(got, pairs, strict=True))
    assert right >= least, right
