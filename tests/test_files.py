"""addray.files: the atomic writer, the CSV reader a poller can trust, the folder lock."""

import subprocess
import sys

import pytest

from addray import files
from addray.errors import DataError, StudyError


def test_atomic_write_leaves_the_old_file_on_a_crash(tmp_path):
    path = tmp_path / "f.txt"
    files.write_text(path, "old")
    with pytest.raises(RuntimeError), files.atomic_path(path) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash")
    assert path.read_text() == "old" and list(tmp_path.iterdir()) == [path]


def test_csv_round_trip_and_a_half_written_last_line(tmp_path):
    path = tmp_path / "c.csv"
    files.write_csv(path, ["a", "b"], [{"a": 1, "b": "x,y"}])
    files.append_csv(path, ["a", "b"], {"a": 2, "b": "z"})
    assert files.read_csv(path) == [{"a": "1", "b": "x,y"}, {"a": "2", "b": "z"}]
    with path.open("a") as f:
        f.write("3,par")  # a row being written right now: no newline yet
    assert files.read_csv(path, ("a",)) == [{"a": "1", "b": "x,y"}, {"a": "2", "b": "z"}]


def test_csv_cut_short_in_the_middle_is_an_error(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text("a,b\n1,2\n3\n4,5\n")
    with pytest.raises(DataError, match=r"c.csv:3: 1 fields where the header has 2"):
        files.read_csv(path)
    with pytest.raises(DataError, match="no column c"):
        files.read_csv(path, ("c",))


def test_append_keeps_an_older_files_columns(tmp_path):
    path = tmp_path / "c.csv"
    files.write_csv(path, ["a"], [{"a": 1}])
    files.append_csv(path, ["a", "new"], {"a": 2, "new": 3})
    assert files.read_csv(path) == [{"a": "1"}, {"a": "2"}]


def test_folder_lock_refuses_a_second_holder_and_dies_with_its_process(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c",
                               "import sys, time; from addray.files import FolderLock; "
                               f"FolderLock({str(tmp_path)!r}, 'x').acquire(); "
                               "print('held', flush=True); time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(StudyError, match=rf"study x: in use by .* pid {holder.pid}"):
            files.FolderLock(tmp_path, "study x").acquire()
    finally:
        holder.kill()
        holder.wait()
    # the holder was killed without releasing: its lock went with it
    with files.FolderLock(tmp_path, "study x"):
        pass
