"""Closed vocabularies of the DORA major incident report (ESAs schema IR-1.2.1, ITS 2025/302 Annex I).

They live here as data so the timeline model can refuse a value the regulator's schema would refuse,
at import time and with the field's name, instead of producing a report draft that fails validation
later. Values are copied from ../shared/specs/dora-incident-report-IR-1.2.1.schema.json.
"""

from __future__ import annotations

#: Field 1.4 (type of the affected financial entity).
ENTITY_TYPES: tuple[str, ...] = (
    "credit_institution", "payment_institution", "exempted_payment_institution",
    "account_information_service_provider", "electronic_money_institution",
    "exempted_electronic_money_institution", "investment_firm", "crypto-asset_service_provider",
    "issuer_of_asset-referenced_tokens", "central_securities_depository", "central_counterparty",
    "trading_venue", "trade_repository", "manager_of_alternative_investment_fund", "management_company",
    "data_reporting_service_provider", "insurance_and_reinsurance_undertaking",
    "insurance_intermediary_reinsurance_intermediary_and_ancillary_insurance_intermediary",
    "institution_for_occupational_retirement_provision", "credit_rating_agency",
    "administrator_of_critical_benchmarks", "crowdfunding_service_provider", "securitisation_repository",
)

#: RTS 2025/301 Art. 5(5): these entity types get no weekend/holiday shift for initial and intermediate.
WEEKEND_RULE_EXCLUDED_TYPES: frozenset[str] = frozenset({"credit_institution", "central_counterparty",
                                                         "trading_venue"})

#: Field 1.15.
CURRENCIES: tuple[str, ...] = ("EUR", "BGN", "CZK", "DKK", "HUF", "PLN", "RON", "ISK", "CHF", "NOK", "SEK")

#: Field 2.6 (EEA states the schema accepts) with a capital-city zone each: local time of the entity's
#: Member State decides what "weekend", "bank holiday" and "noon" mean (RTS 2025/301 Art. 5(4)).
MEMBER_STATE_ZONES: dict[str, str] = {
    "AT": "Europe/Vienna", "BE": "Europe/Brussels", "BG": "Europe/Sofia", "HR": "Europe/Zagreb",
    "CY": "Asia/Nicosia", "CZ": "Europe/Prague", "DK": "Europe/Copenhagen", "EE": "Europe/Tallinn",
    "ES": "Europe/Madrid", "FI": "Europe/Helsinki", "FR": "Europe/Paris", "DE": "Europe/Berlin",
    "GR": "Europe/Athens", "HU": "Europe/Budapest", "IS": "Atlantic/Reykjavik", "IE": "Europe/Dublin",
    "IT": "Europe/Rome", "LI": "Europe/Vaduz", "LT": "Europe/Vilnius", "LU": "Europe/Luxembourg",
    "LV": "Europe/Riga", "MT": "Europe/Malta", "NL": "Europe/Amsterdam", "NO": "Europe/Oslo",
    "PL": "Europe/Warsaw", "PT": "Europe/Lisbon", "RO": "Europe/Bucharest", "SE": "Europe/Stockholm",
    "SI": "Europe/Ljubljana", "SK": "Europe/Bratislava",
}
MEMBER_STATES: tuple[str, ...] = tuple(MEMBER_STATE_ZONES)

#: Field 2.7.
DISCOVERY: tuple[str, ...] = (
    "it_security", "staff", "internal_audit", "external_audit", "clients", "financial_counterparts",
    "third-party_provider", "attacker", "monitoring_systems", "authority_agency_law_enforcement_body", "other",
)

#: Field 3.23.
INCIDENT_TYPES: tuple[str, ...] = ("cybersecurity-related", "process_failure", "system_failure",
                                   "external_event", "payment-related", "other")

#: Field 3.25.
THREAT_TECHNIQUES: tuple[str, ...] = (
    "social_engineering_including_phishing", "ddos", "identity_theft",
    "data_encryption_for_impact_including_ransomware", "resource_hijacking",
    "data_exfiltration_and_manipulation_including_identity_theft", "data_destruction", "defacement",
    "supply-chain_attack", "other",
)

#: Fields 3.28 and 3.30.
YES_NO_NA: tuple[str, ...] = ("yes", "no", "information_not_available")

#: Field 3.31.
OTHER_AUTHORITIES: tuple[str, ...] = ("police_law_enforcement", "csirt", "data_protection_authority",
                                      "national_cybersecurity_agency", "none", "other")

#: Field 3.12.
FIGURES_BASIS: tuple[str, ...] = (
    "actual_figures_for_clients_affected", "actual_figures_for_financial_counterparts_affected",
    "actual_figures_for_transactions_affected", "estimates_for_clients_affected",
    "estimates_for_financial_counterparts_affected", "estimates_for_transactions_affected",
    "no_impact_on_clients", "no_impact_on_financial_counterparts", "no_impact_on_transactions",
)

#: Field 3.17.
DURATION_BASIS: tuple[str, ...] = ("actual_figures", "estimates", "actual_figures_and_estimates",
                                   "no_information_available")

#: Field 3.18.
MEMBER_STATE_IMPACT_TYPES: tuple[str, ...] = (
    "clients", "financial_counterparts", "branch_of_the_financial_entity",
    "financial_entities_within_the_group_carrying_out_activities_in_the_respective_member_state",
    "financial_market_infrastructure", "third-party_providers_that_may_be_common_to_other_financial_entities",
)

#: Field 3.20.
DATA_LOSS_TYPES: tuple[str, ...] = ("availability", "authenticity", "integrity", "confidentiality")

#: Field 3.13, keyed by the short names officers type in a timeline (RTS 2024/1772 Art. 9(2) (a)-(d)).
REPUTATIONAL_IMPACT: dict[str, str] = {
    "media": "the_major_ict-related_incident_has_been_reflected_in_the_media",
    "complaints": "the_major_ict-related_incident_has_resulted_in_repetitive_complaints_from_different_clients_"
                  "or_financial_counterparts_on_client-facing_services_or_critical_business_relationships",
    "regulatory": "the_financial_entity_will_not_be_able_to_or_is_likely_not_to_be_able_to_meet_regulatory_"
                  "requirements_as_a_result_of_the_major_ict-related_incident",
    "client_loss": "the_financial_entity_will_or_is_likely_to_lose_clients_or_financial_counterparts_with_a_"
                   "material_impact_on_its_business_as_a_result_of_the_major_ict-related_incident",
}

#: Field 4.1.
ROOT_CAUSE_CATEGORIES: tuple[str, ...] = ("malicious_actions", "process_failure", "system_failure_malfunction",
                                          "human_error", "external_event")

#: Field 4.2.
ROOT_CAUSE_DETAILS: tuple[str, ...] = (
    "malicious_actions_deliberate_internal_actions",
    "malicious_actions_deliberate_physical_damage_manipulation_theft", "malicious_actions_fraudulent_actions",
    "process_failure_insufficient_monitoring_or_failure_of_monitoring_and_control",
    "process_failure_insufficient_unclear_roles_and_responsibilities",
    "process_failure_ICT_risk_management_process_failure",
    "process_failure_insufficient_or_failure_of_ict_operations_and_ict_security_operations",
    "process_failure_insufficient_or_failure_of_ict_project_management",
    "process_failure_inadequacy_of_internal_policies_procedures_and_documentation",
    "process_failure_inadequate_ict_systems_acquisition_development_and_maintenance", "process_failure_other",
    "system_failure_hardware_capacity_and_performance", "system_failure_hardware_maintenance",
    "system_failure_hardware_obsolescence_ageing", "system_failure_software_compatibility_configuration",
    "system_failure_software_performance", "system_failure_network_configuration",
    "system_failure_physical_damage", "system_failure_other", "human_error_omission", "human_error_mistake",
    "human_error_skills_knowledge", "human_error_inadequate_human_resources", "human_error_miscommunication",
    "human_error_other", "external_event_natural_disasters_force_majeure", "external_event_third-party_failures",
    "external_event_other",
)

#: Field 4.3.
ROOT_CAUSE_ADDITIONAL: tuple[str, ...] = (
    "monitoring_of_policy_adherence", "monitoring_of_third-party_service_providers",
    "monitoring_and_verification_of_remediation_of_vulnerabilities", "identity_and_access_management",
    "encryption_and_cryptography", "logging", "failure_in_specifying_accurate_risk_tolerance_levels",
    "insufficient_vulnerability_and_threat_assessments", "inadequate_risk_treatment_measures",
    "poor_management_of_residual_ict_risks", "vulnerability_and_patch_management", "change_management",
    "capacity_and_performance_management", "ict_asset_management_and_information_classification",
    "backup_and_restore", "error_handling", "inadequate_ict_systems_acquisition_development_and_maintenance",
    "insufficient_or_failure_of_software_testing",
)
