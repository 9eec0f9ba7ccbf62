"""A small OCI distribution-spec client (httpx): manifests and blobs by digest.

Handles anonymous, basic and bearer-token auth (GHCR, Docker Hub style
``WWW-Authenticate: Bearer realm=...``). Connection failures and 5xx answers
raise RegistryError so that Prefect task retries can absorb transient faults.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import httpx

from medianest_delivery.errors import RegistryError, VerificationError
from medianest_delivery.release.cosign_format import (
    OCI_MANIFEST_MEDIA_TYPE,
    Layer,
    artifact_config,
    artifact_manifest,
    sha256_digest,
)

MANIFEST_ACCEPT = ", ".join(
    [
        OCI_MANIFEST_MEDIA_TYPE,
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    ]
)
_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')


@dataclass(frozen=True)
class Manifest:
    data: bytes
    media_type: str
    digest: str


class RegistryClient:
    def __init__(
        self,
        registry: str,
        *,
        username: str | None = None,
        password: str | None = None,
        insecure: bool = True,
        timeout: float = 30.0,
    ) -> None:
        scheme = "http" if insecure else "https"
        self.registry = registry
        self.base = f"{scheme}://{registry}"
        self.auth = (username, password) if username and password else None
        self.client = httpx.Client(timeout=timeout)
        self._token: str | None = None

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _request(self, method: str, url: str, **kwargs: object) -> httpx.Response:
        headers = dict(kwargs.pop("headers", {}) or {})  # type: ignore[call-overload]
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        try:
            response = self.client.request(method, url, headers=headers, auth=self._basic(), **kwargs)  # type: ignore[arg-type]
            if response.status_code == 401 and self._authenticate(response):
                headers["Authorization"] = f"Bearer {self._token}"
                response = self.client.request(method, url, headers=headers, **kwargs)  # type: ignore[arg-type]
        except httpx.TransportError as exc:
            raise RegistryError(f"registry {self.registry} unreachable: {exc}") from exc
        if response.status_code >= 500:
            raise RegistryError(f"registry {self.registry} answered {response.status_code} to {method} {url}")
        return response

    def _basic(self) -> httpx.BasicAuth | None:
        if self.auth and not self._token:
            return httpx.BasicAuth(*self.auth)  # type: ignore[arg-type]
        return None

    def _authenticate(self, response: httpx.Response) -> bool:
        challenge = response.headers.get("WWW-Authenticate", "")
        if not challenge.lower().startswith("bearer"):
            return False
        params = dict(_CHALLENGE_PARAM.findall(challenge))
        realm = params.pop("realm", None)
        if not realm:
            return False
        token_response = self.client.get(realm, params=params, auth=httpx.BasicAuth(*self.auth) if self.auth else None)  # type: ignore[misc]
        if token_response.status_code != 200:
            raise RegistryError(f"registry {self.registry} refused credentials ({token_response.status_code})")
        body = token_response.json()
        self._token = body.get("token") or body.get("access_token")
        return bool(self._token)

    def ping(self) -> None:
        response = self._request("GET", f"{self.base}/v2/")
        if response.status_code not in (200, 401):
            raise RegistryError(f"{self.base}/v2/ answered {response.status_code}: not an OCI registry")

    def get_manifest(self, repository: str, reference: str) -> Manifest | None:
        response = self._request(
            "GET", f"{self.base}/v2/{repository}/manifests/{reference}", headers={"Accept": MANIFEST_ACCEPT}
        )
        if response.status_code == 404:
            return None
        self._raise_for(response, f"GET manifest {repository}:{reference}")
        digest = sha256_digest(response.content)
        header_digest = response.headers.get("Docker-Content-Digest")
        if header_digest and header_digest != digest and reference.startswith("sha256:"):
            raise VerificationError(f"registry served {repository}@{reference} with digest {digest}")
        if reference.startswith("sha256:") and digest != reference:
            raise VerificationError(f"manifest {repository}@{reference} hashes to {digest}: tampered or corrupt")
        return Manifest(response.content, response.headers.get("Content-Type", ""), digest)

    def resolve(self, repository: str, reference: str) -> str | None:
        manifest = self.get_manifest(repository, reference)
        return manifest.digest if manifest else None

    def put_manifest(self, repository: str, reference: str, data: bytes, media_type: str) -> str:
        response = self._request(
            "PUT",
            f"{self.base}/v2/{repository}/manifests/{reference}",
            content=data,
            headers={"Content-Type": media_type},
        )
        self._raise_for(response, f"PUT manifest {repository}:{reference}")
        return sha256_digest(data)

    def blob_exists(self, repository: str, digest: str) -> bool:
        return self._request("HEAD", f"{self.base}/v2/{repository}/blobs/{digest}").status_code == 200

    def put_blob(self, repository: str, data: bytes) -> str:
        digest = sha256_digest(data)
        if self.blob_exists(repository, digest):
            return digest
        start = self._request("POST", f"{self.base}/v2/{repository}/blobs/uploads/")
        self._raise_for(start, f"start blob upload to {repository}")
        location = start.headers["Location"]
        if location.startswith("/"):
            location = self.base + location
        separator = "&" if "?" in location else "?"
        done = self._request(
            "PUT",
            f"{location}{separator}digest={digest}",
            content=data,
            headers={"Content-Type": "application/octet-stream"},
        )
        self._raise_for(done, f"upload blob {digest} to {repository}")
        return digest

    def get_blob(self, repository: str, digest: str) -> bytes:
        response = self._request("GET", f"{self.base}/v2/{repository}/blobs/{digest}", follow_redirects=True)
        self._raise_for(response, f"GET blob {repository}@{digest}")
        if sha256_digest(response.content) != digest:
            raise VerificationError(f"blob {repository}@{digest} does not match its digest: tampered or corrupt")
        return response.content

    def push_artifact(self, repository: str, tag: str, layers: list[Layer]) -> str:
        """Push layers plus cosign's config as one OCI manifest under ``tag``."""
        config = artifact_config(layers)
        self.put_blob(repository, config)
        for layer in layers:
            self.put_blob(repository, layer.data)
        return self.put_manifest(repository, tag, artifact_manifest(config, layers), OCI_MANIFEST_MEDIA_TYPE)

    def pull_artifact_layers(self, repository: str, tag: str) -> list[Layer]:
        """Layers (with data) of the artifact at ``tag``; empty when the tag does not exist."""
        import json

        manifest = self.get_manifest(repository, tag)
        if manifest is None:
            return []
        body = json.loads(manifest.data)
        return [
            Layer(entry["mediaType"], self.get_blob(repository, entry["digest"]), entry.get("annotations") or {})
            for entry in body.get("layers", [])
        ]

    @staticmethod
    def _raise_for(response: httpx.Response, what: str) -> None:
        if response.status_code == 401:
            raise RegistryError(
                f"{what} failed: HTTP 401, the registry wants credentials that were not given or are wrong"
                " (the OciRegistry block's username and password)"
            )
        if response.status_code >= 400:
            raise RegistryError(f"{what} failed: HTTP {response.status_code} {response.text[:200]}")
