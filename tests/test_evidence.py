"""python -m addray.evidence: every evidence folder says in one line what it holds, and the
committed index is made from those lines."""

import pytest

from addray.errors import StudyError
from addray.evidence import index_text, main
from tests.conftest import ROOT


def test_every_committed_evidence_folder_has_a_readme_and_the_index_is_current():
    # after adding evidence: python -m addray.evidence (rewrites results/reference/INDEX.md)
    assert main([str(ROOT / "results" / "reference"), "--check"]) == 0


def test_a_folder_without_a_readme_is_named(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "README.md").write_text("study a; commit x; verdict y\n")
    (tmp_path / "a" / "trials.csv").write_text("x\n")
    (tmp_path / "a" / "b" / "seed0.pt").write_bytes(b"")
    with pytest.raises(StudyError, match=r"a/b: no README.md"):
        index_text(tmp_path)
    (tmp_path / "a" / "b" / "README.md").write_text("weights | of a\n")
    text = index_text(tmp_path)
    assert "| [a](a/) | study a; commit x; verdict y |" in text
    assert "| [a/b](a/b/) | weights / of a |" in text  # a '|' would break the table


def test_check_fails_on_a_stale_index(tmp_path, capsys):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "README.md").write_text("one line\n")
    (tmp_path / "a" / "x.csv").write_text("x\n")
    assert main([str(tmp_path)]) == 0
    assert main([str(tmp_path), "--check"]) == 0
    (tmp_path / "a" / "README.md").write_text("another line\n")
    assert main([str(tmp_path), "--check"]) == 1
    assert "out of date" in capsys.readouterr().out


def test_an_unreadable_readme_is_one_line(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "README.md").write_bytes(b"\xff\xfe not text")
    (tmp_path / "a" / "x.csv").write_text("x\n")
    with pytest.raises(StudyError, match=r"a/README.md: cannot read"):
        index_text(tmp_path)
