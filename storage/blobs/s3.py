"""A blob store in an S3 bucket (Amazon S3 or any S3-compatible server reached through an endpoint URL).

Uploads go through boto3's managed transfer, so objects above the multipart threshold are sent in parts
(and retried part by part). Links are presigned GETs that expire.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from typing import Any, BinaryIO

import boto3
from boto3.exceptions import S3UploadFailedError
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from storage.blobs.base import BlobError, BlobNotFound, BlobStore, InvalidKey, validate_key

MB = 1024 * 1024
# S3 refuses parts under 5 MiB (except the last); 8 MiB parts keep a 20 MB render to three requests.
DEFAULT_TRANSFER = TransferConfig(multipart_threshold=8 * MB, multipart_chunksize=8 * MB, max_concurrency=4)
_DELETE_BATCH = 1000  # the most keys one DeleteObjects call takes
_NOT_FOUND = {"NoSuchKey", "404", "NotFound"}


def parse_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` → ("bucket", "some/prefix/")."""
    if not url.startswith("s3://"):
        raise ValueError(f"not an s3:// URL: {url!r}")
    bucket, _, prefix = url.removeprefix("s3://").partition("/")
    if not bucket:
        raise ValueError("s3:// URL names no bucket")
    prefix = prefix.strip("/")
    if prefix:
        validate_key(prefix)
        prefix += "/"
    return bucket, prefix


def make_s3_client(region: str, endpoint_url: str | None = None) -> Any:
    config = Config(
        region_name=region,
        signature_version="s3v4",
        retries={"mode": "standard", "max_attempts": 5},
        # Path-style addressing: S3-compatible servers (MinIO, moto, SeaweedFS) rarely serve bucket subdomains.
        s3={"addressing_style": "path" if endpoint_url else "auto"},
    )
    return boto3.session.Session().client("s3", endpoint_url=endpoint_url, config=config)


TRAINING_PHOTO_TAG = "photogen-kind=training-photo"
_TRAINING_PHOTO = re.compile(r"^users/[^/]+/photos/")
CHECKPOINT_TAG = "photogen-kind=checkpoint"
_CHECKPOINT = re.compile(r"^users/[^/]+/checkpoints/")
PREVIEW_TAG = "photogen-kind=preview"
_PREVIEW = re.compile(r"^users/[^/]+/previews/")


class S3BlobStore(BlobStore):
    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        client: Any | None = None,
        region: str = "us-east-1",
        endpoint_url: str | None = None,
        transfer_config: TransferConfig | None = None,
        list_page_size: int = 1000,
        delete_batch: int = _DELETE_BATCH,
    ) -> None:
        self.bucket = bucket
        if prefix:
            validate_key(prefix, prefix=True)
            prefix = prefix if prefix.endswith("/") else prefix + "/"
        self.prefix = prefix
        self.client = client if client is not None else make_s3_client(region, endpoint_url)
        self.transfer_config = transfer_config or DEFAULT_TRANSFER
        self.list_page_size = list_page_size
        self.delete_batch = min(delete_batch, _DELETE_BATCH)

    def __repr__(self) -> str:
        return f"S3BlobStore(s3://{self.bucket}/{self.prefix})"

    def _full(self, key: str) -> str:
        return self.prefix + validate_key(key)

    def _error(self, op: str, key: str, err: Exception) -> BlobError:
        if isinstance(err, ClientError):
            code = str(err.response.get("Error", {}).get("Code", ""))
            message = err.response.get("Error", {}).get("Message", "") or code
            if code in _NOT_FOUND:
                return BlobNotFound(key)
            if code == "NoSuchBucket":
                return BlobError(f"S3 bucket {self.bucket!r} does not exist ({op} {key!r})")
            return BlobError(f"S3 {op} {key!r} in bucket {self.bucket!r} failed: {code}: {message}")
        return BlobError(f"S3 {op} {key!r} in bucket {self.bucket!r} failed: {err}")

    def put(self, key: str, data: bytes | BinaryIO, content_type: str | None = None) -> None:
        full = self._full(key)
        if isinstance(data, (bytes, bytearray, memoryview)):
            source: Any = io.BytesIO(data)
        elif callable(getattr(data, "read", None)):
            source = data
        else:
            raise TypeError(f"blob data must be bytes or a binary file object, got {type(data).__name__}")
        extra = {"ContentType": content_type} if content_type else {}
        if _TRAINING_PHOTO.match(key):
            # S3 lifecycle filters cannot wildcard users/*/photos/: the expiry rule for training photos
            # (photogen aws bootstrap, PHOTO_RETENTION_DAYS) matches this tag instead.
            extra["Tagging"] = TRAINING_PHOTO_TAG
        elif _CHECKPOINT.match(key):
            extra["Tagging"] = CHECKPOINT_TAG  # abandoned checkpoints expire (photogen aws bootstrap)
        elif _PREVIEW.match(key):
            extra["Tagging"] = PREVIEW_TAG  # previews are worth a day
        try:
            # A multipart upload only becomes an object when completed, and a failed one is aborted by the
            # transfer manager: a failed put leaves no object behind.
            self.client.upload_fileobj(
                source, self.bucket, full, ExtraArgs=extra, Config=self.transfer_config
            )
        except S3UploadFailedError as err:
            cause = err.__cause__ if isinstance(err.__cause__, ClientError) else err
            if "NoSuchBucket" in str(err):
                raise BlobError(f"S3 bucket {self.bucket!r} does not exist (put {key!r})") from err
            raise self._error("put", key, cause) from err
        except (ClientError, BotoCoreError) as err:
            raise self._error("put", key, err) from err

    def get(self, key: str) -> bytes:
        full = self._full(key)
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=full)
            return response["Body"].read()
        except (ClientError, BotoCoreError) as err:
            raise self._error("get", key, err) from err

    def exists(self, key: str) -> bool:
        full = self._full(key)
        try:
            self.client.head_object(Bucket=self.bucket, Key=full)
            return True
        except ClientError as err:
            mapped = self._error("head", key, err)
            if isinstance(mapped, BlobNotFound):
                return False
            raise mapped from err
        except BotoCoreError as err:
            raise self._error("head", key, err) from err

    def list(self, prefix: str = "") -> Iterator[str]:
        validate_key(prefix, prefix=True)
        paginator = self.client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(
                Bucket=self.bucket,
                Prefix=self.prefix + prefix,
                PaginationConfig={"PageSize": self.list_page_size},
            ):
                for item in page.get("Contents", []):
                    yield item["Key"][len(self.prefix) :]
        except (ClientError, BotoCoreError) as err:
            raise self._error("list", prefix, err) from err

    def delete(self, key: str) -> None:
        full = self._full(key)
        try:
            self.client.delete_object(Bucket=self.bucket, Key=full)
        except (ClientError, BotoCoreError) as err:
            mapped = self._error("delete", key, err)
            if not isinstance(mapped, BlobNotFound):
                raise mapped from err

    def delete_prefix(self, prefix: str) -> int:
        if not prefix:
            raise InvalidKey("refusing to delete every blob: the prefix is empty")
        validate_key(prefix, prefix=True)
        keys = [self.prefix + k for k in self.list(prefix)]
        deleted = 0
        for start in range(0, len(keys), self.delete_batch):
            batch = keys[start : start + self.delete_batch]
            try:
                response = self.client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True}
                )
            except (ClientError, BotoCoreError) as err:
                raise self._error("delete", prefix, err) from err
            errors = response.get("Errors", [])
            if errors:
                first = errors[0]
                raise BlobError(
                    f"S3 delete under {prefix!r} failed for {len(errors)} key(s), e.g. "
                    f"{first.get('Key')!r}: {first.get('Code')}: {first.get('Message')}"
                )
            deleted += len(batch)
        return deleted

    def url(self, key: str, expires_s: int = 3600) -> str:
        full = self._full(key)
        if not 0 < expires_s <= 604800:
            raise ValueError("expires_s must be between 1 s and 7 days (S3's limit for presigned URLs)")
        try:
            return self.client.generate_presigned_url(
                "get_object", Params={"Bucket": self.bucket, "Key": full}, ExpiresIn=int(expires_s)
            )
        except (ClientError, BotoCoreError) as err:
            raise self._error("presign", key, err) from err
