"""The [compliance] config section: defaults, every error located, the signing key never shown."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bridge.errors import ConfigError
from compliance.settings import load_signing_key, settings_from


def test_defaults_are_usable() -> None:
    settings = settings_from({})
    assert settings.packs == ["itil", "dora", "audit"] and settings.priority_for(3, 3) == 4
    assert settings.entity.member_state == "DE" and settings.month_rule == "end_of_day"


def test_every_problem_is_reported_with_its_path() -> None:
    with pytest.raises(ConfigError) as caught:
        settings_from({"entity": {"member_state": "DX", "type": "credit_institutoin", "currency": "USD"},
                       "packs": ["dora", "sox"], "priority_matrix": [[1, 2]], "signing_key": "c2VjcmV0"})
    text = str(caught.value)
    assert "compliance.entity.member_state: 'DX' is not a known Member State code" in text
    assert "did you mean 'credit_institution'?" in text
    assert "compliance.entity.currency" in text and "compliance.packs" in text
    assert "compliance.priority_matrix" in text
    assert "compliance.signing_key: must be a secret reference" in text and "c2VjcmV0" not in text


def test_signing_key_from_raw_base64_or_pem(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = Ed25519PrivateKey.generate()
    monkeypatch.setenv("EVIDENCE_KEY", base64.b64encode(key.private_bytes_raw()).decode())
    loaded = load_signing_key(settings_from({"signing_key": "env:EVIDENCE_KEY"}))
    assert loaded.public_key().public_bytes_raw() == key.public_key().public_bytes_raw()
    (tmp_path / "k.txt").write_text("not a key")
    with pytest.raises(ConfigError) as caught:
        load_signing_key(settings_from({"signing_key": "file:k.txt"}), base_dir=tmp_path)
    assert "not an Ed25519 private key" in str(caught.value) and "not a key" not in str(caught.value)
