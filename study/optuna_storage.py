"""The study's Optuna study in SQLite: `<study dir>/optuna.db`.

OptunaSearch keeps its Optuna study in this storage instead of memory, so every trial (its
parameters, values, state and per-epoch validation FID) can be opened by optuna-dashboard,
`optuna.load_study` and the report's parameter importances. Tune pickles the searcher with the
experiment; the pickled storage reconnects to the same file, so `--resume` keeps adding to the
same Optuna study (the resumed trials are told to their existing Optuna trials, none is
duplicated).

SQLite needs a local file: on a local storage path the database lives in the study directory
itself; on a URI (s3://, gs://, file://) the driver keeps it in a local directory named after the
URI and `publish` copies it into the study directory after the run (finished or interrupted);
`--resume` on a machine without the local copy starts from the published one.
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

import optuna

from study import results as R
from study.store import StudyStore, is_uri


def local_db_path(store: StudyStore) -> Path:
    """Where the driver's SQLite file lives: in the study directory, or for a URI in a local
    directory keyed by the URI (the same on every run of this machine, so --resume finds it)."""
    if not is_uri(store.uri):
        return Path(store.optuna_db)
    key = hashlib.sha256(store.uri.rstrip("/").encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / "ganvae-study-optuna" / key / R.OPTUNA_DB


def sqlite_url(path: Path | str) -> str:
    return f"sqlite:///{Path(path).resolve()}"


def fetch(study: StudyStore | str) -> Path:
    """The local database file, for a URI study fetched from its published copy when this
    machine has none (call before restoring the searcher, whose pickle names this file)."""
    store = StudyStore.of(study)
    path = local_db_path(store)
    path.parent.mkdir(parents=True, exist_ok=True)
    if is_uri(store.uri) and not path.exists() and store.exists(store.optuna_db):
        path.write_bytes(store.read_bytes(store.optuna_db))
    return path


def open_storage(study: StudyStore | str) -> optuna.storages.RDBStorage:
    """The study's SQLite storage (a new study's file is created by Optuna)."""
    return optuna.storages.RDBStorage(sqlite_url(fetch(study)))


def publish(store: StudyStore) -> None:
    """Copy a URI study's local database into its study directory (nothing to do when local)."""
    path = local_db_path(store)
    if is_uri(store.uri) and path.exists():
        store.write_bytes(store.optuna_db, path.read_bytes())


def load_study(study_dir: str | Path) -> optuna.Study | None:
    """The Optuna study saved in `<study_dir>/optuna.db`, or None when the study has none."""
    path = Path(study_dir) / R.OPTUNA_DB
    if not path.is_file():
        return None
    storage = sqlite_url(path)
    names = optuna.get_all_study_names(storage)  # the launcher writes one, named after the study
    return optuna.load_study(study_name=names[0], storage=storage) if names else None
