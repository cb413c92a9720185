import pytest

from study.results import atomic_path, write_text_atomic


def test_atomic_writes_replace_whole_files_and_a_failed_write_changes_nothing(tmp_path):
    target = tmp_path / "sub" / "metrics.json"
    write_text_atomic(target, "first")
    assert target.read_text() == "first"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half of the second")
        raise RuntimeError("crash mid-write")
    assert target.read_text() == "first"
    assert sorted(p.name for p in target.parent.iterdir()) == ["metrics.json"]  # no .tmp left behind

