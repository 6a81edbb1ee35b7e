//! Submission and withdrawal validation through the public API: the three valid examples pass, and
//! each check refuses a copy of an example broken in exactly one way, at the right JSON pointer.

use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use onething::mapping::Mapping;
use onething::validate::{
    FieldError, gb11643_check_char, gb11643_valid, gb32100_valid, validate_submission,
    validate_submission_value, validate_withdrawal_value,
};
use serde_json::{Value, json};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

static MAPPING: LazyLock<Mapping> = LazyLock::new(|| {
    Mapping::load(&root().join("mappings"))
        .unwrap_or_else(|p| panic!("mappings/ must load: {:?}", p.sorted()))
});

fn m() -> &'static Mapping {
    &MAPPING
}

fn example(name: &str) -> Value {
    let path = root().join("fixtures").join(format!("{name}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("example is JSON")
}

fn newborn() -> Value {
    example("newborn")
}
fn restaurant() -> Value {
    example("restaurant")
}
fn house() -> Value {
    example("house-transfer")
}

fn errors(v: &Value) -> Vec<FieldError> {
    validate_submission_value(v, m())
}

/// Asserts that `v` is refused with exactly one error, at `path`, whose message contains `fragment`.
#[track_caller]
fn refused_once(v: &Value, path: &str, fragment: &str) {
    let errs = errors(v);
    assert_eq!(errs.len(), 1, "expected one error at {path}, got {errs:#?}");
    assert_eq!(errs[0].path, path, "{errs:#?}");
    assert!(
        errs[0].message.contains(fragment),
        "message of {:?} lacks {fragment:?}",
        errs[0]
    );
}

/// Asserts that among the errors of `v` is one at `path` whose message contains `fragment`.
#[track_caller]
fn has_error(errs: &[FieldError], path: &str, fragment: &str) {
    assert!(
        errs.iter()
            .any(|e| e.path == path && e.message.contains(fragment)),
        "no error at {path} containing {fragment:?} in {errs:#?}"
    );
}

#[track_caller]
fn passes(v: &Value) {
    let errs = errors(v);
    assert!(errs.is_empty(), "expected no errors, got {errs:#?}");
}

/// A valid 居民身份证 number with its last character changed.
fn bad_check_digit(id: &str) -> String {
    let last = id.chars().last().unwrap();
    let other = if last == '0' { '1' } else { '0' };
    format!("{}{other}", &id[..17])
}

// ---------------------------------------------------------------------------------------------
// Valid examples

#[test]
fn the_three_examples_are_valid() {
    for name in ["newborn", "restaurant", "house-transfer"] {
        let bytes = std::fs::read(root().join("fixtures").join(format!("{name}.json"))).unwrap();
        match validate_submission(&bytes, m()) {
            Ok(v) => assert_eq!(v["onething"], name),
            Err(errs) => panic!("{name}: {errs:#?}"),
        }
    }
}

#[test]
fn known_good_identity_numbers() {
    for id in [
        "410225199506120022",
        "410225199303050036",
        "410225198808080017",
        "410225197001010048",
        "410225198504200059",
        "410225198707150063",
    ] {
        assert!(gb11643_valid(id), "{id}");
        assert_eq!(gb11643_check_char(&id[..17]), id.chars().last());
    }
    assert!(gb32100_valid("91350100M000100Y43"));
    assert!(!gb32100_valid("91350100M000100Y44"));
}

// ---------------------------------------------------------------------------------------------
// 1. One-thing and applicant kind

#[test]
fn unknown_onething() {
    let mut v = newborn();
    v["onething"] = json!("marriage");
    refused_once(&v, "/onething", "unknown one-thing `marriage`");
}

#[test]
fn applicant_of_the_wrong_kind() {
    let mut v = newborn();
    v["applicant"] = restaurant()["applicant"].clone();
    refused_once(&v, "/applicant/kind", "kind `person`");
}

#[test]
fn organization_onething_refuses_a_person_applicant() {
    let mut v = restaurant();
    v["applicant"] = newborn()["applicant"].clone();
    refused_once(&v, "/applicant/kind", "kind `organization`");
}

// ---------------------------------------------------------------------------------------------
// 2. Items

#[test]
fn unknown_item() {
    let mut v = newborn();
    v["items"] = json!(["birth-cert", "passport"]);
    refused_once(&v, "/items/1", "`passport` is not an item of `newborn`");
}

#[test]
fn item_of_another_onething() {
    let mut v = newborn();
    v["items"] = json!(["birth-cert", "seal"]);
    refused_once(&v, "/items/1", "`seal`");
}

#[test]
fn a_subset_with_its_prerequisites_passes() {
    let mut v = newborn();
    v["items"] = json!(["birth-cert", "hukou"]);
    passes(&v);
}

// ---------------------------------------------------------------------------------------------
// 3. Prerequisites and prior results

fn birth_cert_results() -> Value {
    json!({"birth-cert": {"licence_no": "A410225001", "issued_at": "2026-03-15T16:00:00+08:00"}})
}

#[test]
fn prerequisite_neither_requested_nor_given() {
    let mut v = newborn();
    v["items"] = json!(["hukou"]);
    refused_once(&v, "/items", "item `hukou` needs `birth-cert`");
}

#[test]
fn prerequisite_given_in_prior_results_passes() {
    let mut v = newborn();
    v["items"] = json!(["hukou"]);
    v["prior_results"] = birth_cert_results();
    passes(&v);
}

#[test]
fn prior_results_for_a_requested_item() {
    let mut v = newborn();
    v["prior_results"] = birth_cert_results();
    refused_once(&v, "/prior_results/birth-cert", "requested in this case");
}

#[test]
fn prior_results_for_an_item_of_another_onething() {
    let mut v = newborn();
    v["items"] = json!(["hukou"]);
    let mut prior = birth_cert_results();
    prior["business-licence"] = json!({"uscc": "x", "licence_no": "y", "company_name": "z"});
    v["prior_results"] = prior;
    refused_once(
        &v,
        "/prior_results/business-licence",
        "not an item of `newborn`",
    );
}

#[test]
fn prior_results_missing_a_key() {
    let mut v = newborn();
    v["items"] = json!(["hukou"]);
    v["prior_results"] = json!({"birth-cert": {"licence_no": "A410225001"}});
    refused_once(
        &v,
        "/prior_results/birth-cert/issued_at",
        "result `issued_at` of `birth-cert` missing",
    );
}

#[test]
fn prior_results_time_not_rfc3339() {
    let mut v = newborn();
    v["items"] = json!(["hukou"]);
    v["prior_results"] =
        json!({"birth-cert": {"licence_no": "A410225001", "issued_at": "2026-03-15 16:00:00"}});
    refused_once(&v, "/prior_results/birth-cert/issued_at", "RFC 3339");
}

#[test]
fn prior_results_value_not_a_string() {
    let mut v = house();
    v["items"] = json!(["water-transfer"]);
    v["prior_results"] = json!({"property-transfer": {"certificate_no": 4567, "registered_at": "2026-03-20T10:00:00+08:00"}});
    refused_once(
        &v,
        "/prior_results/property-transfer/certificate_no",
        "must be a string",
    );
}

// ---------------------------------------------------------------------------------------------
// 4. Identity numbers and persons

#[test]
fn bad_check_digit_of_the_mother() {
    let mut v = newborn();
    v["form"]["mother"]["id_number"] = json!(bad_check_digit("410225199506120022"));
    refused_once(&v, "/form/mother/id_number", "check digit mismatch");
}

#[test]
fn bad_check_digit_of_the_applicant() {
    let mut v = house();
    v["applicant"]["id_number"] = json!(bad_check_digit("410225198808080017"));
    refused_once(&v, "/applicant/id_number", "check digit mismatch");
}

#[test]
fn identity_number_of_the_wrong_shape() {
    let mut v = house();
    v["form"]["seller"]["id_number"] = json!("41022519700101004");
    refused_once(
        &v,
        "/form/seller/id_number",
        "not a valid 居民身份证 number",
    );
}

#[test]
fn identity_number_with_an_impossible_birth_date() {
    let first = "41022519700230004";
    let mut v = house();
    v["form"]["seller"]["id_number"] =
        json!(format!("{first}{}", gb11643_check_char(first).unwrap()));
    refused_once(
        &v,
        "/form/seller/id_number",
        "not a valid 居民身份证 number",
    );
}

#[test]
fn bad_check_digit_of_a_shareholder_in_an_array() {
    let mut v = restaurant();
    v["form"]["company"]["shareholders"][1]["id_number"] =
        json!(bad_check_digit("410225198707150063"));
    refused_once(
        &v,
        "/form/company/shareholders/1/id_number",
        "check digit mismatch",
    );
}

#[test]
fn bad_check_digit_of_the_legal_representative() {
    let mut v = restaurant();
    v["applicant"]["legal_rep"]["id_number"] = json!(bad_check_digit("410225198504200059"));
    refused_once(&v, "/applicant/legal_rep/id_number", "check digit mismatch");
}

#[test]
fn other_document_types_are_not_checked_as_resident_ids() {
    let mut v = house();
    v["form"]["seller"]["id_type"] = json!("414");
    v["form"]["seller"]["id_number"] = json!("E12345678");
    passes(&v);
}

#[test]
fn valid_uscc_passes() {
    let mut v = restaurant();
    v["applicant"]["uscc"] = json!("91350100M000100Y43");
    passes(&v);
}

#[test]
fn bad_uscc() {
    let mut v = restaurant();
    v["applicant"]["uscc"] = json!("91350100M000100Y44");
    refused_once(&v, "/applicant/uscc", "check character mismatch");
}

#[test]
fn form_person_with_unknown_document_type() {
    let mut v = house();
    v["form"]["buyer"]["id_type"] = json!("999");
    refused_once(&v, "/form/buyer/id_type", "gat2000-156-id-type");
}

#[test]
fn form_person_without_a_name() {
    let mut v = house();
    v["form"]["seller"].as_object_mut().unwrap().remove("name");
    refused_once(&v, "/form/seller/name", "required field missing");
}

#[test]
fn form_person_that_is_not_an_object() {
    let mut v = house();
    v["form"]["seller"] = json!("刘芳");
    refused_once(&v, "/form/seller", "must be a person");
}

#[test]
fn ethnicity_not_in_gb3304() {
    let mut v = newborn();
    v["form"]["child"]["ethnicity"] = json!("57");
    refused_once(&v, "/form/child/ethnicity", "gb3304-ethnicity");
    let mut v = newborn();
    v["form"]["mother"]["ethnicity"] = json!("57");
    refused_once(&v, "/form/mother/ethnicity", "gb3304-ethnicity");
    let mut v = newborn();
    v["applicant"]["ethnicity"] = json!("57");
    refused_once(&v, "/applicant/ethnicity", "gb3304-ethnicity");
}

// ---------------------------------------------------------------------------------------------
// 5. Envelope

#[test]
fn submitted_at_not_a_real_time() {
    let mut v = newborn();
    v["submitted_at"] = json!("2026-02-30T09:15:00+08:00");
    refused_once(&v, "/submitted_at", "date-time");
    let mut v = newborn();
    v["submitted_at"] = json!("2026-03-16 09:15:00");
    refused_once(&v, "/submitted_at", "date-time");
}

#[test]
fn division_not_six_digits() {
    let mut v = newborn();
    v["division"] = json!("41022");
    refused_once(&v, "/division", "41022");
}

// ---------------------------------------------------------------------------------------------
// 6. Form fields

#[test]
fn required_field_missing() {
    let mut v = newborn();
    v["form"]["child"]
        .as_object_mut()
        .unwrap()
        .remove("hospital");
    refused_once(&v, "/form/child/hospital", "required field missing");
}

#[test]
fn missing_parent_object_reports_each_required_field() {
    let mut v = newborn();
    v["form"].as_object_mut().unwrap().remove("household");
    let errs = errors(&v);
    assert_eq!(errs.len(), 3, "{errs:#?}");
    for f in ["address", "head_name", "relation"] {
        has_error(
            &errs,
            &format!("/form/household/{f}"),
            "required field missing",
        );
    }
}

#[test]
fn optional_fields_may_be_absent() {
    let mut v = newborn();
    let form = v["form"].as_object_mut().unwrap();
    form.remove("father");
    form.remove("social_card");
    passes(&v);
}

#[test]
fn birth_date_not_a_real_date() {
    let mut v = newborn();
    v["form"]["child"]["birth_date"] = json!("2026-02-30");
    refused_once(&v, "/form/child/birth_date", "not a real calendar date");
    let mut v = newborn();
    v["form"]["child"]["birth_date"] = json!("2026/03/15");
    refused_once(&v, "/form/child/birth_date", "YYYY-MM-DD");
}

#[test]
fn birth_time_out_of_range() {
    let mut v = newborn();
    v["form"]["child"]["birth_time"] = json!("25:00");
    refused_once(&v, "/form/child/birth_time", "HH:MM");
    let mut v = newborn();
    v["form"]["child"]["birth_time"] = json!("8:30");
    refused_once(&v, "/form/child/birth_time", "HH:MM");
}

#[test]
fn gender_in_the_table_but_not_in_values() {
    let mut v = newborn();
    v["form"]["child"]["gender"] = json!("9");
    refused_once(&v, "/form/child/gender", "not allowed here (allowed: 1, 2)");
}

#[test]
fn text_not_in_values() {
    let mut v = newborn();
    v["form"]["social_card"]["pickup"] = json!("drone");
    refused_once(&v, "/form/social_card/pickup", "`drone` is not allowed");
}

#[test]
fn integer_field_with_a_fraction() {
    let mut v = newborn();
    v["form"]["child"]["weight_g"] = json!(3400.5);
    refused_once(&v, "/form/child/weight_g", "integer");
}

#[test]
fn number_field_as_text() {
    let mut v = restaurant();
    v["form"]["company"]["capital_wan"] = json!("50");
    refused_once(&v, "/form/company/capital_wan", "number");
}

#[test]
fn boolean_field_as_text() {
    let mut v = restaurant();
    v["form"]["tax"]["invoice"] = json!("yes");
    refused_once(&v, "/form/tax/invoice", "true or false");
}

#[test]
fn text_field_as_number() {
    let mut v = restaurant();
    v["form"]["shop"]["name"] = json!(42);
    refused_once(&v, "/form/shop/name", "must be a string");
}

#[test]
fn unit_no_not_28_characters() {
    let mut v = house();
    v["form"]["property"]["unit_no"] = json!("410225001001GB00012F0001002");
    refused_once(&v, "/form/property/unit_no", "exactly 28 characters");
}

#[test]
fn array_element_not_in_values() {
    let mut v = restaurant();
    v["form"]["seals"] = json!(["official", "secret"]);
    refused_once(&v, "/form/seals/1", "`secret` is not allowed");
}

#[test]
fn array_below_min_items() {
    let mut v = restaurant();
    v["form"]["shop"]["categories"] = json!([]);
    refused_once(&v, "/form/shop/categories", "at least 1");
}

#[test]
fn array_field_not_an_array() {
    let mut v = restaurant();
    v["form"]["shop"]["categories"] = json!("热食类食品制售");
    refused_once(&v, "/form/shop/categories", "must be an array");
}

#[test]
fn field_of_every_array_element() {
    let mut v = restaurant();
    v["form"]["company"]["shareholders"][0]
        .as_object_mut()
        .unwrap()
        .remove("share_percent");
    refused_once(
        &v,
        "/form/company/shareholders/0/share_percent",
        "required field missing",
    );
    let mut v = restaurant();
    v["form"]["company"]["shareholders"][1]["share_percent"] = json!("40%");
    refused_once(&v, "/form/company/shareholders/1/share_percent", "number");
}

// ---------------------------------------------------------------------------------------------
// 7. Materials

fn without_material(mut v: Value, kind: &str) -> Value {
    v["materials"]
        .as_array_mut()
        .unwrap()
        .retain(|m| m["kind"] != kind);
    v
}

#[test]
fn missing_required_material() {
    let v = without_material(newborn(), "household_register");
    refused_once(
        &v,
        "/materials",
        "required material household_register (户口簿) missing",
    );
}

#[test]
fn missing_optional_material_passes() {
    passes(&without_material(newborn(), "parents_marriage_cert"));
}

#[test]
fn tolerated_missing_material_passes() {
    let mut v = without_material(newborn(), "household_register");
    v["tolerance"] = json!({"missing": ["household_register"], "pledge": true});
    passes(&v);
}

#[test]
fn unknown_material_kind() {
    let mut v = newborn();
    v["materials"][1]["kind"] = json!("business_licence");
    refused_once(
        &v,
        "/materials/1/kind",
        "`business_licence` is not a material kind of `newborn`",
    );
}

#[test]
fn articles_of_association_required_for_a_company() {
    let v = without_material(restaurant(), "articles_of_association");
    refused_once(
        &v,
        "/materials",
        "required material articles_of_association (章程) missing",
    );
}

#[test]
fn articles_of_association_not_required_for_an_individual() {
    let mut v = without_material(restaurant(), "articles_of_association");
    v["form"]["company"]["kind"] = json!("individual");
    passes(&v);
}

// ---------------------------------------------------------------------------------------------
// 8. Catalog rules

#[test]
fn an_individual_may_have_no_shareholders() {
    let mut v = restaurant();
    v["form"]["company"]["kind"] = json!("individual");
    v["form"]["company"]["shareholders"] = json!([]);
    passes(&v);
}

#[test]
fn a_company_needs_a_shareholder() {
    let mut v = restaurant();
    v["form"]["company"]["shareholders"] = json!([]);
    refused_once(
        &v,
        "/form/company/shareholders",
        "a company needs at least one shareholder",
    );
}

// ---------------------------------------------------------------------------------------------
// Schema

#[test]
fn missing_case_id() {
    let mut v = newborn();
    v.as_object_mut().unwrap().remove("case_id");
    refused_once(&v, "/case_id", "case_id");
}

#[test]
fn extra_top_level_property() {
    let mut v = newborn();
    v["priority"] = json!("high");
    refused_once(&v, "/priority", "not allowed");
}

#[test]
fn wrong_schema_name() {
    let mut v = newborn();
    v["schema"] = json!("onething.submission/v2");
    refused_once(&v, "/schema", "onething.submission/v1");
}

#[test]
fn applicant_errors_point_into_the_applicant() {
    let mut v = newborn();
    v["applicant"]["phone"] = json!("12345");
    refused_once(&v, "/applicant/phone", "12345");
    let mut v = restaurant();
    v["applicant"].as_object_mut().unwrap().remove("legal_rep");
    refused_once(&v, "/applicant/legal_rep", "legal_rep");
    let mut v = newborn();
    v["applicant"]["kind"] = json!("robot");
    let errs = errors(&v);
    has_error(&errs, "/applicant/kind", "person");
}

#[test]
fn material_schema_errors() {
    let mut v = newborn();
    v["materials"][0]["origin"] = json!("fax");
    refused_once(&v, "/materials/0/origin", "fax");
    let mut v = newborn();
    v["materials"][0].as_object_mut().unwrap().remove("id");
    refused_once(&v, "/materials/0/id", "required");
}

#[test]
fn not_json() {
    let errs = validate_submission(b"{\"schema\": \"onething.submission/v1\",", m()).unwrap_err();
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].path, "");
    assert!(errs[0].message.starts_with("not JSON: "), "{errs:?}");
}

#[test]
fn a_byte_order_mark_is_ignored() {
    let mut bytes = b"\xEF\xBB\xBF".to_vec();
    bytes.extend(std::fs::read(root().join("fixtures/newborn.json")).unwrap());
    assert!(validate_submission(&bytes, m()).is_ok());
}

#[test]
fn missing_materials_still_names_what_is_required() {
    let mut v = house();
    v.as_object_mut().unwrap().remove("materials");
    let errs = errors(&v);
    has_error(&errs, "/materials", "required property");
    has_error(&errs, "/materials", "required material sale_contract");
}

// ---------------------------------------------------------------------------------------------
// Everything at once, odd shapes, the error type

#[test]
fn several_problems_are_all_reported() {
    let mut v = newborn();
    v.as_object_mut().unwrap().remove("case_id");
    v["form"]["mother"]["id_number"] = json!(bad_check_digit("410225199506120022"));
    v["form"]["child"]["birth_date"] = json!("2026-02-30");
    v["form"]["child"]["gender"] = json!("9");
    v["items"] = json!(["hukou", "passport"]);
    let v = without_material(v, "birth_medical_record");
    let errs = errors(&v);
    has_error(&errs, "/case_id", "required");
    has_error(&errs, "/form/mother/id_number", "check digit mismatch");
    has_error(&errs, "/form/child/birth_date", "not a real calendar date");
    has_error(&errs, "/form/child/gender", "not allowed");
    has_error(&errs, "/items/1", "passport");
    has_error(&errs, "/items", "needs `birth-cert`");
    has_error(&errs, "/materials", "birth_medical_record");
    assert_eq!(errs.len(), 7, "{errs:#?}");
    match validate_submission(serde_json::to_string(&v).unwrap().as_bytes(), m()) {
        Err(e) => assert_eq!(e, errs),
        Ok(_) => panic!("accepted"),
    }
}

#[test]
fn odd_shapes_are_refused_without_panicking() {
    let odd = [
        json!(null),
        json!([]),
        json!("newborn"),
        json!({}),
        json!({"onething": "newborn"}),
        json!({"onething": "newborn", "form": [], "items": "hukou", "materials": {}, "applicant": "李娜"}),
        json!({"onething": "restaurant", "form": {"company": "x", "shop": {"categories": [1, null]}},
               "applicant": {"kind": "organization", "legal_rep": 7, "uscc": "短"},
               "prior_results": {"seal": "x"}, "tolerance": {"missing": "all"}}),
        json!({"onething": "house-transfer", "form": {"seller": {"id_type": 111, "id_number": ["x"], "name": ""}},
               "applicant": {"id_type": "111", "id_number": "４10225198808080017"}}),
    ];
    for v in odd {
        assert!(!errors(&v).is_empty(), "{v} accepted");
    }
    let mut v = newborn();
    v["form"] = json!({"child": {"name": "x", "gender": null}});
    assert!(!errors(&v).is_empty());
}

#[test]
fn field_errors_serialize_as_path_and_message() {
    let e = FieldError {
        path: "/applicant/id_number".into(),
        message: "check digit mismatch".into(),
    };
    assert_eq!(
        serde_json::to_value(&e).unwrap(),
        json!({"path": "/applicant/id_number", "message": "check digit mismatch"})
    );
}

// ---------------------------------------------------------------------------------------------
// Withdrawals

#[test]
fn withdrawal_schema() {
    let ok = json!({"schema": "onething.withdrawal/v1", "case_id": "410225-20260316-000123",
                    "reason": "申请人主动撤回", "requested_at": "2026-03-16T10:00:00+08:00"});
    assert_eq!(validate_withdrawal_value(&ok), vec![]);
    let mut bad = ok.clone();
    bad.as_object_mut().unwrap().remove("reason");
    bad["requested_at"] = json!("yesterday");
    let errs = validate_withdrawal_value(&bad);
    assert_eq!(errs.len(), 2, "{errs:#?}");
    has_error(&errs, "/reason", "required");
    has_error(&errs, "/requested_at", "date-time");
}

// ---------------------------------------------------------------------------------------------
// fixtures/invalid/

#[test]
fn invalid_fixtures_are_refused_at_the_expected_pointer() {
    let cases = [
        (
            "bad-check-digit.json",
            "/form/mother/id_number",
            "check digit mismatch",
        ),
        ("schema-violation.json", "/case_id", "required"),
        ("not-json.txt", "", "not JSON"),
        ("unknown-onething.json", "/onething", "unknown one-thing"),
        (
            "bad-uscc.json",
            "/applicant/uscc",
            "check character mismatch",
        ),
    ];
    let dir: &Path = &root().join("fixtures").join("invalid");
    for (file, path, fragment) in cases {
        let bytes = std::fs::read(dir.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        let errs = validate_submission(&bytes, m()).expect_err(file);
        has_error(&errs, path, fragment);
    }
}
