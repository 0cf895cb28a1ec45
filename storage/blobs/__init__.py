"""Blob stores behind one interface (storage.blobs.base.BlobStore): a local folder or an S3 bucket.

``open_blob_store(settings)`` picks the backend from BLOB_URL (file://DIR or s3://BUCKET[/PREFIX]).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from storage.blobs.base import BlobError, BlobNotFound, BlobStore, InvalidKey, validate_key

if TYPE_CHECKING:
    from storage.settings import Settings

__all__ = ["BlobError", "BlobNotFound", "BlobStore", "InvalidKey", "open_blob_store", "validate_key"]


def open_blob_store(settings: Settings) -> BlobStore:
    """The blob store BLOB_URL names. Local links are served by the bot at BLOB_PUBLIC_BASE_URL (default: the
    bot's own HTTP address)."""
    url = settings.blob_url
    if url.startswith("file://"):
        from storage.blobs.local import LocalBlobStore

        secret = settings.blob_url_secret.get_secret_value().encode() if settings.blob_url_secret else None
        base = settings.blob_public_base_url or f"http://{settings.bot_http_host}:{settings.bot_http_port}"
        return LocalBlobStore(Path(url.removeprefix("file://")), public_base_url=base, secret=secret)
    if url.startswith("s3://"):
        from storage.blobs.s3 import S3BlobStore, parse_s3_url

        bucket, prefix = parse_s3_url(url)
        return S3BlobStore(
            bucket,
            prefix,
            region=settings.aws_region,
            endpoint_url=settings.s3_endpoint_url or settings.aws_endpoint_url,
        )
    raise BlobError(f"BLOB_URL must be file://DIR or s3://BUCKET[/PREFIX], got {url.split(':', 1)[0]}:…")
