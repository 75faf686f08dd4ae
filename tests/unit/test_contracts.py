"""Partner contracts: the shipped samples, the structural model, the semantic rules, the CLI."""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from gateway.contract_kinds import (
    AccountType,
    ExportEncoding,
    FraudDecision,
    FraudSettings,
    LineEnding,
)
from gateway.contracts import (
    EEA_AND_UK,
    PartnerContract,
    check_contracts,
    contract_problems,
    load_contract,
    load_contracts,
)
from gateway.errors import ContractError
from gateway.models import CrossBorderBasis, LegalBasis, PartnerKind, Transform, japan_date

TODAY = date(2026, 11, 24)
PARTNERS = Path(__file__).resolve().parents[2] / "partners"
SAMPLE_IDS = ["google-customer-match", "sample-fraud-provider", "sample-point-program"]
GOOGLE, FRAUD, POINT = SAMPLE_IDS

Data = dict[str, Any]


def sample_text(stem: str) -> str:
    return (PARTNERS / f"{stem}.toml").read_text(encoding="utf-8")


def sample_data(stem: str) -> Data:
    return tomllib.loads(sample_text(stem))


# --- the shipped samples


def test_samples_load_by_id() -> None:
    contracts = load_contracts(PARTNERS, TODAY)
    assert sorted(contracts) == SAMPLE_IDS
    google = contracts[GOOGLE]
    assert (google.kind, google.country) == (PartnerKind.CUSTOMER_MATCH, "US")
    assert google.legal_entity.name == "Google LLC"
    assert google.cross_border.basis is CrossBorderBasis.FOREIGN_CONSENT
    assert google.cross_border.foreign_disclosure_version
    match = google.purposes["ad_customer_match"]
    assert match.legal_bases == (LegalBasis.CONSENT,)
    assert match.fields["email"] is Transform.SHA256
    assert match.fields["email_sha256"] is Transform.PREHASHED
    assert match.fields["postal_code"] is Transform.CLEAR
    fraud = contracts[FRAUD].purposes["fraud_detection"]
    assert fraud.legal_bases == (LegalBasis.PROTECT_LIFE_BODY_PROPERTY,)
    assert fraud.exception_rationale
    assert fraud.exception_approver
    point = contracts[POINT]
    assert point.statistics is not None
    assert point.statistics.min_cell_count == 10
    assert point.purposes["attribute_estimation"].fields["member_id"] is Transform.HMAC


@pytest.mark.parametrize("stem", SAMPLE_IDS)
def test_samples_have_no_problems_through_2028(stem: str) -> None:
    contract = load_contract(PARTNERS / f"{stem}.toml", TODAY)
    assert contract.id == stem
    assert contract_problems(contract, TODAY) == []
    assert contract_problems(contract, date(2028, 12, 31)) == []
    assert contract.in_force(TODAY)


@pytest.mark.parametrize("stem", SAMPLE_IDS)
def test_samples_point_at_the_local_sandbox_and_hold_no_secret(stem: str) -> None:
    endpoint = load_contract(PARTNERS / f"{stem}.toml", TODAY).endpoint
    assert endpoint.url.startswith("http://127.0.0.1:8080/sandbox/")
    assert endpoint.credential_ref.replace("-", "").isalnum()


# --- semantic rules: contract_problems over structurally valid contracts


def put(path: str, value: Any) -> Callable[[Data], None]:
    """A mutation setting a dotted key; value None deletes it."""

    def mutate(data: Data) -> None:
        *parents, last = path.split(".")
        node = data
        for key in parents:
            node = node.setdefault(key, {})
        if value is None:
            del node[last]
        else:
            node[last] = value

    return mutate


def both(*mutations: Callable[[Data], None]) -> Callable[[Data], None]:
    def mutate(data: Data) -> None:
        for mutation in mutations:
            mutation(data)

    return mutate


AD = "purposes.ad_customer_match"
FD = "purposes.fraud_detection"
AE = "purposes.attribute_estimation"
JOINT_USE = {
    "published_at": date(2025, 1, 1),
    "data_items": ["email"],
    "joint_users": "the group companies listed on our website",
    "purpose": "member services across the group",
    "responsible_party": "Sample Holdings K.K.",
}
EQUIVALENT = both(
    put("cross_border.basis", "equivalent_measures"),
    put("cross_border.foreign_disclosure_version", None),
)
NOT_MATCHING = put("recipient_matches_records", False)
DEST = "destinations.default"
DESTINATION = {
    "operating_account_type": "GOOGLE_ADS",
    "operating_account_id": "1111111111",
    "product_destination_id": "42",
}


def rename_purpose(old: str, new: str) -> Callable[[Data], None]:
    def mutate(data: Data) -> None:
        data["purposes"][new] = data["purposes"].pop(old)

    return mutate


def second_purpose(*, without: str | None = None) -> Callable[[Data], None]:
    """The point program gets a second purpose, a copy of the first, less the field `without`."""

    def mutate(data: Data) -> None:
        purpose = dict(data["purposes"]["attribute_estimation"])
        purpose["fields"] = {k: v for k, v in purpose["fields"].items() if k != without}
        data["purposes"]["second"] = purpose

    return mutate


# (case, sample, mutation, expected): expected is (field, message fragment), or None when the
# mutated contract is legal (the boundary cases that keep a rule from being too broad).
SEMANTIC_CASES: list[tuple[str, str, Callable[[Data], None], tuple[str, str] | None]] = [
    ("expired", GOOGLE, put("agreement.valid_until", date(2026, 11, 23)),
     ("agreement.valid_until", "expired")),
    ("valid until today", GOOGLE, put("agreement.valid_until", TODAY), None),
    ("starts after it ends", GOOGLE, put("agreement.valid_from", date(2029, 1, 1)),
     ("agreement.valid_from", "after valid_until")),
    ("opt-out", GOOGLE, put(f"{AD}.legal_bases", ["consent", "opt_out"]),
     (f"{AD}.legal_bases", "Art. 27(2)")),
    ("JP not domestic", FRAUD, put("cross_border.basis", "art27_1_exception"),
     ("cross_border.basis", "JP requires domestic")),
    ("foreign domestic", GOOGLE, put("cross_border.basis", "domestic"),
     ("cross_border.basis", "foreign")),
    ("US designated", GOOGLE, put("cross_border.basis", "designated_country"),
     ("cross_border.basis", "not a designated country")),
    ("DE designated", GOOGLE,
     both(put("country", "DE"), put("cross_border.basis", "designated_country")), None),
    ("GB designated", GOOGLE,
     both(put("country", "GB"), put("cross_border.basis", "designated_country")), None),
    ("foreign consent without disclosure", GOOGLE,
     put("cross_border.foreign_disclosure_version", None),
     ("cross_border.foreign_disclosure_version", "required")),
    ("equivalent measures without review date", GOOGLE, EQUIVALENT,
     ("cross_border.equivalent_measures_review_due", "required")),
    ("equivalent measures review overdue", GOOGLE,
     both(EQUIVALENT, put("cross_border.equivalent_measures_review_due", date(2026, 11, 23))),
     ("cross_border.equivalent_measures_review_due", "overdue")),
    ("equivalent measures review due today", GOOGLE,
     both(EQUIVALENT, put("cross_border.equivalent_measures_review_due", TODAY)), None),
    ("entrustment abroad on foreign consent", GOOGLE,
     both(NOT_MATCHING, put(f"{AD}.legal_bases", ["entrustment"])),
     (f"{AD}.legal_bases", "not available to a foreign_consent recipient")),
    ("joint use abroad on foreign consent", GOOGLE,
     both(put("joint_use", JOINT_USE), put(f"{AD}.legal_bases", ["consent", "joint_use"])),
     (f"{AD}.legal_bases", "not available to a foreign_consent recipient")),
    ("entrustment with a matching recipient", FRAUD, put(f"{FD}.legal_bases", ["entrustment"]),
     (f"{FD}.legal_bases", "matches records")),
    ("entrustment with a plain outsourcee", FRAUD,
     both(NOT_MATCHING, put(f"{FD}.legal_bases", ["entrustment"])), None),
    ("joint use unpublished", POINT, put(f"{AE}.legal_bases", ["joint_use"]),
     ("joint_use", "[joint_use] section required")),
    ("joint use published", POINT,
     both(put("joint_use", JOINT_USE), put(f"{AE}.legal_bases", ["joint_use"])), None),
    ("pseudonymized on consent", POINT, put(f"{AE}.data_category", "pseudonymized"),
     (f"{AE}.legal_bases", "consent")),
    ("pseudonymized to an outsourcee", POINT,
     both(NOT_MATCHING, put(f"{AE}.data_category", "pseudonymized"),
          put(f"{AE}.legal_bases", ["entrustment"])), None),
    ("personally referable on plain consent", POINT,
     put(f"{AE}.data_category", "personally_referable"), (f"{AE}.legal_bases", "Art. 31")),
    ("personally referable, consent confirmed", POINT,
     both(put(f"{AE}.data_category", "personally_referable"),
          put(f"{AE}.legal_bases", ["pri_consent_confirmed"])), None),
    ("attribute export without statistics", POINT, put("statistics", None),
     ("statistics.min_cell_count", "required")),
    ("summary dimensions not declared", POINT, put("statistics.dimensions", None), None),
    ("summary dimension naming an identifier", POINT,
     put("statistics.dimensions", ["age_band", "member_id"]),
     ("statistics.dimensions[1]", "member_id keys one person")),
    ("summary dimension naming a field the contract hashes", POINT,
     both(put(f"{AE}.fields.card_no", "hmac"), put("statistics.dimensions", ["card_no"])),
     ("statistics.dimensions[0]", "keys one person")),
    ("summary dimension of a hash", POINT, put("statistics.dimensions", ["phone_sha256"]),
     ("statistics.dimensions[0]", "keys one person")),
    ("summary dimension listed twice", POINT, put("statistics.dimensions", ["gender", "gender"]),
     ("statistics.dimensions[1]", "repeats statistics.dimensions[0]")),
    ("hashed name hashed again", GOOGLE, put(f"{AD}.fields.email_sha256", "sha256"),
     (f"{AD}.fields.email_sha256", "must be prehashed")),
    ("prehashed plain field", GOOGLE, put(f"{AD}.fields.email", "prehashed"),
     (f"{AD}.fields.email", "only for *_sha256")),
    ("plain http to a real partner", GOOGLE, put("endpoint.url", "http://partner.example.com/v1"),
     ("endpoint.url", "must be https")),
    ("https to a real partner", GOOGLE, put("endpoint.url", "https://partner.example.com/v1"),
     None),
    ("plain http to localhost", GOOGLE, put("endpoint.url", "http://localhost:9000/x"), None),
    # [destinations]: customer_match only, at least one, login account whole or absent
    ("customer match without destinations", GOOGLE, put("destinations", None),
     ("destinations", "at least one")),
    ("customer match with a second destination", GOOGLE,
     put("destinations.other", DESTINATION), None),
    ("destinations on fraud_check", FRAUD, put("destinations", {"default": DESTINATION}),
     ("destinations", "only for kind customer_match, not fraud_check")),
    ("login type without id", GOOGLE, put(f"{DEST}.login_account_id", None),
     (f"{DEST}.login_account_id", "go together")),
    ("login id without type", GOOGLE, put(f"{DEST}.login_account_type", None),
     (f"{DEST}.login_account_type", "go together")),
    ("no login account", GOOGLE,
     both(put(f"{DEST}.login_account_type", None), put(f"{DEST}.login_account_id", None)), None),
    ("no personalization purpose", GOOGLE, put(f"{DEST}.personalization_purpose", None), None),
    # [fraud]: fraud_check only, optional; fraud_check needs the purpose fraud_detection
    ("fraud_check without fraud_detection", FRAUD,
     rename_purpose("fraud_detection", "card_screening"), ("purposes", "fraud_detection")),
    ("fraud_check without [fraud]", FRAUD, put("fraud", None), None),
    ("[fraud] on customer_match", GOOGLE, put("fraud", {}),
     ("fraud", "only for kind fraud_check, not customer_match")),
    # [export]: attribute_export only and required there; columns in every purpose, once each
    ("attribute export without [export]", POINT, put("export", None),
     ("export", "required for kind attribute_export")),
    ("[export] on fraud_check", FRAUD, put("export", {"columns": ["email"]}),
     ("export", "only for kind attribute_export, not fraud_check")),
    ("export column not in the purpose", POINT, put("export.columns", ["member_id", "phone"]),
     ("export.columns[1]", "'phone' is not a field of purposes.attribute_estimation")),
    ("export column missing from a second purpose", POINT, second_purpose(without="gender"),
     ("export.columns[3]", "'gender' is not a field of purposes.second")),
    ("export columns in both purposes", POINT, second_purpose(), None),
    ("export a subset of the fields", POINT, put("export.columns", ["member_id"]), None),
    ("export column twice", POINT, put("export.columns", ["email", "gender", "email"]),
     ("export.columns[2]", "repeats export.columns[0]")),
    ("tab delimiter", POINT, put("export.delimiter", "\t"), None),
    ("semicolon delimiter", POINT, put("export.delimiter", ";"), None),
    ("quote delimiter", POINT, put("export.delimiter", '"'), ("export.delimiter", "must be")),
    ("newline delimiter", POINT, put("export.delimiter", "\n"), ("export.delimiter", "must be")),
    ("letter delimiter", POINT, put("export.delimiter", "a"), ("export.delimiter", "must be")),
    ("ideographic comma delimiter", POINT, put("export.delimiter", "、"),
     ("export.delimiter", "must be")),
]  # fmt: skip


@pytest.mark.parametrize(
    ("stem", "mutate", "expected"),
    [
        pytest.param(stem, mutate, expected, id=case)
        for case, stem, mutate, expected in SEMANTIC_CASES
    ],
)
def test_contract_problems(
    stem: str, mutate: Callable[[Data], None], expected: tuple[str, str] | None
) -> None:
    data = sample_data(stem)
    mutate(data)
    problems = contract_problems(PartnerContract.model_validate(data), TODAY)
    if expected is None:
        assert problems == []
        return
    field, fragment = expected
    assert [f for f, _ in problems] == [field]
    assert fragment in problems[0][1]


def test_samples_carry_their_kind_sections() -> None:
    contracts = load_contracts(PARTNERS, TODAY)
    google = contracts[GOOGLE]
    assert list(google.destinations) == ["default"]
    dest = google.destinations["default"]
    assert dest.operating_account_type is AccountType.GOOGLE_ADS
    assert dest.operating_account_id.isdigit()
    assert dest.login_account_type is AccountType.GOOGLE_ADS
    assert dest.personalization_purpose == "ad_personalization"
    assert (google.fraud, google.export) == (None, None)
    assert contracts[FRAUD].fraud_settings() == FraudSettings(
        timeout_ms=800, fallback=FraudDecision.REVIEW, breaker_failures=5, breaker_reset_s=30.0
    )
    export = contracts[POINT].export
    assert export is not None
    assert export.columns == ("member_id", "email", "birth_year", "gender", "postal_code")
    assert (export.delimiter, export.header) == (",", True)
    assert (export.encoding, export.line_ending) == (ExportEncoding.SHIFT_JIS, LineEnding.CRLF)
    assert export.media_type == "text/csv"
    assert contracts[POINT].destinations == {}


def test_fraud_settings_default_only_for_fraud_check() -> None:
    data = sample_data(FRAUD)
    data["fraud"] = {"timeout_ms": 300}
    assert PartnerContract.model_validate(data).fraud_settings().timeout_ms == 300
    del data["fraud"]
    contract = PartnerContract.model_validate(data)
    assert contract.fraud is None
    assert contract.fraud_settings() == FraudSettings()
    assert FraudSettings() == FraudSettings(
        timeout_ms=800, fallback=FraudDecision.REVIEW, breaker_failures=5, breaker_reset_s=30.0
    )
    with pytest.raises(ValueError, match="not fraud_check"):
        load_contract(PARTNERS / f"{GOOGLE}.toml", TODAY).fraud_settings()


def test_export_defaults() -> None:
    data = sample_data(POINT)
    data["export"] = {"columns": ["email"]}
    export = PartnerContract.model_validate(data).export
    assert export is not None
    assert (export.delimiter, export.header, export.media_type) == (",", True, "text/csv")
    assert (export.encoding, export.line_ending) == (ExportEncoding.UTF_8, LineEnding.CRLF)


def test_business_succession_abroad_on_foreign_consent() -> None:
    # Art. 28(1) last sentence disapplies all of Art. 27, so 27(5)(ii) too.
    data = sample_data(GOOGLE)
    data["purposes"]["ad_customer_match"]["legal_bases"] = ["business_succession"]
    problems = contract_problems(PartnerContract.model_validate(data), TODAY)
    assert problems == [
        (f"{AD}.legal_bases", "business_succession not available to a foreign_consent "
         "recipient (Art. 28)")
    ]  # fmt: skip


def test_designated_countries_are_the_eea_and_the_uk() -> None:
    assert len(EEA_AND_UK) == 27 + 3 + 1
    assert {"GR", "IS", "LI", "NO", "GB"} <= EEA_AND_UK
    assert not {"JP", "US", "CH", "EL"} & EEA_AND_UK


# --- loading files: every failure is a ContractError naming the file and the field

# (case, sample, text replaced, replacement, field, message fragment)
FILE_CASES = [
    ("unknown key", GOOGLE, "[legal_entity]\n", '[legal_entity]\ncolour = "red"\n',
     "legal_entity.colour", "unknown key"),
    ("misspelt key", GOOGLE, 'legal_bases = ["consent"]', 'legal_basis = ["consent"]',
     f"{AD}.legal_basis", "unknown key"),
    ("missing key", GOOGLE, 'representative = "Sundar Pichai, Chief Executive Officer"\n', "",
     "legal_entity.representative", "missing"),
    ("missing section", POINT, "[cross_border]\nbasis = \"domestic\"\n", "",
     "cross_border", "missing"),
    ("count as string", POINT, "min_cell_count = 10", 'min_cell_count = "10"',
     "statistics.min_cell_count", "valid integer"),
    ("dimension not lowercase", POINT, '"age_band", "gender"', '"Age_band", "gender"',
     "statistics.dimensions[0]", "pattern"),
    ("no dimension listed", POINT, 'dimensions = ["age_band", "gender", "prefecture", '
     '"interest", "life_stage"]', "dimensions = []", "statistics.dimensions", "at least 1"),
    ("count as float", POINT, "min_cell_count = 10", "min_cell_count = 10.0",
     "statistics.min_cell_count", "valid integer"),
    ("bool as string", GOOGLE, "recipient_matches_records = true",
     'recipient_matches_records = "yes"', "recipient_matches_records", "valid boolean"),
    ("list as string", GOOGLE, 'legal_bases = ["consent"]', 'legal_bases = "consent"',
     f"{AD}.legal_bases", "valid tuple"),
    ("unknown legal basis", GOOGLE, 'legal_bases = ["consent"]', 'legal_bases = ["consnet"]',
     f"{AD}.legal_bases[0]", "Input should be"),
    ("unknown transform", GOOGLE, 'email = "sha256"', 'email = "md5"',
     f"{AD}.fields.email", "Input should be"),
    ("field name not lowercase", GOOGLE, 'email = "sha256"', 'Email = "sha256"',
     f"{AD}.fields.Email", "pattern"),
    ("datetime for a date", GOOGLE, "valid_until = 2028-12-31",
     "valid_until = 2028-12-31T00:00:00", "agreement.valid_until", "TOML date like"),
    ("number for a date", GOOGLE, "valid_until = 2028-12-31", "valid_until = 20281231",
     "agreement.valid_until", "TOML date like"),
    ("quoted date", GOOGLE, "valid_until = 2028-12-31", 'valid_until = "2028-12-31"',
     "agreement.valid_until", "got a quoted string"),
    ("country lowercase", FRAUD, 'country = "JP"', 'country = "jp"', "country", "pattern"),
    ("expired", GOOGLE, "valid_until = 2028-12-31", "valid_until = 2026-11-23",
     "agreement.valid_until", "expired"),
    ("opt-out", FRAUD, 'legal_bases = ["protect_life_body_property"]',
     'legal_bases = ["protect_life_body_property", "opt_out"]', f"{FD}.legal_bases", "opt_out"),
    ("account id as a number", GOOGLE, 'operating_account_id = "1234567890"',
     "operating_account_id = 1234567890", f"{DEST}.operating_account_id", "valid string"),
    ("account id with hyphens", GOOGLE, 'operating_account_id = "1234567890"',
     'operating_account_id = "123-456-7890"', f"{DEST}.operating_account_id", "pattern"),
    ("unknown account type", GOOGLE, 'operating_account_type = "GOOGLE_ADS"',
     'operating_account_type = "ADWORDS"', f"{DEST}.operating_account_type", "Input should be"),
    ("unspecified account type", GOOGLE, 'operating_account_type = "GOOGLE_ADS"',
     'operating_account_type = "ACCOUNT_TYPE_UNSPECIFIED"', f"{DEST}.operating_account_type",
     "Input should be"),
    ("destination without list", GOOGLE, 'product_destination_id = "5550001234"', "",
     f"{DEST}.product_destination_id", "missing"),
    ("destination id uppercase", GOOGLE, "[destinations.default]", "[destinations.Default]",
     "destinations.Default", "pattern"),
    ("unknown destination key", GOOGLE, "[destinations.default]\n",
     '[destinations.default]\nuser_list = "1"\n', f"{DEST}.user_list", "unknown key"),
    ("personalization purpose not a name", GOOGLE, 'personalization_purpose = "ad_personalization"',
     'personalization_purpose = "Ad Personalization"', f"{DEST}.personalization_purpose",
     "pattern"),
    ("timeout too short", FRAUD, "timeout_ms = 800", "timeout_ms = 49", "fraud.timeout_ms",
     "greater than or equal to 50"),
    ("timeout too long", FRAUD, "timeout_ms = 800", "timeout_ms = 10001", "fraud.timeout_ms",
     "less than or equal to 10000"),
    ("timeout as string", FRAUD, "timeout_ms = 800", 'timeout_ms = "800"', "fraud.timeout_ms",
     "valid integer"),
    ("timeout as float", FRAUD, "timeout_ms = 800", "timeout_ms = 800.0", "fraud.timeout_ms",
     "valid integer"),
    ("unknown fallback", FRAUD, 'fallback = "review"', 'fallback = "ignore"', "fraud.fallback",
     "Input should be"),
    ("no breaker", FRAUD, "breaker_failures = 5", "breaker_failures = 0",
     "fraud.breaker_failures", "greater than or equal to 1"),
    ("breaker never resets", FRAUD, "breaker_reset_s = 30.0", "breaker_reset_s = inf",
     "fraud.breaker_reset_s", "finite"),
    ("breaker resets at once", FRAUD, "breaker_reset_s = 30.0", "breaker_reset_s = 0",
     "fraud.breaker_reset_s", "greater than 0"),
    ("no columns", POINT, 'columns = ["member_id", "email", "birth_year", "gender", "postal_code"]',
     "columns = []", "export.columns", "at least 1"),
    ("column not a name", POINT, '"birth_year"', '"Birth Year"', "export.columns[2]", "pattern"),
    ("two-character delimiter", POINT, 'delimiter = ","', 'delimiter = ",,"', "export.delimiter",
     "at most 1"),
    ("header as string", POINT, "header = true", 'header = "yes"', "export.header",
     "valid boolean"),
    ("unknown encoding", POINT, 'encoding = "shift_jis"', 'encoding = "euc-jp"',
     "export.encoding", "Input should be"),
    ("unknown line ending", POINT, 'line_ending = "crlf"', 'line_ending = "cr"',
     "export.line_ending", "Input should be"),
    ("media type with a charset", POINT, 'media_type = "text/csv"',
     'media_type = "text/csv; charset=utf-8"', "export.media_type", "pattern"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("stem", "old", "new", "field", "fragment"),
    [pytest.param(*case[1:], id=case[0]) for case in FILE_CASES],
)
def test_bad_file_is_rejected_naming_file_and_field(
    tmp_path: Path, stem: str, old: str, new: str, field: str, fragment: str
) -> None:
    text = sample_text(stem)
    assert text.count(old) == 1, "the mutation must hit exactly one place"
    path = tmp_path / f"{stem}.toml"
    path.write_text(text.replace(old, new), encoding="utf-8")

    with pytest.raises(ContractError) as raised:
        load_contract(path, TODAY)
    assert raised.value.path == str(path)

    contracts, errors = check_contracts(tmp_path, TODAY)
    assert contracts == {}
    found = {e.field: e.message for e in errors}
    assert field in found, found
    assert fragment in found[field]
    assert all(e.path == str(path) for e in errors)


def test_toml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text('id = "broken"\nkind = \n', encoding="utf-8")
    with pytest.raises(ContractError) as raised:
        load_contract(path, TODAY)
    assert (raised.value.path, raised.value.field) == (str(path), "(toml)")
    assert "line 2" in raised.value.message


def test_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "latin.toml"
    path.write_bytes(b'id = "caf\xe9"\n')
    with pytest.raises(ContractError) as raised:
        load_contract(path, TODAY)
    assert raised.value.field == "(file)"


def test_id_must_equal_the_file_name(tmp_path: Path) -> None:
    path = tmp_path / "google.toml"
    path.write_text(sample_text(GOOGLE), encoding="utf-8")
    with pytest.raises(ContractError) as raised:
        load_contract(path, TODAY)
    assert raised.value.field == "id"
    assert "google.toml" in str(raised.value)
    assert "file name" in raised.value.message


def test_duplicate_id_across_files(tmp_path: Path) -> None:
    # The file named after the id owns it; the copy is refused twice over.
    (tmp_path / f"{GOOGLE}.toml").write_text(sample_text(GOOGLE), encoding="utf-8")
    copy_path = tmp_path / "a-copy.toml"
    copy_path.write_text(sample_text(GOOGLE), encoding="utf-8")
    contracts, errors = check_contracts(tmp_path, TODAY)
    assert list(contracts) == [GOOGLE]
    assert [(e.path, e.field) for e in errors] == [(str(copy_path), "id")] * 2
    assert "duplicate id" in errors[1].message
    assert f"{GOOGLE}.toml" in errors[1].message
    with pytest.raises(ContractError):
        load_contracts(tmp_path, TODAY)


def test_check_collects_errors_across_files(tmp_path: Path) -> None:
    for stem in SAMPLE_IDS:
        (tmp_path / f"{stem}.toml").write_text(sample_text(stem), encoding="utf-8")
    bad = sample_text(POINT).replace("min_cell_count = 10", "min_cell_count = 0")
    (tmp_path / f"{POINT}.toml").write_text(bad, encoding="utf-8")
    (tmp_path / "zz.toml").write_text("id = \n", encoding="utf-8")
    contracts, errors = check_contracts(tmp_path, TODAY)
    assert sorted(contracts) == [GOOGLE, FRAUD]
    assert [(Path(e.path).name, e.field) for e in errors] == [
        (f"{POINT}.toml", "statistics.min_cell_count"),
        ("zz.toml", "(toml)"),
    ]


@pytest.mark.parametrize("make", ["missing", "empty", "no toml", "a file"])
def test_no_contracts_is_an_error(tmp_path: Path, make: str) -> None:
    directory = tmp_path / "partners"
    if make != "missing" and make != "a file":
        directory.mkdir()
    if make == "no toml":
        (directory / "README.md").write_text("# not a contract\n", encoding="utf-8")
    if make == "a file":
        directory.write_text("", encoding="utf-8")
    with pytest.raises(ContractError) as raised:
        load_contracts(directory, TODAY)
    assert (raised.value.path, raised.value.field) == (str(directory), "(directory)")
    assert check_contracts(directory, TODAY)[0] == {}


# --- `gateway partners check`


def test_cli_ok_on_the_shipped_partners(capsys: pytest.CaptureFixture[str]) -> None:
    from gateway.cli import main

    assert main(["partners", "check", str(PARTNERS)]) == 0
    out, err = capsys.readouterr()
    assert out == f"ok: 3 contracts: {', '.join(SAMPLE_IDS)}\n"
    assert err == ""


def test_cli_reports_each_error_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from gateway.cli import main

    text = sample_text(GOOGLE).replace('legal_bases = ["consent"]', 'legal_bases = ["opt_out"]')
    (tmp_path / f"{GOOGLE}.toml").write_text(text, encoding="utf-8")
    (tmp_path / "other.toml").write_text("id = \n", encoding="utf-8")
    assert main(["partners", "check", str(tmp_path)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(f"{tmp_path / GOOGLE}.toml: {AD}.legal_bases: opt_out")
    assert lines[1].startswith(f"{tmp_path / 'other.toml'}: (toml): TOML syntax error")


def test_cli_directory_defaults_to_the_environment_then_partners(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from gateway.cli import main

    monkeypatch.setenv("GATEWAY_PARTNERS_DIR", str(tmp_path / "nowhere"))
    assert main(["partners", "check"]) == 1
    assert "nowhere: (directory): no such directory" in capsys.readouterr().err

    monkeypatch.delenv("GATEWAY_PARTNERS_DIR")
    monkeypatch.chdir(PARTNERS.parent)
    assert main(["partners", "check"]) == 0
    assert capsys.readouterr().out.startswith("ok: 3 contracts: ")


def test_contract_dates_are_judged_on_the_date_in_japan() -> None:
    """16:00 UTC is 01:00 the next day in Japan: an agreement ending on the UTC date has
    already lapsed there, as the policy engine judges it (start-up and `partners check` too)."""
    assert japan_date(datetime(2026, 12, 6, 16, 0, tzinfo=UTC)) == date(2026, 12, 7)
    assert japan_date(datetime(2026, 12, 6, 14, 59, tzinfo=UTC)) == date(2026, 12, 6)
