"""What the study's Tune callbacks (trials.csv and curves.csv, a search's Optuna file)
share: the folder they write, and putting a file to object storage once written."""

from __future__ import annotations

from pathlib import Path

from addray import store
from addray import study_files as sf


class StudyFiles:
    """A callback that writes files of study ``study``: into ``_study_dir``, or with
    ``results`` on object storage into this process's local copy, each file put to the
    store whole after it is written (``push``)."""

    study: str
    results: str | None = None  # on object storage: its URI (the folder is a local copy)

    @property
    def study_dir(self) -> Path:
        """The study folder this driver writes: on object storage this process's local
        copy (a resumed driver's callback is unpickled from the one that started it, and
        an older version's kept the folder as ``study_dir``)."""
        results = getattr(self, "results", None)
        if results is not None and store.is_uri(results):
            return sf.study_folder(results, self.study)
        return Path(getattr(self, "_study_dir", None) or self.__dict__["study_dir"])

    def push(self, path: Path) -> None:
        """Put ``path`` to object storage (nothing for a local results folder)."""
        results = getattr(self, "results", None)
        if results is not None:
            store.push_file(results, self.study, path)
