import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from calibsynth.stats import (RESAMPLING, Verdict, balanced_means, compare, correlation_verdict, crossed_bootstrap,
                              decide, min_p_value, paired_bootstrap, paired_differences, paired_permutation,
                              simulate_comparison, spread_verdict, verdict)

ALPHA = 0.05


def binomial_bound(n_datasets, alpha=ALPHA):
    "The most false positives a correct test shows over n_datasets, with three binomial standard errors of slack."
    return alpha + 3 * math.sqrt(alpha * (1 - alpha) / n_datasets)


def small_table():
    return pd.DataFrame({"set": ["A"] * 4 + ["B"] * 4, "seed": [0, 0, 1, 1] * 2, "window": [0, 1] * 4,
                         "log_ppl": [3.0, 2.0, 3.5, 2.5, 3.25, 2.0, 3.75, 2.75]})


def test_paired_differences_is_a_seeds_by_windows_matrix_of_a_minus_b():
    diffs = paired_differences(small_table(), "A", "B")
    assert diffs.index.tolist() == [0, 1] and diffs.columns.tolist() == [0, 1]
    assert diffs.to_numpy().tolist() == [[-0.25, 0.0], [-0.25, -0.25]]
    # rows in any order pair the same way
    shuffled = small_table().sample(frac=1, random_state=0)
    pd.testing.assert_frame_equal(paired_differences(shuffled, "A", "B"), diffs)


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.iloc[:-1], "unpaired rows"),
    (lambda t: pd.concat([t, t.iloc[:1]]), "duplicate rows"),
    (lambda t: t.assign(log_ppl=t.log_ppl.where(t.index != 2)), "missing 'log_ppl'"),
    (lambda t: t.drop(index=[1, 5]), "same windows"),
    (lambda t: t.drop(columns="seed"), "['seed']"),
])
def test_paired_differences_refuses_broken_pairings(edit, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        paired_differences(edit(small_table()), "A", "B")


def test_paired_differences_names_an_unknown_set():
    with pytest.raises(ValueError, match="'C' not in column 'set'"):
        paired_differences(small_table(), "A", "C")


def test_exact_sign_flip_p_values_for_five_positive_differences():
    five = [0.1, 0.2, 0.3, 0.4, 0.5]
    assert paired_permutation(five) == 2 / 32
    assert paired_permutation(five, "greater") == 1 / 32
    assert paired_permutation(five, "less") == 1.0


@pytest.mark.parametrize("n", [3, 4, 6, 8, 20])
def test_all_positive_differences_reach_the_floor(n):
    assert paired_permutation(np.linspace(0.1, 0.2, n)) == pytest.approx(min_p_value(2**n))
    assert min_p_value(2**n) == (2 / 2**n if n <= 13 else 2 / 10000)


def test_permutation_p_is_close_to_the_paired_t_test_on_normal_data():
    rng = np.random.default_rng(1)
    before = rng.normal(3.0, 0.5, 40)
    after = before + rng.normal(-0.05, 0.15, 40)
    p_t = stats.ttest_rel(after, before).pvalue
    assert paired_permutation(after - before) == pytest.approx(p_t, rel=0.2)


def test_bootstrap_interval_is_close_to_the_t_interval_and_seeded():
    x = np.random.default_rng(0).normal(0.3, 1.0, 100)
    boot, t_ci = paired_bootstrap(x), stats.ttest_1samp(x, 0.0).confidence_interval(0.95)
    tolerance = 0.05 * (t_ci.high - t_ci.low)
    assert abs(boot.low - t_ci.low) < tolerance and abs(boot.high - t_ci.high) < tolerance
    assert paired_bootstrap(x, rng_seed=5) == paired_bootstrap(x, rng_seed=5)
    assert paired_bootstrap(x, rng_seed=5) != paired_bootstrap(x, rng_seed=6)
    assert paired_bootstrap([0.2, 0.2, 0.2]) == (0.2, 0.2, 0.2)


def test_crossed_interval_widens_only_when_windows_favour_a_set():
    def widths(window_sd):
        m = paired_differences(simulate_comparison(-0.03, n_seeds=6, n_windows=200, window_sd=window_sd), "A", "B")
        crossed, per_seed = crossed_bootstrap(m, n_resamples=1999), paired_bootstrap(m.mean(axis=1), n_resamples=1999)
        return (crossed.high - crossed.low) / (per_seed.high - per_seed.low)
    assert widths(0.2) > 1.5
    assert 0.8 < widths(0.0) < 1.3


def two_corpora(effect_short, effect_long, rng_seed=0, n_seeds=6):
    "A long table whose windows come from a 7-window corpus and a 16-window one, with their own true effects."
    short = simulate_comparison(effect_short, n_seeds=n_seeds, n_windows=7, rng_seed=rng_seed).assign(eval_source="short")
    long = simulate_comparison(effect_long, n_seeds=n_seeds, n_windows=16, rng_seed=rng_seed + 1).assign(eval_source="long")
    return pd.concat([short, long], ignore_index=True)


def test_strata_compare_the_corpus_balanced_means_a_run_reports():
    table = two_corpora(-0.2, 0.0)
    v = compare(table, "A", "B", "less", within=("eval_source", "window"), strata="eval_source")
    means = table.groupby(["set", "eval_source"]).log_ppl.mean().groupby("set").mean()  # each corpus weighs 1/2
    assert v.estimate == pytest.approx(means["A"] - means["B"], abs=1e-12)
    pooled = compare(table, "A", "B", "less", within=("eval_source", "window"))
    assert pooled.estimate == pytest.approx(table[table.set == "A"].log_ppl.mean() - table[table.set == "B"].log_ppl.mean())
    assert abs(v.estimate) > abs(pooled.estimate) + 0.03  # the 7-window corpus carries the effect: pooling dilutes it
    per_seed = balanced_means(paired_differences(table, "A", "B", within=("eval_source", "window")),
                              ["long"] * 16 + ["short"] * 7)  # columns sort by corpus name
    assert v.p_value == pytest.approx(paired_permutation(per_seed))


def test_stratified_noise_is_inconclusive_at_the_stated_rate():
    n = 60
    labels = [compare(two_corpora(0.0, 0.0, rng_seed=300 + 2 * i), "A", "B", "less", within=("eval_source", "window"),
                      strata="eval_source", n_resamples=999).label for i in range(n)]
    assert np.mean([label != "inconclusive" for label in labels]) <= binomial_bound(n)


def test_a_clear_effect_is_reproduced_and_the_opposite_claim_contradicted():
    clear = simulate_comparison(effect=-0.07, n_seeds=6, n_windows=200, rng_seed=3)
    better = compare(clear, "A", "B", "less")
    assert better.label == "reproduced"
    assert better.ci_low < better.estimate < better.ci_high < 0
    assert (better.n_seeds, better.n_units, better.metric) == (6, 200, "log_ppl")
    assert better.p_value == pytest.approx(2 / 64)
    assert compare(clear, "A", "B", "greater").label == "contradicted"
    assert compare(clear, "B", "A", "greater").label == "reproduced"


def test_pure_noise_is_inconclusive_at_the_stated_rate():
    n = 100
    for test, n_seeds in (("permutation", 6), ("t", 3)):
        labels = [compare(simulate_comparison(0.0, n_seeds=n_seeds, n_windows=50, rng_seed=100 + i), "A", "B", "less",
                          test=test, n_resamples=999).label for i in range(n)]
        rate = np.mean([label != "inconclusive" for label in labels])
        assert rate <= binomial_bound(n), (test, rate)


def test_window_effects_inflate_seed_only_verdicts_but_not_crossed_ones():
    n, outcomes = 100, []
    for i in range(n):
        d = paired_differences(simulate_comparison(0.0, n_seeds=6, n_windows=100, window_sd=0.1, rng_seed=2000 + i),
                               "A", "B")
        outcomes.append({r: verdict(d, "less", resample=r, n_resamples=999).label != "inconclusive" for r in RESAMPLING})
    rates = pd.DataFrame(outcomes).mean()
    assert rates["crossed"] <= binomial_bound(n) < rates["seed"], rates.to_dict()


def test_three_seeds_cannot_pass_the_permutation_test_but_can_pass_the_t_test():
    three = simulate_comparison(effect=-0.07, n_seeds=3, n_windows=200, rng_seed=7)
    by_permutation = compare(three, "A", "B", "less")
    assert (by_permutation.label, by_permutation.p_value, by_permutation.min_p) == ("inconclusive", 0.25, 0.25)
    by_t = compare(three, "A", "B", "less", test="t")
    assert by_t.label == "reproduced"
    means = three.groupby(["set", "seed"]).log_ppl.mean()
    assert by_t.p_value == pytest.approx(stats.ttest_rel(means["A"], means["B"]).pvalue)


@pytest.mark.parametrize("low, high, p, expect, null, label", [
    (-0.06, -0.02, 0.01, "less", 0.0, "reproduced"),
    (0.02, 0.06, 0.01, "less", 0.0, "contradicted"),
    (0.02, 0.06, 0.01, "greater", 0.0, "reproduced"),
    (-0.06, 0.02, 0.01, "less", 0.0, "inconclusive"),
    (-0.06, -0.02, 0.05, "less", 0.0, "inconclusive"),
    (0.5, 0.8, 0.01, "less", 1.0, "reproduced"),
    (math.nan, -0.02, 0.01, "less", 0.0, "inconclusive"),
])
def test_decide(low, high, p, expect, null, label):
    assert decide(low, high, p, expect, ALPHA, null) == label


def test_verdict_prints_one_line_and_round_trips_through_strict_json():
    v = Verdict("reproduced", -0.0421, -0.0612, -0.0231, 0.002, 5, 300, "log_ppl", "sign-flip permutation")
    assert str(v) == "reproduced: -0.042 [-0.061, -0.023], p=0.002, 5 seeds"
    assert Verdict.from_dict(json.loads(json.dumps(v.to_dict(), allow_nan=False))) == v
    blank = Verdict("inconclusive", math.nan, math.nan, math.nan, math.nan, 3, 1, "acc", "t", expect="greater")
    back = Verdict.from_dict(json.loads(json.dumps(blank.to_dict(), allow_nan=False)))
    assert math.isnan(back.ci_low) and back.label == "inconclusive"


@pytest.mark.parametrize("call, message", [
    (lambda: verdict([[0.1, 0.2]], "less"), "at least 2 seeds"),
    (lambda: verdict([0.1, 0.2], "lower"), "expect must be"),
    (lambda: verdict([0.1, 0.2], "less", alpha=1.5), "alpha must be"),
    (lambda: verdict([0.1, 0.2], "less", test="wilcoxon"), "test must be"),
    (lambda: verdict([0.1, 0.2], "less", resample="window"), "resample must be"),
    (lambda: verdict([0.1, math.inf], "less"), "finite"),
    (lambda: paired_bootstrap([0.1, 0.2], method="normal"), "method must be"),
    (lambda: Verdict("yes", 0, 0, 0, 1, 3, 1, "m", "t"), "label must be"),
])
def test_bad_input_is_a_clear_value_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_rank_correlation_known_cases():
    six = np.arange(6.0)
    mono = correlation_verdict(six, six**2, "greater")
    assert (mono.label, mono.estimate, mono.ci_low, mono.ci_high) == ("reproduced", 1.0, 1.0, 1.0)
    assert mono.p_value == pytest.approx(2 / math.factorial(6))   # exact: only the order and its reverse
    assert correlation_verdict(six, -six, "greater").label == "contradicted"
    tied_x, tied_y = np.array([1, 1, 2, 3, 3, 4.0]), np.array([2, 1, 1, 5, 3, 3.0])
    assert correlation_verdict(tied_x, tied_y, "greater").estimate == pytest.approx(
        stats.spearmanr(tied_x, tied_y).statistic)
    rng = np.random.default_rng(2)
    u = rng.normal(size=40)
    w = 0.4 * u + rng.normal(size=40)
    assert correlation_verdict(u, w, "greater").p_value == pytest.approx(stats.spearmanr(u, w).pvalue, rel=0.25,
                                                                          abs=1e-3)


def test_spread_known_cases():
    z = np.random.default_rng(0).normal(size=2000)
    known = spread_verdict([-1.0, 0.0, 1.0], (z - z.mean()) / z.std(ddof=1), "less", n_resamples=999)
    # an SD from 3 seeds against an exactly known one: x0.52 to x6.3 (chi-square with 2 degrees of freedom)
    assert (known.ci_low, known.ci_high) == pytest.approx((math.sqrt(2 / stats.chi2.ppf(0.975, 2)),
                                                           math.sqrt(2 / stats.chi2.ppf(0.025, 2))), rel=0.01)
    rng = np.random.default_rng(1)
    steady, shaky = rng.normal(3.0, 0.01, 10), rng.normal(3.0, 0.05, 10)
    assert spread_verdict(steady, shaky, "less").label == "reproduced"
    assert spread_verdict(steady, shaky, "greater").label == "contradicted"
    few = spread_verdict(steady[:3], shaky[:3], "less")
    assert (few.label, few.min_p) == ("inconclusive", 0.1)


# --- genre as a random factor, and families -------------------------------------------------------------------------

def _genres(mu, tau, rng, n_genres=8, n_seeds=6, n_windows=10, noise=0.02):
    effects = rng.normal(mu, tau, n_genres)
    d = effects.repeat(n_windows)[None, :] + rng.normal(0, noise, (n_seeds, n_genres * n_windows))
    return d, np.repeat([f"genre{i}" for i in range(n_genres)], n_windows)


def test_genre_interval_covers_a_known_population_effect_at_the_nominal_rate():
    from calibsynth.stats import genre_verdict

    rng = np.random.default_rng(7)
    hits = [(v := genre_verdict(*_genres(0.05, 0.04, rng), "greater", per_genre=False)).ci_low <= 0.05 <= v.ci_high
            for _ in range(300)]
    assert abs(np.mean(hits) - 0.95) < 3 * np.sqrt(0.95 * 0.05 / 300), np.mean(hits)


def test_effects_of_the_measured_genres_alone_do_not_make_a_verdict():
    "Population effect 0, each genre its own: the fixed-corpus reading calls it, the across-genre one does not."
    from calibsynth.stats import genre_verdict

    rng = np.random.default_rng(8)
    calls = [genre_verdict(*_genres(0.0, 0.05, rng), "less", per_genre=False).label != "inconclusive"
             for _ in range(200)]
    assert np.mean(calls) <= 0.05 + 3 * np.sqrt(0.05 * 0.95 / 200), np.mean(calls)
    d, labels = _genres(0.0, 0.05, np.random.default_rng(3))
    v = genre_verdict(d, labels, "less", n_resamples=999)
    assert v.label == "inconclusive" and v.fixed_corpus["label"] != "inconclusive"
    assert sum(v.outcomes().values()) == 8 and v.outcomes()["win"] and v.outcomes()["loss"]
    assert abs(v.between_genre_sd - np.std(d.reshape(6, 8, 10).mean(axis=(0, 2)), ddof=1)) < 0.005


def test_holm_family_labels_move_only_towards_inconclusive():
    from calibsynth.stats import genre_verdict, holm, label_family

    assert np.allclose(holm([0.04, 0.01, 0.03, 0.2]), [0.09, 0.04, 0.09, 0.2])  # 4 x .01; 3 x .03; max(2 x .04, .09)
    d, labels = _genres(-0.05, 0.01, np.random.default_rng(0))
    v = genre_verdict(d, labels, "less", per_genre=False)
    assert v.label == "reproduced"
    family = label_family([v] * 20, "twenty of the same")
    assert all(f.p_value == min(1.0, 20 * v.p_value) and f.family_size == 20 for f in family)
    with pytest.raises(ValueError, match="at least 3 genres"):
        genre_verdict(d[:, :20], labels[:20], "less")


def test_a_seed_effect_shared_by_every_genre_is_not_an_effect():
    "Review finding: averaging each genre over the same seeds leaves their shared luck out of the genre means' spread."
    from calibsynth.stats import genre_verdict

    rng = np.random.default_rng(11)
    labels = np.repeat(["a", "b", "c"], 32)
    calls = []
    for _ in range(400):
        d = rng.normal(0, 0.2, (3, 1)) + rng.normal(0, 0.05, (3, 96))  # true effect 0, seed SD 0.2
        calls.append(genre_verdict(d, labels, "less", per_genre=False).label != "inconclusive")
    assert np.mean(calls) <= binomial_bound(400), np.mean(calls)
    with pytest.raises(ValueError, match="at least 3 seeds"):
        genre_verdict(d[:2], labels, "less")


def test_unit_verdict_covers_a_known_effect_at_the_nominal_rate_and_respects_a_margin():
    from calibsynth.stats import unit_verdict

    rng = np.random.default_rng(7)
    truth = -0.05
    verdicts = [unit_verdict(rng.normal(truth, 0.1, 4), "less", units="models") for _ in range(400)]
    covered = np.mean([v.ci_low <= truth <= v.ci_high for v in verdicts])
    assert abs(covered - 0.95) < 3 * math.sqrt(0.95 * 0.05 / 400), covered
    # under the null of a margin (true difference exactly +0.02), non-inferiority is claimed at most at alpha
    wrong = np.mean([unit_verdict(rng.normal(0.02, 0.05, 6), "less", null=0.02).label == "reproduced"
                     for _ in range(400)])
    assert wrong <= binomial_bound(400), wrong
