"""DORA major incident report drafts (ITS 2025/302 Annex I) in the ESAs' IR-1.2.1 JSON shape.

`field_values` fills the template's numbered fields (1.1 ... 4.16) from the timeline and the entity
config; `missing_fields` lists the mandatory ones still empty for a stage (compliance-spec §7 F1-F3, plus
what the IR schema itself requires, e.g. 4.9 for final reports); `draft_report` builds the document and
validates it with jsonschema (Draft 2020-12). A draft is only meant to be sent when nothing is missing:
the CLI shows the missing fields instead of an invalid document.

Sections follow the stage (initial: 1-2, intermediate: 1-3, final: 1-4; the ITS lets later fields be
pre-filled, but an unrequested half-filled section helps no one). Times are UTC ``YYYY-MM-DDThh:mm:ssZ``
and durations ``DDD:HH:MM`` as Annex II asks.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any

from compliance import vocab
from compliance.classification import CRITERIA, Assessment, assess
from compliance.settings import ComplianceSettings
from compliance.timeline import Timeline

SCHEMA_PATH = Path(__file__).with_name("schemas") / "dora-incident-report-IR-1.2.1.schema.json"
SUBMISSION = {"initial": "initial_notification", "intermediate": "intermediate_report",
              "final": "final_report", "reclassified": "major_incident_reclassified_as_non-major"}

LABELS: dict[str, str] = {
    "1.1": "type of submission", "1.2": "name of the submitting entity", "1.3": "code of the submitting entity",
    "1.4": "type of the affected financial entity", "1.5": "name of the affected entity",
    "1.6": "LEI of the affected entity", "1.7": "primary contact name", "1.8": "primary contact e-mail",
    "1.9": "primary contact phone", "1.10": "second contact name", "1.11": "second contact e-mail",
    "1.12": "second contact phone", "1.13": "ultimate parent name", "1.14": "ultimate parent LEI",
    "1.15": "reporting currency", "2.1": "incident reference code", "2.2": "date and time of detection",
    "2.3": "date and time of classification as major", "2.4": "description of the incident",
    "2.5": "classification criteria met", "2.6": "Member States affected", "2.7": "how the incident was discovered",
    "2.8": "originates from a third-party provider or other entity", "2.9": "business continuity plan activated",
    "2.10": "other information", "3.1": "competent authority's incident code", "3.2": "date and time of occurrence",
    "3.3": "date and time regular activities were recovered", "3.4": "number of clients affected",
    "3.5": "percentage of clients affected", "3.6": "number of financial counterparts affected",
    "3.7": "percentage of financial counterparts affected", "3.8": "impact on relevant clients or counterparts",
    "3.9": "number of transactions affected", "3.10": "percentage of transactions affected",
    "3.11": "value of transactions affected", "3.12": "actual figures or estimates (clients, transactions)",
    "3.13": "reputational impact", "3.14": "reputational impact description", "3.15": "duration of the incident",
    "3.16": "service downtime", "3.17": "actual figures or estimates (duration, downtime)",
    "3.18": "type of impact in the Member States", "3.19": "description of the impact in other Member States",
    "3.20": "data losses (availability, authenticity, integrity, confidentiality)",
    "3.21": "description of the data losses", "3.22": "critical services affected", "3.23": "type of incident",
    "3.24": "other type of incident", "3.25": "threats and techniques used", "3.26": "other techniques",
    "3.27": "functional areas and business processes affected", "3.28": "infrastructure components affected",
    "3.29": "description of the infrastructure affected", "3.30": "impact on the financial interests of clients",
    "3.31": "reported to other authorities", "3.32": "other authorities", "3.33": "temporary actions taken",
    "3.34": "description of the temporary actions", "3.35": "indicators of compromise",
    "4.1": "root cause category", "4.2": "detailed root cause", "4.3": "additional root cause",
    "4.4": "other root cause", "4.5": "root cause information", "4.6": "resolution summary",
    "4.7": "date and time the root cause was addressed", "4.8": "date and time the incident was resolved",
    "4.9": "resolution compared with the planned implementation date", "4.10": "risk to critical functions",
    "4.11": "information for resolution authorities", "4.12": "economic impact threshold",
    "4.13": "gross costs and losses", "4.14": "financial recoveries", "4.15": "recurring non-major incidents",
    "4.16": "date of the recurring incidents",
}


def _time(value: datetime | None) -> str | None:
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ") if value else None


def _ddd(hours: float | None) -> str | None:
    if hours is None:
        return None
    minutes = int(round(hours * 60))
    days, rest = divmod(minutes, 1440)
    return f"{min(days, 999):03d}:{rest // 60:02d}:{rest % 60:02d}"


def _duration_hours(timeline: Timeline) -> float | None:
    c = timeline.classification
    if c and c.duration_hours is not None:
        return c.duration_hours
    if timeline.occurred_at and timeline.resolved_at:
        return (timeline.resolved_at - timeline.occurred_at) / timedelta(hours=1)
    return None


def field_values(timeline: Timeline, settings: ComplianceSettings, stage: str, *,
                 assessment: Assessment | None = None) -> dict[str, Any]:
    """Every Annex I field by number, None where the timeline or config does not say (`assessment`: the
    major-incident test of the timeline's classification when the caller has it already)."""
    e, d, t = settings.entity, timeline.dora, timeline
    c = t.classification
    submitter = e.submitter
    assessment = assessment if assessment is not None else assess(c)
    criteria = [CRITERIA[key][1] for key in assessment.met]
    if c is not None and c.critical_services:
        criteria.append("critical_services_affected")
    contact2 = e.second_contact
    return {
        "1.1": SUBMISSION[stage], "1.2": (submitter.name if submitter else None) or e.name,
        "1.3": ((submitter.lei or submitter.code) if submitter else None) or e.lei or e.code,
        "1.4": e.type, "1.5": e.name, "1.6": e.lei, "1.7": e.contact.name, "1.8": e.contact.email,
        "1.9": e.contact.phone, "1.10": contact2.name if contact2 else None,
        "1.11": contact2.email if contact2 else None, "1.12": contact2.phone if contact2 else None,
        "1.13": e.parent.name if e.parent else None, "1.14": e.parent.lei if e.parent else None,
        "1.15": e.currency,
        "2.1": d.reference_code or t.id, "2.2": _time(t.detected_at), "2.3": _time(t.classified_major_at),
        "2.4": t.description or t.title, "2.5": criteria or None,
        "2.6": sorted(set(c.member_states)) if c and c.member_states else None, "2.7": d.discovery,
        "2.8": d.third_party_origin, "2.9": d.bcp_activated, "2.10": d.other_information,
        "3.1": d.competent_authority_code, "3.2": _time(t.occurred_at), "3.3": _time(t.recovered_at),
        "3.4": c.clients_affected if c else None, "3.5": c.clients_affected_pct if c else None,
        "3.6": c.counterparts_affected if c else None, "3.7": c.counterparts_affected_pct if c else None,
        "3.8": c.relevant_clients_affected if c else None, "3.9": c.transactions_affected if c else None,
        "3.10": c.transactions_affected_pct if c else None, "3.11": c.transactions_value if c else None,
        "3.12": d.figures_basis or None,
        "3.13": [vocab.REPUTATIONAL_IMPACT[r] for r in c.reputational_impact] if c and c.reputational_impact else None,
        "3.14": d.reputational_description, "3.15": _ddd(_duration_hours(t)),
        "3.16": _ddd(c.downtime_hours if c else None), "3.17": d.duration_basis,
        "3.18": d.member_state_impact_types or None, "3.19": d.member_state_impact_description,
        "3.20": c.data_loss_types or None if c else None, "3.21": d.data_loss_description,
        "3.22": d.critical_services_description, "3.23": d.incident_types or None, "3.24": d.other_incident_type,
        "3.25": d.threat_techniques or None, "3.26": d.other_threat_techniques, "3.27": d.functions_affected,
        "3.28": d.infrastructure_affected, "3.29": d.infrastructure_description,
        "3.30": d.financial_interest_impact, "3.31": d.other_authorities or None, "3.32": d.other_authorities_other,
        "3.33": d.temporary_measures, "3.34": d.temporary_measures_description, "3.35": d.indicators_of_compromise,
        "4.1": d.root_cause_categories or None, "4.2": d.root_cause_details or None,
        "4.3": d.root_cause_additional or None, "4.4": d.root_cause_other, "4.5": t.root_cause,
        "4.6": d.resolution_summary or t.close_notes, "4.7": _time(d.root_cause_addressed_at),
        "4.8": _time(t.resolved_at), "4.9": d.resolution_vs_planned, "4.10": d.risk_to_critical_functions,
        "4.11": d.resolution_authority_information,
        "4.12": f"EUR {c.economic_impact_eur:,.0f}" if c and "economic" in assessment.met else None,
        "4.13": d.gross_costs, "4.14": d.financial_recoveries,
        "4.15": ", ".join(t.recurring_incidents) or None, "4.16": _time(d.recurring_since),
    }


def required_fields(values: dict[str, Any], stage: str) -> list[str]:
    """Mandatory field numbers for a stage, including those made mandatory by earlier answers."""
    criteria = values["2.5"] or []
    need = ["1.1", "1.2", "1.3", "1.4", "1.5", "1.6", "1.7", "1.8", "1.9", "1.15",
            "2.1", "2.2", "2.3", "2.4", "2.5", "2.7", "2.8", "2.9"]
    if "geographical_spread" in criteria:
        need.append("2.6")
    if stage in ("intermediate", "final"):
        need += ["3.2", "3.4", "3.5", "3.6", "3.7", "3.8", "3.9", "3.10", "3.11", "3.12", "3.15", "3.16", "3.17",
                 "3.22", "3.23", "3.27", "3.28", "3.30", "3.31", "3.33"]
        if "reputational_impact" in criteria:
            need += ["3.13", "3.14"]
        if "geographical_spread" in criteria:
            need.append("3.18")
        if "data_losses" in criteria:
            need.append("3.20")
        types = values["3.23"] or []
        if "cybersecurity-related" in types:
            need += ["3.25", "3.35"]
        if "other" in types:
            need.append("3.24")
        if "other" in (values["3.25"] or []):
            need.append("3.26")
        if values["3.28"] == "yes":
            need.append("3.29")
        if "other" in (values["3.31"] or []):
            need.append("3.32")
        if values["3.33"] is True:
            need.append("3.34")
    if stage == "final":
        need += ["4.1", "4.5", "4.6", "4.7", "4.8", "4.9", "4.13", "4.14"]
        if "economic_impact" in criteria:
            need.append("4.12")
        if values["4.15"]:
            need.append("4.16")
        if any(item.endswith("_other") for item in values["4.2"] or []):
            need.append("4.4")
    return need


def missing_fields(timeline: Timeline, settings: ComplianceSettings, stage: str) -> list[str]:
    """Mandatory fields still empty, as '2.7 how the incident was discovered'."""
    return _missing(field_values(timeline, settings, stage), stage)


def missing_by_stage(timeline: Timeline, settings: ComplianceSettings, stages: Sequence[str], *,
                     assessment: Assessment | None = None) -> dict[str, list[str]]:
    """`missing_fields` of several stages from one reading of the timeline: only field 1.1 (the type of
    submission, never empty) depends on the stage."""
    values = field_values(timeline, settings, stages[0], assessment=assessment)
    return {stage: _missing({**values, "1.1": SUBMISSION[stage]}, stage) for stage in stages}


_EMPTY = (None, "", [])


def _missing(values: dict[str, Any], stage: str) -> list[str]:
    return [f"{number} {LABELS[number]}" for number in required_fields(values, stage)
            if values.get(number) in _EMPTY]


def _prune(value: Any) -> Any:
    if isinstance(value, dict):
        pruned = {k: _prune(v) for k, v in value.items()}
        return {k: v for k, v in pruned.items() if v not in (None, {}, [])}
    return value


def build_document(values: dict[str, Any], stage: str) -> dict[str, Any]:
    """Place the numbered values where IR-1.2.1 wants them; empty parts are left out."""
    v = values
    code = v["1.3"]
    lei_like = isinstance(code, str) and len(code) == 20 and code.isalnum() and code.isupper()
    criteria = []
    for criterion in v["2.5"] or []:
        item: dict[str, Any] = {"classificationCriterion": criterion}
        if criterion == "geographical_spread":
            item.update(countryCodeMaterialityThresholds=v["2.6"])
        if stage != "initial" and stage != "reclassified":
            if criterion == "geographical_spread":
                item.update(memberStatesImpactType=v["3.18"], memberStatesImpactTypeDescription=v["3.19"])
            if criterion == "reputational_impact":
                item.update(reputationalImpactType=v["3.13"], reputationalImpactDescription=v["3.14"])
            if criterion == "data_losses":
                item.update(dataLosseMaterialityThresholds=v["3.20"], dataLossesDescription=v["3.21"])
        if criterion == "economic_impact" and stage == "final":
            item.update(economicImpactMaterialityThreshold=v["4.12"])
        criteria.append(item)
    doc: dict[str, Any] = {
        "incidentSubmission": v["1.1"], "reportCurrency": v["1.15"],
        "submittingEntity": {"entityType": "SUBMITTING_ENTITY", "name": v["1.2"], "code": v["1.3"],
                             "LEI": v["1.3"] if lei_like else None},
        "affectedEntity": [{"entityType": "AFFECTED_ENTITY", "name": v["1.5"], "LEI": v["1.6"],
                            "affectedEntityType": [v["1.4"]] if v["1.4"] else None}],
        "ultimateParentUndertaking": {"entityType": "ULTIMATE_PARENT_UNDERTAKING_ENTITY", "name": v["1.13"],
                                      "LEI": v["1.14"]} if v["1.13"] or v["1.14"] else None,
        "primaryContact": {"name": v["1.7"], "email": v["1.8"], "phone": v["1.9"]},
        "secondaryContact": {"name": v["1.10"], "email": v["1.11"], "phone": v["1.12"]} if v["1.11"] else None,
        "incident": {"financialEntityCode": v["2.1"], "detectionDateTime": v["2.2"],
                     "classificationDateTime": v["2.3"], "incidentDescription": v["2.4"],
                     "classificationTypes": criteria, "incidentDiscovery": v["2.7"],
                     "originatesFromThirdPartyProvider": v["2.8"], "isBusinessContinuityActivated": v["2.9"],
                     "otherInformation": v["2.10"]},
    }
    if stage in ("intermediate", "final"):
        _add_intermediate(doc, v)
    if stage == "final":
        doc["incident"].update({
            "rootCauseHLClassification": v["4.1"], "rootCausesDetailedClassification": v["4.2"],
            "rootCausesAdditionalClassification": v["4.3"], "rootCausesOther": v["4.4"],
            "rootCausesInformation": v["4.5"], "incidentResolutionSummary": v["4.6"],
            "rootCauseAddressingDateTime": v["4.7"], "incidentResolutionDateTime": v["4.8"],
            "incidentResolutionVsPlannedImplementation": v["4.9"], "assessmentOfRiskToCriticalFunctions": v["4.10"],
            "informationRelevantToResolutionAuthorities": v["4.11"], "grossAmountIndirectDirectCosts": v["4.13"],
            "financialRecoveriesAmount": v["4.14"], "recurringNonMajorIncidentsDescription": v["4.15"],
            "recurringIncidentDate": v["4.16"]})
    return _prune(doc)


def _add_intermediate(doc: dict[str, Any], v: dict[str, Any]) -> None:
    doc["incident"].update({
        "competentAuthorityCode": v["3.1"], "incidentOccurrenceDateTime": v["3.2"], "incidentDuration": v["3.15"],
        "incidentType": {"incidentClassification": v["3.23"], "otherIncidentClassification": v["3.24"],
                         "threatTechniques": v["3.25"], "otherThreatTechniques": v["3.26"],
                         "indicatorsOfCompromise": v["3.35"]}})
    doc["impactAssessment"] = {
        "hasImpactOnRelevantClients": v["3.8"], "criticalServicesAffected": v["3.22"],
        "serviceImpact": {"serviceRestorationDateTime": v["3.3"], "serviceDowntime": v["3.16"],
                          "isTemporaryActionsMeasuresForRecovery": v["3.33"],
                          "descriptionOfTemporaryActionsMeasuresForRecovery": v["3.34"]},
        "affectedAssets": {"affectedClients": {"number": v["3.4"], "percentage": v["3.5"]},
                           "affectedFinancialCounterparts": {"number": v["3.6"], "percentage": v["3.7"]},
                           "affectedTransactions": {"number": v["3.9"], "percentage": v["3.10"]},
                           "valueOfAffectedTransactions": v["3.11"], "numbersActualEstimate": v["3.12"]},
        "affectedFunctionalAreas": v["3.27"], "isAffectedInfrastructureComponents": v["3.28"],
        "affectedInfrastructureComponents": v["3.29"], "isImpactOnFinancialInterest": v["3.30"]}
    doc["reportingToOtherAuthorities"] = v["3.31"]
    doc["reportingToOtherAuthoritiesOther"] = v["3.32"]
    doc["informationDurationServiceDowntimeActualOrEstimate"] = v["3.17"]


@lru_cache(maxsize=1)
def _validator() -> Any:
    from jsonschema import Draft202012Validator

    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def schema_errors(document: dict[str, Any]) -> list[str]:
    """Schema violations, each named by the Annex I field the schema attributes it to where it can."""
    out = []
    for error in sorted(_validator().iter_errors(document), key=lambda e: list(e.path)):
        described = str(error.schema.get("description", "")) if isinstance(error.schema, dict) else ""
        where = described.split(" - ")[0] or "/".join(str(p) for p in error.path) or "(document)"
        out.append(f"{where}: {error.message}")
    return out


def draft_report(timeline: Timeline, settings: ComplianceSettings, stage: str) -> tuple[dict[str, Any], list[str]]:
    """The report document and the mandatory fields still missing (plus any schema violation).

    When the list is empty the document validates against IR-1.2.1; otherwise the document is a partial
    draft for the officer's eyes only.
    """
    if stage not in SUBMISSION:
        raise ValueError(f"unknown stage {stage!r}; use initial, intermediate, final or reclassified")
    values = field_values(timeline, settings, stage)
    document = build_document(values, stage)
    missing = missing_fields(timeline, settings, stage)
    if not missing:
        missing = schema_errors(document)
    return document, missing
