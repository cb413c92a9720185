"""A study directory on a pyarrow filesystem (a local path or a URI: s3://, gs://, ...), and its layout:
which file holds what (the names are study/results.py's), the one table writer and reader.

A command turns the directory it is given into a StudyStore once (`StudyStore.of`); the specs carry it
(study/engine/spec.py RunSpec.store), and the export, the replicates, the reproduction, the Optuna
database and the test fixtures read and write through it.
"""

from __future__ import annotations

import io
import os
import posixpath
from pathlib import Path

import pandas as pd
import pyarrow.fs as pafs

from study import results as R


def is_uri(path_or_uri: str | os.PathLike) -> bool:
    """A URI (s3://, gs://, file://) rather than a local path."""
    return "://" in str(path_or_uri)


def normalize_storage_path(path_or_uri: str) -> str:
    """A URI as given; a local path made absolute (so every Ray node and --resume agree on it)."""
    if is_uri(path_or_uri):
        return path_or_uri
    return os.path.abspath(os.path.expanduser(path_or_uri))


class StudyStore:
    """A study directory on a pyarrow filesystem (local path or URI), and the files it holds."""

    def __init__(self, path_or_uri: str | os.PathLike):
        if is_uri(path_or_uri):
            self.fs, self.root = pafs.FileSystem.from_uri(str(path_or_uri))
        else:
            self.fs, self.root = pafs.LocalFileSystem(), Path(path_or_uri).expanduser().resolve().as_posix()
        self.uri = str(path_or_uri)

    @classmethod
    def of(cls, where: StudyStore | str | os.PathLike) -> StudyStore:
        """`where` as a StudyStore: itself when it is one (a study directory is wrapped once)."""
        return where if isinstance(where, StudyStore) else cls(where)

    def __str__(self) -> str:
        return self.uri  # as the user gave it: what messages name

    def __repr__(self) -> str:
        return f"StudyStore({self.uri!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, StudyStore) and (type(self.fs), self.root) == (type(other.fs), other.root)

    def __hash__(self) -> int:
        return hash((type(self.fs), self.root))

    # --- the layout: one name per file (study/results.py) -------------------------------------------
    @property
    def study_json(self) -> str:
        """The run's settings (its spec's JSON: study/engine/spec.py), reused by --resume."""
        return self.path(R.STUDY_JSON)

    @property
    def trials_file(self) -> str:
        return self.path(R.TRIALS_FILE)

    @property
    def history_file(self) -> str:
        return self.path(R.HISTORY_FILE)

    @property
    def replicates_file(self) -> str:
        return self.path(R.REPLICATES_FILE)

    @property
    def replicates(self) -> StudyStore:
        """STUDY_DIR/replicates/: the replicates' Ray experiment (its trial directories, replicates.json)."""
        return self.child(R.REPLICATES_DIR)

    @property
    def replicates_spec(self) -> str:
        """The runs the replicates' experiment holds (checked when they continue)."""
        return self.path(R.REPLICATES_DIR, R.REPLICATES_SPEC)

    @property
    def optuna_db(self) -> str:
        return self.path(R.OPTUNA_DB)

    @property
    def best_samples(self) -> str:
        return self.path(R.BEST_SAMPLES_FILE)

    @property
    def ray_session(self) -> str:
        return self.path(R.RAY_SESSION_JSON)

    def child(self, name: str) -> StudyStore:
        """The directory `name` inside this one, as a StudyStore of its own."""
        return StudyStore(f"{self.uri.rstrip('/')}/{name}")

    # --- reading and writing --------------------------------------------------------------------------
    def path(self, *parts: str) -> str:
        return posixpath.join(self.root, *parts)

    def exists(self, path: str) -> bool:
        return self.fs.get_file_info(path).type != pafs.FileType.NotFound

    def has(self, name: str) -> bool:
        """Whether the file `name` (relative to the study directory) exists."""
        return self.exists(self.path(name))

    def is_nonempty_dir(self) -> bool:
        info = self.fs.get_file_info(self.root)
        if info.type == pafs.FileType.NotFound:
            return False
        if info.type != pafs.FileType.Directory:
            return True
        return bool(self.fs.get_file_info(pafs.FileSelector(self.root)))

    def read_bytes(self, path: str) -> bytes:
        with self.fs.open_input_stream(path) as f:
            return f.read()

    def read_text(self, name: str) -> str:
        """The file `name` (relative to the study directory) as text: study.json, replicates.json."""
        return self.read_bytes(self.path(name)).decode()

    def write_bytes(self, path: str, data: bytes) -> None:
        """Write to a temporary name, then move: readers never see half a file."""
        self.fs.create_dir(posixpath.dirname(path), recursive=True)
        tmp = path + ".tmp"
        with self.fs.open_output_stream(tmp) as f:
            f.write(data)
        self.fs.move(tmp, path)

    def write_text(self, name: str, text: str) -> None:
        self.write_bytes(self.path(name), text.encode())

    def read_table(self, name: str) -> pd.DataFrame:
        """The table `name` (trials.parquet, history.parquet, replicates.parquet)."""
        return pd.read_parquet(io.BytesIO(self.read_bytes(self.path(name))))

    def write_table(self, rows: pd.DataFrame, name: str) -> None:
        """The one table writer: `rows` as the parquet file `name`, whole or not at all."""
        buffer = io.BytesIO()
        rows.to_parquet(buffer, index=False)
        self.write_bytes(self.path(name), buffer.getvalue())

    def files(self, directory: str, suffix: str) -> list[str]:
        if not self.exists(directory):
            return []
        infos = self.fs.get_file_info(pafs.FileSelector(directory))
        return sorted(i.path for i in infos if i.type == pafs.FileType.File and i.path.endswith(suffix))

    def relative(self, path: str) -> str:
        return posixpath.relpath(path, self.root)
