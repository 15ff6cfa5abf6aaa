"""The ``[compliance]`` config section: who the entity is, its SLAs, and the knobs the law leaves open.

Thresholds and calendars are data, not code: the priority matrix, SLA minutes, the "undue delay" the
law does not quantify and the one-month counting rule are all here, each with a default that is
documented in the compliance spec (marks [!] there mean "unconfirmed, make it configurable").

`settings_from(raw)` builds the model from the free ``compliance`` dict of the main config and raises
`ConfigError` naming every bad option by its full path (``compliance.entity.member_state``), like the
rest of the config. The signing key is a secret reference, resolved only when a bundle is signed.
"""

from __future__ import annotations

import base64
import difflib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from bridge.errors import ConfigError, ConfigProblem
from bridge.secrets import SECRET_HINT, SecretResolutionError, is_secret_ref, resolve_secret
from compliance import vocab

PACK_NAMES = ("itil", "dora", "nis2", "audit")
#: ServiceNow's default Impact x Urgency -> Priority lookup (rows impact 1..3, columns urgency 1..3).
#: The 3/3 cell is 4 (Low) in the incident docs and 5 (Planning) in the problem docs [!]: configurable.
SERVICENOW_MATRIX: list[list[int]] = [[1, 2, 3], [2, 3, 4], [3, 4, 4]]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Contact(_Strict):
    name: str | None = None
    email: str | None = None
    phone: str | None = None


class Party(_Strict):
    """Another legal person named in a report (parent undertaking, third-party submitter)."""

    name: str | None = None
    lei: str | None = None
    code: str | None = None


class Entity(_Strict):
    """The financial entity: ITS 2025/302 Annex I fields 1.2-1.15 and what decides which rules apply."""

    name: str | None = None
    lei: str | None = Field(None, pattern=r"^[A-Z0-9]{18}[0-9]{2}$")
    code: str | None = Field(None, description="1.3 code if not the LEI")
    type: str | None = Field(None, description="field 1.4, e.g. credit_institution")
    member_state: str = "DE"
    subdivision: str | None = Field(None, description="regional holidays, e.g. BY (holidays package code)")
    currency: str = "EUR"
    nis2: Literal["none", "essential", "important"] = "none"
    weekend_rule_excluded: bool = Field(False, description="RTS 2025/301 Art. 5(6): excluded by the CA")
    microenterprise: bool = False
    simplified_framework: bool = Field(False, description="DORA Art. 16(1) entity (no recurring test)")
    contact: Contact = Field(default_factory=Contact)
    second_contact: Contact | None = None
    parent: Party | None = None
    submitter: Party | None = Field(None, description="a third party submitting for the entity (1.2/1.3)")

    @field_validator("type")
    @classmethod
    def _type(cls, value: str | None) -> str | None:
        return _one_of(value, vocab.ENTITY_TYPES, "entity type (template field 1.4)")

    @field_validator("member_state")
    @classmethod
    def _state(cls, value: str) -> str:
        return _one_of(value.upper(), vocab.MEMBER_STATES, "Member State code")  # type: ignore[return-value]

    @field_validator("currency")
    @classmethod
    def _currency(cls, value: str) -> str:
        return _one_of(value.upper(), vocab.CURRENCIES, "report currency (field 1.15)")  # type: ignore[return-value]

    @property
    def zone(self) -> str:
        return vocab.MEMBER_STATE_ZONES[self.member_state]


class Sla(_Strict):
    response_minutes: int | None = Field(None, gt=0)
    resolution_minutes: int | None = Field(None, gt=0)


class ComplianceSettings(_Strict):
    """Everything the rule packs read from config. Defaults give a usable check out of the box."""

    entity: Entity = Field(default_factory=Entity)
    packs: list[str] = Field(default_factory=lambda: ["itil", "dora", "audit"])
    sla: dict[int, Sla] = Field(default_factory=dict, description="per priority 1..5")
    pause_on_hold: bool = Field(True, description="On Hold time does not count against resolution SLAs")
    priority_matrix: list[list[int]] = Field(default_factory=lambda: [row[:] for row in SERVICENOW_MATRIX])
    undue_delay_hours: float = Field(24.0, gt=0, description="[!] 'without undue delay' for T3, CL1, M1")
    deadline_lead_minutes: int = Field(60, ge=0, description="warn this long before a report deadline")
    month_rule: Literal["end_of_day", "same_time"] = Field(
        "end_of_day", description="[!] one calendar month: Reg. 1182/71 end of the same date, or same time")
    nis2_notification_hours: int = Field(72, gt=0, description="24 for trust service providers")
    signing_key: str | None = Field(None, description="env:NAME or file:PATH of an Ed25519 private key")
    desk_fields: dict[str, str] = Field(default_factory=dict, description="timeline field -> desk field that feeds it, "
                                        "e.g. major = \"u_dora_major\"")
    clock_interval_seconds: float = Field(60.0, gt=0, description="how often the daemon checks report deadlines")

    @field_validator("desk_fields")
    @classmethod
    def _desk_targets(cls, value: dict[str, str]) -> dict[str, str]:
        from compliance.feed import DESK_FIELD_TARGETS

        for target in value:
            _one_of(target, DESK_FIELD_TARGETS, "timeline field")
        return value

    @field_validator("packs")
    @classmethod
    def _packs(cls, value: list[str]) -> list[str]:
        for name in value:
            _one_of(name, PACK_NAMES, "rule pack")
        return value

    @field_validator("sla")
    @classmethod
    def _priorities(cls, value: dict[int, Sla]) -> dict[int, Sla]:
        for priority in value:
            if not 1 <= priority <= 5:
                raise ValueError(f"priority {priority} out of range: use [compliance.sla.1] to [compliance.sla.5]")
        return value

    @field_validator("priority_matrix")
    @classmethod
    def _matrix(cls, value: list[list[int]]) -> list[list[int]]:
        if len(value) != 3 or any(len(row) != 3 for row in value) or \
                any(not 1 <= cell <= 5 for row in value for cell in row):
            raise ValueError("must be 3 rows (impact 1-3) of 3 priorities 1-5 (urgency 1-3), "
                             "e.g. [[1, 2, 3], [2, 3, 4], [3, 4, 4]]")
        return value

    @field_validator("signing_key")
    @classmethod
    def _secret(cls, value: str | None) -> str | None:
        if value is not None and not is_secret_ref(value):
            raise ValueError(f"must be a secret reference, not the key itself ({SECRET_HINT})")
        return value

    def priority_for(self, impact: int, urgency: int) -> int:
        return self.priority_matrix[impact - 1][urgency - 1]


def _one_of(value: str | None, allowed: tuple[str, ...], what: str) -> str | None:
    if value is None or value in allowed:
        return value
    close = difflib.get_close_matches(value, list(allowed), n=1)
    hint = f"did you mean {close[0]!r}?" if close else "one of: " + ", ".join(allowed)
    raise ValueError(f"{value!r} is not a known {what}; {hint}")


def settings_from(raw: dict[str, Any] | ComplianceSettings | None, *,
                  source: str = "config.toml") -> ComplianceSettings:
    """Build settings from the ``compliance`` table of a config; every problem is reported at once."""
    if isinstance(raw, ComplianceSettings):
        return raw
    try:
        return ComplianceSettings.model_validate(raw or {})
    except ValidationError as exc:
        raise ConfigError(source, [_problem(error) for error in exc.errors()]) from None


def _problem(error: Any) -> ConfigProblem:
    location = "compliance" + "".join(f".{part}" for part in error["loc"])
    if error["type"] == "extra_forbidden":
        return ConfigProblem(location, "unrecognized option", _near(error["loc"]) or "remove it")
    if error["type"] == "missing":
        return ConfigProblem(location, "required option is missing")
    message = error["msg"].removeprefix("Value error, ")
    value = error.get("input")
    secret = error["loc"][-1:] == ("signing_key",)
    shown = f" (got {value!r})" if value is not None and not isinstance(value, (dict, list)) and not secret else ""
    return ConfigProblem(location, message + shown)


def _near(loc: tuple[Any, ...]) -> str:
    models: dict[tuple[Any, ...], type[BaseModel]] = {
        (): ComplianceSettings, ("entity",): Entity, ("entity", "contact"): Contact,
        ("entity", "second_contact"): Contact, ("entity", "parent"): Party, ("entity", "submitter"): Party,
    }
    parent = tuple(loc[:-1])
    model = Sla if len(parent) == 2 and parent[0] == "sla" else models.get(parent)
    close = difflib.get_close_matches(str(loc[-1]), list(model.model_fields) if model else [], n=1)
    return f"did you mean {close[0]!r}?" if close else ""


def load_signing_key(settings: ComplianceSettings, *, base_dir: Path | None = None) -> Any:
    """The Ed25519 private key the evidence manifest is signed with (PEM, or raw 32 bytes in base64).

    Raises `ConfigError` at ``compliance.signing_key`` without ever showing the key material.
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    where = "compliance.signing_key"
    if not settings.signing_key:
        raise ConfigError("config", [ConfigProblem(where, "no signing key configured",
                                                   "set signing_key = \"file:evidence-signing.pem\" (an Ed25519 key, "
                                                   "e.g. from `openssl genpkey -algorithm ed25519`)")])
    try:
        secret = resolve_secret(settings.signing_key, base_dir=base_dir).get_secret_value().strip()
    except SecretResolutionError as exc:
        raise ConfigError("config", [ConfigProblem(where, str(exc))]) from None
    try:
        if secret.startswith("-----BEGIN"):
            key = serialization.load_pem_private_key(secret.encode(), password=None)
        else:
            key = Ed25519PrivateKey.from_private_bytes(base64.b64decode(secret, validate=True))
    except Exception:  # noqa: BLE001 - any parse failure means the same thing to the admin
        key = None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError("config", [ConfigProblem(where, "the referenced secret is not an Ed25519 private key",
                                                   "use a PEM key or the raw 32-byte key in base64")])
    return key
