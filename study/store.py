"""A study directory on a pyarrow filesystem: a local path or a URI (s3://, gs://, ...)."""

from __future__ import annotations

import io
import os
import posixpath
from pathlib import Path

import pandas as pd
import pyarrow.fs as pafs


def is_uri(path_or_uri: str | os.PathLike) -> bool:
    """A URI (s3://, gs://, file://) rather than a local path."""
    return "://" in str(path_or_uri)


def normalize_storage_path(path_or_uri: str) -> str:
    """A URI as given; a local path made absolute (so every Ray node and --resume agree on it)."""
    if is_uri(path_or_uri):
        return path_or_uri
    return os.path.abspath(os.path.expanduser(path_or_uri))


class StudyStore:
    """A study directory on a pyarrow filesystem (local path or URI)."""

    def __init__(self, path_or_uri: str):
        if is_uri(path_or_uri):
            self.fs, self.root = pafs.FileSystem.from_uri(str(path_or_uri))
        else:
            self.fs, self.root = pafs.LocalFileSystem(), Path(path_or_uri).expanduser().resolve().as_posix()
        self.uri = str(path_or_uri)

    def path(self, *parts: str) -> str:
        return posixpath.join(self.root, *parts)

    def exists(self, path: str) -> bool:
        return self.fs.get_file_info(path).type != pafs.FileType.NotFound

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

    def write_bytes(self, path: str, data: bytes) -> None:
        """Write to a temporary name, then move: readers never see half a file."""
        self.fs.create_dir(posixpath.dirname(path), recursive=True)
        tmp = path + ".tmp"
        with self.fs.open_output_stream(tmp) as f:
            f.write(data)
        self.fs.move(tmp, path)

    def write_table(self, rows: pd.DataFrame, name: str) -> None:
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
