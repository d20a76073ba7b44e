"""hmatbook.paths: the repository's data files and the offline data folder ($HMAT_DATA_DIR)."""

from __future__ import annotations

import pytest

from hmatbook import paths


def test_repo_data_finds_the_committed_files():
    for name in ("claims.yml", "weights.yml", "thesis_table1.csv"):
        path = paths.repo_data(name)
        assert path.is_file() and path.parent == paths.REPO_ROOT / "data"
    assert (paths.REPO_ROOT / "book" / "hmatbook" / "paths.py").is_file()


def test_repo_data_names_a_missing_file():
    with pytest.raises(FileNotFoundError, match="no-such-file.csv"):
        paths.repo_data("no-such-file.csv")


def test_data_dir_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.delenv(paths.DATA_ENV, raising=False)
    assert paths.data_dir() is None
    with pytest.raises(FileNotFoundError, match=paths.DATA_ENV):
        paths.data_dir(required=True)
    monkeypatch.setenv(paths.DATA_ENV, str(tmp_path))
    assert paths.data_dir() == tmp_path.resolve()
    monkeypatch.setenv(paths.DATA_ENV, str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        paths.data_dir()
