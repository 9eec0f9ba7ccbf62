"""The S3 backend (AWS, MinIO, any S3-compatible endpoint) through boto3.

Large objects go up as multipart uploads that resume: the upload id sits in a
journal beside the local source file, and on the next attempt the parts the
server already holds (same MD5) are skipped. Every part carries Content-MD5,
so the server rejects a damaged part; after completion the object's size and
multipart ETag are compared with what we computed, and a mismatch deletes it.
Until `complete_multipart_upload`, S3 shows nothing under the key at all.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from medianest_delivery.backup.repository import StoredObject, check_key
from medianest_delivery.errors import ConfigError, RepositoryError, VerificationError

PART_SIZE = 8 * 1024 * 1024
READ_SIZE = 1024 * 1024


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


class S3Repository:
    """Objects under s3://bucket/prefix; `client` is a boto3 S3 client (blocks build it)."""

    def __init__(self, client: Any, bucket: str, prefix: str = "", part_size: int = PART_SIZE) -> None:
        if part_size < 5 * 1024 * 1024:
            raise ValueError("S3 multipart parts must be at least 5 MiB")
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.part_size = part_size
        self.parts_uploaded = 0  # by the last multipart put: how many parts went over the wire

    @property
    def location(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}".rstrip("/")

    def _full(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _call(self, what: str, key: str, method: Any, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return method(**kwargs)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("NoSuchKey", "404", "NotFound"):
                raise RepositoryError(f"{self.location}/{key} does not exist") from exc
            raise RepositoryError(f"S3 {what} of {self.location}/{key} failed: {code} {exc}") from exc
        except BotoCoreError as exc:
            raise RepositoryError(f"S3 {what} of {self.location}/{key} failed: {exc}") from exc

    def put_bytes(self, key: str, data: bytes) -> StoredObject:
        md5 = hashlib.md5(data, usedforsecurity=False)
        self._call(
            "put",
            key,
            self.client.put_object,
            Bucket=self.bucket,
            Key=self._full(key),
            Body=data,
            ContentMD5=_b64(md5.digest()),
            Metadata={"sha256": hashlib.sha256(data).hexdigest()},
        )
        self._confirm(key, len(data), md5.hexdigest())
        return StoredObject(key, len(data))

    def put_file(self, key: str, source: Path, sha256: str) -> StoredObject:
        size = source.stat().st_size
        if size <= self.part_size:
            data = source.read_bytes()
            if hashlib.sha256(data).hexdigest() != sha256:
                raise VerificationError(f"{source} changed: its SHA-256 no longer matches {sha256}; nothing uploaded")
            return self.put_bytes(key, data)
        return self._put_multipart(key, source, size, sha256)

    def _journal_path(self, source: Path) -> Path:
        return source.with_name(source.name + ".upload.json")

    def _resume_or_start(self, key: str, journal: Path, sha256: str) -> tuple[str, dict[int, str]]:
        from botocore.exceptions import ClientError

        if journal.exists():
            saved = json.loads(journal.read_text())
            if saved.get("key") == key and saved.get("sha256") == sha256 and saved.get("part_size") == self.part_size:
                upload_id = str(saved["upload_id"])
                try:
                    held: dict[int, str] = {}
                    paginator = self.client.get_paginator("list_parts")
                    pages = paginator.paginate(Bucket=self.bucket, Key=self._full(key), UploadId=upload_id)
                    for page in pages:
                        for part in page.get("Parts", []):
                            held[int(part["PartNumber"])] = str(part["ETag"]).strip('"')
                    return upload_id, held
                except ClientError as exc:
                    if exc.response.get("Error", {}).get("Code") != "NoSuchUpload":
                        raise RepositoryError(f"S3 list parts of {self.location}/{key} failed: {exc}") from exc
                    # the upload was completed, aborted or expired: start a new one
        reply = self._call(
            "create multipart upload",
            key,
            self.client.create_multipart_upload,
            Bucket=self.bucket,
            Key=self._full(key),
            Metadata={"sha256": sha256},
        )
        upload_id = str(reply["UploadId"])
        journal.write_text(
            json.dumps({"key": key, "sha256": sha256, "part_size": self.part_size, "upload_id": upload_id})
        )
        return upload_id, {}

    def _stored_already(self, key: str, size: int, sha256: str) -> bool:
        """True when a previous attempt completed this very object (e.g. it failed only at the check)."""
        try:
            head = self._call("head", key, self.client.head_object, Bucket=self.bucket, Key=self._full(key))
        except RepositoryError as exc:
            if "does not exist" in str(exc):
                return False
            raise
        return int(head["ContentLength"]) == size and head.get("Metadata", {}).get("sha256") == sha256

    def _put_multipart(self, key: str, source: Path, size: int, sha256: str) -> StoredObject:
        journal = self._journal_path(source)
        self.parts_uploaded = 0
        if journal.exists() and self._stored_already(key, size, sha256):
            self._confirm(key, size, self._multipart_etag(source))
            journal.unlink(missing_ok=True)
            return StoredObject(key, size)
        upload_id, held = self._resume_or_start(key, journal, sha256)
        digest = hashlib.sha256()
        part_md5s: list[bytes] = []
        parts = []
        with source.open("rb") as stream:
            number = 0
            while data := stream.read(self.part_size):
                number += 1
                digest.update(data)
                md5 = hashlib.md5(data, usedforsecurity=False)
                part_md5s.append(md5.digest())
                if held.get(number) == md5.hexdigest():
                    parts.append({"PartNumber": number, "ETag": f'"{md5.hexdigest()}"'})
                    continue
                reply = self._call(
                    f"upload of part {number}",
                    key,
                    self.client.upload_part,
                    Bucket=self.bucket,
                    Key=self._full(key),
                    UploadId=upload_id,
                    PartNumber=number,
                    Body=data,
                    ContentMD5=_b64(md5.digest()),
                )
                self.parts_uploaded += 1
                parts.append({"PartNumber": number, "ETag": reply["ETag"]})
        if digest.hexdigest() != sha256:
            self._call(
                "abort",
                key,
                self.client.abort_multipart_upload,
                Bucket=self.bucket,
                Key=self._full(key),
                UploadId=upload_id,
            )
            journal.unlink(missing_ok=True)
            raise VerificationError(
                f"{source} changed during upload: SHA-256 {digest.hexdigest()} != {sha256}; aborted"
            )
        self._call(
            "complete multipart upload",
            key,
            self.client.complete_multipart_upload,
            Bucket=self.bucket,
            Key=self._full(key),
            UploadId=upload_id,
            MultipartUpload={"Parts": parts},
        )
        expected_etag = hashlib.md5(b"".join(part_md5s), usedforsecurity=False).hexdigest() + f"-{len(part_md5s)}"
        self._confirm(key, size, expected_etag)
        journal.unlink(missing_ok=True)
        return StoredObject(key, size)

    def _multipart_etag(self, source: Path) -> str:
        md5s = []
        with source.open("rb") as stream:
            while data := stream.read(self.part_size):
                md5s.append(hashlib.md5(data, usedforsecurity=False).digest())
        return hashlib.md5(b"".join(md5s), usedforsecurity=False).hexdigest() + f"-{len(md5s)}"

    def _confirm(self, key: str, size: int, expected_etag: str) -> None:
        head = self._call("head", key, self.client.head_object, Bucket=self.bucket, Key=self._full(key))
        etag = str(head.get("ETag", "")).strip('"')
        if int(head["ContentLength"]) != size or etag != expected_etag:
            self._call("delete", key, self.client.delete_object, Bucket=self.bucket, Key=self._full(key))
            raise VerificationError(
                f"{self.location}/{key}: server holds {head['ContentLength']} bytes with ETag {etag}, "
                f"expected {size} bytes with ETag {expected_etag}; the object was deleted"
            )

    def get_chunks(self, key: str) -> Iterator[bytes]:
        reply = self._call("get", key, self.client.get_object, Bucket=self.bucket, Key=self._full(key))
        body = reply["Body"]
        try:
            yield from body.iter_chunks(READ_SIZE)
        finally:
            body.close()

    def get_bytes(self, key: str) -> bytes:
        return b"".join(self.get_chunks(key))

    def list_objects(self, prefix: str) -> list[StoredObject]:
        if ".." in prefix.split("/") or prefix.startswith("/"):
            raise ConfigError(f"repository prefix {prefix!r} must be relative without '..'")
        base = f"{self.prefix}/" if self.prefix else ""
        full_prefix = base + prefix
        strip = len(self.prefix) + 1 if self.prefix else 0
        found = []
        paginator = self.client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=full_prefix):
                for item in page.get("Contents", []):
                    found.append(StoredObject(str(item["Key"])[strip:], int(item["Size"])))
        except Exception as exc:  # botocore raises several unrelated types here
            raise RepositoryError(f"S3 list of {self.location}/{prefix} failed: {exc}") from exc
        return sorted(found, key=lambda o: o.key)

    def exists(self, key: str) -> bool:
        try:
            self._call("head", key, self.client.head_object, Bucket=self.bucket, Key=self._full(key))
        except RepositoryError as exc:
            if "does not exist" in str(exc):
                return False
            raise
        return True

    def delete(self, keys: list[str]) -> None:
        for start in range(0, len(keys), 1000):
            batch = [{"Key": self._full(k)} for k in keys[start : start + 1000]]
            if batch:
                self._call(
                    "delete", keys[start], self.client.delete_objects, Bucket=self.bucket, Delete={"Objects": batch}
                )
