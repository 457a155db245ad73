"""Media stores: bytes in, a location out, the same bytes back."""

from __future__ import annotations

from pathlib import Path

import pytest

from inference.errors import InvalidMediaLocationError, MediaNotFoundError
from inference.media import LocalMediaStore, MediaStore

# `store`: each test runs on the local folder and on an S3 bucket (moto), see conftest.py.


def test_a_stored_file_comes_back_byte_for_byte(store: MediaStore) -> None:
    data = b"\x89PNG\r\n\x1a\n" + bytes(range(256))
    location = store.put(data, ".png", "image/png")
    assert store.get(location) == data


def test_locations_are_media_paths_with_a_year_and_a_fresh_id(store: MediaStore) -> None:
    first = store.put(b"a", ".mp4", "video/mp4")
    second = store.put(b"a", ".mp4", "video/mp4")
    assert first != second
    assert first.startswith("/media/2") and first.endswith(".mp4")
    assert len(first.split("/")) == 4


def test_an_unknown_location_is_not_found(store: MediaStore) -> None:
    with pytest.raises(MediaNotFoundError):
        store.get("/media/2026/" + "0" * 32 + ".png")


def test_a_deleted_file_is_gone_and_its_neighbours_stay(store: MediaStore) -> None:
    kept = store.put(b"kept", ".png", "image/png")
    deleted = store.put(b"deleted", ".png", "image/png")
    store.delete(deleted)
    with pytest.raises(MediaNotFoundError):
        store.get(deleted)
    assert store.get(kept) == b"kept"


def test_deleting_a_location_with_no_file_is_quietly_done(store: MediaStore) -> None:
    location = store.put(b"once", ".mp4", "video/mp4")
    store.delete(location)
    store.delete(location)
    store.delete("/media/2026/" + "0" * 32 + ".png")


def test_deleting_a_location_outside_the_store_is_refused(store: MediaStore) -> None:
    with pytest.raises(InvalidMediaLocationError):
        store.delete("/media/../../etc/passwd")


@pytest.mark.parametrize(
    "location", ["/media/../../etc/passwd", "/etc/passwd", "media/2026/x.png", ""]
)
def test_locations_outside_the_store_are_refused(store: MediaStore, location: str) -> None:
    with pytest.raises(InvalidMediaLocationError):
        store.get(location)


def test_the_local_store_keeps_files_under_its_root_and_serves_them_under_media(
    tmp_path: Path,
) -> None:
    store = LocalMediaStore(tmp_path, url_base="http://localhost:8085")
    location = store.put(b"data", ".png", "image/png")
    path = store.path_for(location)
    assert path.read_bytes() == b"data"
    assert path.is_relative_to(tmp_path)
    assert store.url_for(location) == "http://localhost:8085" + location


def test_a_bad_suffix_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidMediaLocationError):
        LocalMediaStore(tmp_path).put(b"x", "/../x", "image/png")


def test_files_uploaded_through_the_api_are_read_from_the_same_folder(tmp_path: Path) -> None:
    # realtime's /api/uploads writes <media>/uploads/<hex><suffix>; tasks name them as inputs.
    name = "ab" * 16 + ".png"
    (tmp_path / "uploads").mkdir()
    (tmp_path / "uploads" / name).write_bytes(b"uploaded")
    assert LocalMediaStore(tmp_path).get(f"/media/uploads/{name}") == b"uploaded"
