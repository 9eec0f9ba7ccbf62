"""The cosign-binary signing path, against a FAKE cosign (no cosign binary can be installed here).

The stand-in records its argument lists; the test checks what would be asked of
a real cosign: sign by digest with our key as stored (already cosign's encrypted
format: nothing is written unencrypted), without Rekor, then attest SLSA
provenance and the CycloneDX SBOM. It says nothing about cosign's own behaviour.
"""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from medianest_delivery.release.cosign_format import CYCLONEDX_PREDICATE, SLSA_PROVENANCE_V1
from medianest_delivery.release.signing_keys import generate_key_pair
from tasks.signing import _sign_with_cosign

FAKE_COSIGN = """#!/usr/bin/env python3
import json, os, sys
log = os.environ["FAKE_COSIGN_LOG"]
with open(log, "a") as out:
    out.write(json.dumps({"argv": sys.argv[1:], "password": os.environ.get("COSIGN_PASSWORD")}) + "\\n")
key = open(sys.argv[sys.argv.index("--key") + 1]).read()
assert key.startswith("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----"), "expects cosign's encrypted key"
"""


def test_cosign_path_with_fake_cosign_stand_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Cosign signs the digest with the stored encrypted key, without Rekor, then attests provenance and SBOM, each with
    the password."""
    fake = tmp_path / "cosign"
    fake.write_text(FAKE_COSIGN)
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    log = tmp_path / "calls.jsonl"
    monkeypatch.setenv("FAKE_COSIGN_LOG", str(log))
    predicates = {SLSA_PROVENANCE_V1: tmp_path / "slsa.json", CYCLONEDX_PREDICATE: tmp_path / "bom.json"}
    reference = "127.0.0.1:5000/medianest/backend@sha256:" + "a" * 64
    _sign_with_cosign(str(fake), reference, generate_key_pair(b"pw"), "pw", predicates)
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert [c["argv"][0] for c in calls] == ["sign", "attest", "attest"]
    assert all(c["password"] == "pw" for c in calls)
    sign = calls[0]["argv"]
    assert sign[-1] == reference
    assert "--tlog-upload=false" in sign
    assert sign[sign.index("--key") + 1].endswith("cosign.key")
    assert [c["argv"][c["argv"].index("--type") + 1] for c in calls[1:]] == ["slsaprovenance1", "cyclonedx"]
