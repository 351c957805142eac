"""Reference values for genolens' statistics (src/stats/hypothesis.rs) from scipy.

Run with `just fixtures` (pinned scipy in tests/reference/requirements.txt). Writes
tests/fixtures/stats.json: fixed vectors (seeded numpy draws, with and without ties) and scipy's
t tests, Mann-Whitney U (exact and asymptotic), Spearman rho, Benjamini-Hochberg q, plus Cohen's
d (pooled SD, ddof = 1) and Hedges' g (J = 1 - 3 / (4 (n_a + n_b) - 9)) written out in numpy.
"""

import json
from pathlib import Path

import numpy as np
import scipy
from scipy import stats

OUT = Path(__file__).resolve().parents[1] / "fixtures" / "stats.json"


def two_sample(name, a, b, mw_method):
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    welch = stats.ttest_ind(a, b, equal_var=False)
    student = stats.ttest_ind(a, b, equal_var=True)
    welch_ci = welch.confidence_interval(0.95)
    student_ci = student.confidence_interval(0.95)
    na, nb = len(a), len(b)
    pooled = ((na - 1) * a.var(ddof=1) + (nb - 1) * b.var(ddof=1)) / (na + nb - 2)
    d = (a.mean() - b.mean()) / np.sqrt(pooled)
    g = d * (1 - 3 / (4 * (na + nb) - 9))
    mw = stats.mannwhitneyu(a, b, alternative="two-sided", method=mw_method)
    return {
        "name": name,
        "a": a.tolist(),
        "b": b.tolist(),
        "welch_t": float(welch.statistic),
        "welch_df": float(welch.df),
        "welch_p": float(welch.pvalue),
        "welch_ci": [float(welch_ci.low), float(welch_ci.high)],
        "student_t": float(student.statistic),
        "student_p": float(student.pvalue),
        "student_ci": [float(student_ci.low), float(student_ci.high)],
        "cohens_d": float(d),
        "hedges_g": float(g),
        "mann_whitney_method": mw_method,
        "mann_whitney_u": float(mw.statistic),
        "mann_whitney_p": float(mw.pvalue),
    }


def main():
    rng = np.random.default_rng(20261206)
    cases = [
        # Small, no ties: the exact U distribution.
        two_sample("small_exact", rng.normal(0.0, 1.0, 7), rng.normal(0.8, 1.5, 9), "exact"),
        two_sample("twenty_exact", rng.normal(0.0, 1.0, 20), rng.normal(0.3, 1.0, 18), "exact"),
        # Larger, unequal variances, no ties: the normal approximation.
        two_sample("large_asymptotic", rng.normal(0.0, 1.0, 60), rng.normal(0.4, 2.0, 45), "asymptotic"),
        # Ties (rounded values): tie-corrected normal approximation.
        two_sample("ties", np.round(rng.normal(0.0, 1.0, 15), 1), np.round(rng.normal(0.5, 1.0, 12), 1), "asymptotic"),
        # A strong difference: a tiny p.
        two_sample("strong", rng.normal(0.0, 1.0, 40), rng.normal(3.0, 1.0, 40), "asymptotic"),
    ]
    correlations = []
    for name, n, ties in (("continuous", 50, False), ("ties", 80, True), ("weak", 200, False)):
        x = rng.normal(size=n)
        y = 0.4 * x + rng.normal(size=n) if name != "weak" else 0.05 * x + rng.normal(size=n)
        if ties:
            x, y = np.round(x, 0), np.round(y, 1)
        r = stats.spearmanr(x, y)
        correlations.append({"name": name, "x": x.tolist(), "y": y.tolist(),
                             "rho": float(r.statistic), "p": float(r.pvalue)})
    p = np.concatenate([rng.uniform(size=40), rng.uniform(0, 1e-3, size=10), [0.5, 0.5, 1.0]])
    bh = {"p": p.tolist(), "q": stats.false_discovery_control(p, method="bh").tolist()}
    OUT.write_text(json.dumps({
        "scipy": scipy.__version__,
        "numpy": np.__version__,
        "two_sample": cases,
        "spearman": correlations,
        "benjamini_hochberg": bh,
    }, indent=1) + "\n")


if __name__ == "__main__":
    main()
