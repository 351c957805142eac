//! genolens' statistics against scipy 1.17 on fixed vectors (tests/fixtures/stats.json, made by
//! tests/reference/make_stats_fixtures.py): t, p, CI, d, g, U, ρ and BH q within 1e-9.

use genolens::stats::hypothesis::{
    benjamini_hochberg, cohens_d, hedges_g, mann_whitney_u, spearman, student_t, welch_t,
    MannWhitneyMethod,
};
use serde_json::Value;

const TOLERANCE: f64 = 1e-9;

fn fixture() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/stats.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn floats(value: &Value) -> Vec<f64> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect()
}

fn close(what: &str, ours: f64, scipy: f64) {
    assert!(
        (ours - scipy).abs() <= TOLERANCE,
        "{what}: genolens {ours:e} vs scipy {scipy:e} (|Δ| = {:e})",
        (ours - scipy).abs()
    );
}

#[test]
fn two_sample_tests_match_scipy() {
    let fixture = fixture();
    for case in fixture["two_sample"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let (a, b) = (floats(&case["a"]), floats(&case["b"]));
        let what = |s: &str| format!("{name}: {s}");
        let welch = welch_t(&a, &b);
        close(&what("welch t"), welch.t, case["welch_t"].as_f64().unwrap());
        close(
            &what("welch df"),
            welch.df,
            case["welch_df"].as_f64().unwrap(),
        );
        close(&what("welch p"), welch.p, case["welch_p"].as_f64().unwrap());
        let ci = floats(&case["welch_ci"]);
        close(&what("welch ci low"), welch.ci_low, ci[0]);
        close(&what("welch ci high"), welch.ci_high, ci[1]);
        let student = student_t(&a, &b);
        close(
            &what("student t"),
            student.t,
            case["student_t"].as_f64().unwrap(),
        );
        close(
            &what("student p"),
            student.p,
            case["student_p"].as_f64().unwrap(),
        );
        let ci = floats(&case["student_ci"]);
        close(&what("student ci low"), student.ci_low, ci[0]);
        close(&what("student ci high"), student.ci_high, ci[1]);
        close(
            &what("cohen's d"),
            cohens_d(&a, &b),
            case["cohens_d"].as_f64().unwrap(),
        );
        close(
            &what("hedges' g"),
            hedges_g(&a, &b),
            case["hedges_g"].as_f64().unwrap(),
        );
        let mw = mann_whitney_u(&a, &b);
        let expected_method = match case["mann_whitney_method"].as_str().unwrap() {
            "exact" => MannWhitneyMethod::Exact,
            _ => MannWhitneyMethod::Asymptotic,
        };
        assert_eq!(mw.method, expected_method, "{name}: Mann-Whitney method");
        close(&what("U"), mw.u, case["mann_whitney_u"].as_f64().unwrap());
        close(&what("U p"), mw.p, case["mann_whitney_p"].as_f64().unwrap());
    }
}

#[test]
fn spearman_and_benjamini_hochberg_match_scipy() {
    let fixture = fixture();
    for case in fixture["spearman"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let result = spearman(&floats(&case["x"]), &floats(&case["y"]));
        close(
            &format!("{name}: rho"),
            result.r,
            case["rho"].as_f64().unwrap(),
        );
        close(&format!("{name}: p"), result.p, case["p"].as_f64().unwrap());
    }
    let bh = &fixture["benjamini_hochberg"];
    let q = benjamini_hochberg(&floats(&bh["p"]));
    for (i, (ours, scipy)) in q.iter().zip(floats(&bh["q"])).enumerate() {
        close(&format!("q[{i}]"), *ours, scipy);
    }
}
