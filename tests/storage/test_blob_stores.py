"""One contract, two blob stores: a local folder and S3 on moto's real HTTP server."""

from __future__ import annotations

import io
import os
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from storage.blobs import open_blob_store
from storage.blobs.base import BlobError, BlobNotFound, BlobStore, InvalidKey
from storage.blobs.local import LocalBlobStore, verify_blob_signature
from storage.blobs.s3 import S3BlobStore, make_s3_client
from storage.settings import load_settings

TRAVERSAL_KEYS = ["../x", "/etc/passwd", "a/../../b", "a\\b", "a\x00b", "a//b", "a/", "", ".", "a/./b", "~x"]


def _s3_client(endpoint: str):  # type: ignore[no-untyped-def]
    return make_s3_client("us-east-1", endpoint)  # the client configuration the store uses in production


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BlobStore]:
    if request.param == "local":
        yield LocalBlobStore(tmp_path / "blobs", public_base_url="http://127.0.0.1:1", secret=b"k" * 32)
        return
    endpoint = request.getfixturevalue("moto_endpoint")
    bucket = request.getfixturevalue("unique_name")
    client = _s3_client(endpoint)
    client.create_bucket(Bucket=bucket)
    # A store prefix, so every test also proves keys are mapped in and out of it.
    yield S3BlobStore(bucket, "tenant", client=client)


def test_put_get_exists_delete(store: BlobStore) -> None:
    assert not store.exists("users/1/photos/o/0.jpg")
    store.put("users/1/photos/o/0.jpg", b"first", content_type="image/jpeg")
    store.put("users/1/photos/o/0.jpg", io.BytesIO(b"second"))  # a retry overwrites
    assert store.exists("users/1/photos/o/0.jpg")
    assert store.get("users/1/photos/o/0.jpg") == b"second"
    store.delete("users/1/photos/o/0.jpg")
    store.delete("users/1/photos/o/0.jpg")  # deleting a missing key is fine
    assert not store.exists("users/1/photos/o/0.jpg")
    with pytest.raises(BlobNotFound, match=r"no blob at 'users/1/photos/o/0\.jpg'"):
        store.get("users/1/photos/o/0.jpg")


def test_list_is_sorted_and_prefix_is_a_string_prefix(store: BlobStore) -> None:
    for key in ["b/4", "a/2", "ab/3", "a/1", "a/deep/er/5"]:
        store.put(key, key.encode())
    assert list(store.list()) == ["a/1", "a/2", "a/deep/er/5", "ab/3", "b/4"]
    assert list(store.list("a")) == ["a/1", "a/2", "a/deep/er/5", "ab/3"]
    assert list(store.list("a/")) == ["a/1", "a/2", "a/deep/er/5"]
    assert list(store.list("a/de")) == ["a/deep/er/5"]
    assert list(store.list("zzz/")) == []


def test_delete_prefix_counts_and_spares_neighbours(store: BlobStore) -> None:
    for key in ["users/1/a", "users/1/b/c", "users/12/a", "users/2/a"]:
        store.put(key, b"x")
    assert store.delete_prefix("users/1/") == 2
    assert list(store.list()) == ["users/12/a", "users/2/a"]
    assert store.delete_prefix("users/1/") == 0
    with pytest.raises(InvalidKey, match="empty"):
        store.delete_prefix("")


@pytest.mark.parametrize("key", TRAVERSAL_KEYS)
def test_traversal_and_malformed_keys_are_refused(store: BlobStore, key: str, tmp_path: Path) -> None:
    for call in (
        lambda: store.put(key, b"evil"),
        lambda: store.get(key),
        lambda: store.exists(key),
        lambda: store.delete(key),
        lambda: store.url(key),
    ):
        with pytest.raises(InvalidKey):
            call()
    assert list(store.list()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) in ([], ["blobs"])  # nothing written beside the root


def test_prefix_listing_refuses_traversal(store: BlobStore) -> None:
    for prefix in ("../", "/etc", "a/../"):
        with pytest.raises(InvalidKey):
            list(store.list(prefix))
        with pytest.raises(InvalidKey):
            store.delete_prefix(prefix)


class _Exploding(io.RawIOBase):
    """A stream that fails part-way, like a client disconnecting during an upload."""

    def __init__(self, good_bytes: int) -> None:
        self.left = good_bytes

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:  # type: ignore[no-untyped-def]
        if self.left <= 0:
            raise ConnectionResetError("upload source vanished")
        n = min(len(buf), self.left)
        buf[:n] = b"\x01" * n
        self.left -= n
        return n


def test_failed_put_leaves_nothing(store: BlobStore, tmp_path: Path) -> None:
    store.put("keep/old", b"old")
    for key in ("new/blob", "keep/old"):
        with pytest.raises((ConnectionResetError, BlobError)):
            store.put(key, io.BufferedReader(_Exploding(9 * 1024 * 1024)))
    assert not store.exists("new/blob")
    assert store.get("keep/old") == b"old"  # the old object survives a failed overwrite
    assert list(store.list()) == ["keep/old"]
    if isinstance(store, LocalBlobStore):
        leftovers = [p for p in (tmp_path / "blobs").rglob("*") if p.is_file()]
        assert [p.name for p in leftovers] == ["old"]
    else:
        assert isinstance(store, S3BlobStore)
        uploads = store.client.list_multipart_uploads(Bucket=store.bucket).get("Uploads", [])
        assert uploads == []  # the part-way multipart upload was aborted


def test_non_bytes_data_is_refused(store: BlobStore) -> None:
    with pytest.raises(TypeError, match="bytes or a binary file"):
        store.put("a/b", "text is not bytes")  # type: ignore[arg-type]
    assert list(store.list()) == []


def test_20_mb_round_trip(store: BlobStore) -> None:
    data = os.urandom(20 * 1024 * 1024)
    calls: Counter[str] = Counter()
    if isinstance(store, S3BlobStore):
        store.client.meta.events.register(
            "after-call.s3.*", lambda event_name, **_: calls.update([event_name])
        )
    store.put("users/1/models/m/lora.safetensors", data)
    assert store.get("users/1/models/m/lora.safetensors") == data
    if isinstance(store, S3BlobStore):
        # 8 MiB parts: 8 + 8 + 4 → a completed three-part upload, never one PutObject.
        assert calls["after-call.s3.UploadPart"] == 3
        assert calls["after-call.s3.CompleteMultipartUpload"] == 1
        assert calls["after-call.s3.PutObject"] == 0
        head = store.client.head_object(Bucket=store.bucket, Key="tenant/users/1/models/m/lora.safetensors")
        assert head["ETag"].strip('"').endswith("-3")  # S3's mark of a multipart object


def test_s3_lists_through_pages_and_deletes_in_batches(moto_endpoint: str, unique_name: str) -> None:
    client = _s3_client(moto_endpoint)
    client.create_bucket(Bucket=unique_name)
    store = S3BlobStore(unique_name, client=client, list_page_size=2, delete_batch=3)
    calls: Counter[str] = Counter()
    client.meta.events.register("after-call.s3.*", lambda event_name, **_: calls.update([event_name]))
    for n in range(7):
        store.put(f"users/9/renders/j/{n}.png", b"png")
    assert list(store.list("users/9/")) == [f"users/9/renders/j/{n}.png" for n in range(7)]
    assert calls["after-call.s3.ListObjectsV2"] == 4  # 2 + 2 + 2 + 1
    assert store.delete_prefix("users/9/") == 7
    assert calls["after-call.s3.DeleteObjects"] == 3  # 3 + 3 + 1
    assert list(store.list()) == []


def test_s3_errors_are_clear(moto_endpoint: str, unique_name: str) -> None:
    store = S3BlobStore(f"{unique_name}-missing", client=_s3_client(moto_endpoint))
    with pytest.raises(BlobError, match="does not exist"):
        store.put("a", b"x")
    with pytest.raises(BlobError, match="does not exist"):
        store.get("a")


def test_s3_unreachable_endpoint_is_a_blob_error() -> None:
    import boto3
    from botocore.config import Config

    # Port 1 on loopback refuses connections; one attempt keeps the test fast.
    client = boto3.client(
        "s3",
        endpoint_url="http://127.0.0.1:1",
        region_name="us-east-1",
        config=Config(retries={"max_attempts": 1}, connect_timeout=2),
    )
    store = S3BlobStore("bucket", client=client)
    for call in (lambda: store.get("a"), lambda: store.put("a", b"x"), lambda: list(store.list())):
        with pytest.raises(BlobError, match=r"S3 .* in bucket 'bucket' failed"):
            call()


def test_s3_presigned_url_is_fetchable(moto_endpoint: str, unique_name: str) -> None:
    client = _s3_client(moto_endpoint)
    client.create_bucket(Bucket=unique_name)
    store = S3BlobStore(unique_name, "p", client=client)
    store.put("users/1/renders/j/0.png", b"\x89PNG picture", content_type="image/png")
    url = store.url("users/1/renders/j/0.png", expires_s=600)
    # moto serves presigned URLs without enforcing their expiry, so the expiry is checked in the signed query.
    query = parse_qs(urlsplit(url).query)
    assert query["X-Amz-Expires"] == ["600"] and query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
    with urllib.request.urlopen(url, timeout=10) as resp:
        assert resp.read() == b"\x89PNG picture"
        assert resp.headers["Content-Type"] == "image/png"
    with pytest.raises(ValueError, match="7 days"):
        store.url("users/1/renders/j/0.png", expires_s=8 * 86400)


def test_local_signed_link_accept_reject_expire(tmp_path: Path) -> None:
    settings = load_settings(
        blob_url=f"file://{tmp_path / 'blobs'}", blob_public_base_url="https://pics.example/"
    )
    store = open_blob_store(settings)
    assert isinstance(store, LocalBlobStore)
    store.put("users/1/renders/j/0.png", b"png")
    url = store.url("users/1/renders/j/0.png", expires_s=300)
    parts = urlsplit(url)
    assert (
        f"{parts.scheme}://{parts.netloc}{parts.path}" == "https://pics.example/blobs/users/1/renders/j/0.png"
    )
    q = {k: v[0] for k, v in parse_qs(parts.query).items()}
    expires, sig = q["expires"], q["sig"]
    assert int(expires) - time.time() == pytest.approx(300, abs=5)

    # The bot's HTTP side verifies with the settings alone: the generated secret was persisted beside the folder.
    assert verify_blob_signature(settings, "users/1/renders/j/0.png", expires, sig)
    assert not verify_blob_signature(settings, "users/1/renders/j/1.png", expires, sig)  # another key
    assert not verify_blob_signature(
        settings, "users/1/renders/j/0.png", str(int(expires) + 60), sig
    )  # stretched
    # one hex digit changed (always to another digit: a signature ending in "0" once made this a no-op)
    tampered = sig[:-1] + ("1" if sig.endswith("0") else "0")
    assert not verify_blob_signature(settings, "users/1/renders/j/0.png", expires, tampered)
    assert not verify_blob_signature(settings, "users/1/renders/j/0.png", "soon", sig)
    assert not verify_blob_signature(settings, "../etc/passwd", expires, sig)

    expired = store.url("users/1/renders/j/0.png", expires_s=1)
    q = {k: v[0] for k, v in parse_qs(urlsplit(expired).query).items()}
    assert verify_blob_signature(settings, "users/1/renders/j/0.png", q["expires"], q["sig"])
    from storage.blobs.local import check_signature

    assert not check_signature(
        store.secret, "users/1/renders/j/0.png", q["expires"], q["sig"], at=time.time() + 5
    )

    # Another process (a fresh store on the same folder) signs with the same persisted secret.
    again = LocalBlobStore(tmp_path / "blobs", public_base_url="https://pics.example")
    assert again.secret == store.secret and len(store.secret) >= 32
    assert list(again.list()) == ["users/1/renders/j/0.png"]  # the secret is not inside the store


def test_local_secret_from_settings_wins(tmp_path: Path) -> None:
    settings = load_settings(blob_url=f"file://{tmp_path / 'b'}", blob_url_secret="s" * 40)
    store = open_blob_store(settings)
    q = {k: v[0] for k, v in parse_qs(urlsplit(store.url("a/b.png")).query).items()}
    assert verify_blob_signature(settings, "a/b.png", q["expires"], q["sig"])
    assert not (tmp_path / ".b.url-secret").exists()


def test_local_symlink_cannot_escape_root(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    store = LocalBlobStore(tmp_path / "blobs")
    (tmp_path / "blobs" / "users").symlink_to(outside)
    with pytest.raises(InvalidKey, match="outside"):
        store.put("users/1.png", b"x")
    assert list(outside.iterdir()) == []


def test_open_blob_store_picks_s3(moto_endpoint: str, unique_name: str) -> None:
    _s3_client(moto_endpoint).create_bucket(Bucket=unique_name)
    store = open_blob_store(
        load_settings(blob_url=f"s3://{unique_name}/photogen", s3_endpoint_url=moto_endpoint)
    )
    assert isinstance(store, S3BlobStore) and store.prefix == "photogen/"
    store.put("x/y", b"z")
    assert _s3_client(moto_endpoint).get_object(Bucket=unique_name, Key="photogen/x/y")["Body"].read() == b"z"


def test_local_readers_never_see_a_partial_write(tmp_path: Path) -> None:
    import threading

    store = LocalBlobStore(tmp_path / "blobs")
    size = 2 * 1024 * 1024
    store.put("users/1/models/m/lora.safetensors", b"a" * size)
    stop = threading.Event()

    def writer() -> None:
        n = 0
        while not stop.is_set():
            store.put("users/1/models/m/lora.safetensors", (b"b" if n % 2 else b"a") * size)
            n += 1

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        seen = set()
        reads, deadline = 0, time.monotonic() + 10.0
        while (reads < 50 or seen != {b"a", b"b"}) and time.monotonic() < deadline:
            reads += 1
            data = store.get("users/1/models/m/lora.safetensors")
            assert len(data) == size and data.count(data[:1]) == size, "a reader saw a half-written blob"
            seen.add(data[:1])
    finally:
        stop.set()
        thread.join()
    assert seen == {b"a", b"b"}  # the reader really raced the writer
    assert [p.name for p in (tmp_path / "blobs").rglob("*") if p.is_file()] == ["lora.safetensors"]
