"""Paired comparisons of two models on the same images (mobilevit_utils.comparison)."""

import numpy as np
import pytest

from mobilevit_utils.comparison import mcnemar_exact, paired_comparison


def test_mcnemar_is_the_exact_binomial_test_on_the_discordant_images():
    # 9 images only A gets right, 1 only B: two-sided p = 2 * P(X <= 1), X ~ Binomial(10, 1/2).
    assert mcnemar_exact(9, 1) == pytest.approx(2 * 11 / 1024)
    assert mcnemar_exact(1, 9) == pytest.approx(2 * 11 / 1024)
    assert mcnemar_exact(5, 5) == pytest.approx(1.0)
    assert mcnemar_exact(0, 0) == 1.0


def test_agreeing_images_do_not_count_only_the_discordant_ones_do():
    """1,000 images both get right or both wrong change accuracy, never the test."""
    a = np.r_[np.ones(9), np.zeros(1)].astype(bool)
    b = np.r_[np.zeros(9), np.ones(1)].astype(bool)
    small = paired_comparison(a, b)
    both = np.ones(1000, bool)
    large = paired_comparison(np.r_[a, both], np.r_[b, both])
    assert (small.only_a, small.only_b) == (large.only_a, large.only_b) == (9, 1)
    assert small.p_value == large.p_value == pytest.approx(2 * 11 / 1024)
    assert large.difference == pytest.approx(8 / 1010)
    assert large.verdict() == "A is better"
    low, high = large.interval
    assert low <= large.difference <= high


def test_identical_predictions_show_no_difference():
    correct = np.random.default_rng(0).random(500) < 0.8
    result = paired_comparison(correct, correct)
    assert result.interval == (0.0, 0.0)
    assert result.p_value == 1.0
    assert "no difference shown" in result.summary("int8", "float")


def test_the_interval_is_seeded_and_narrows_with_more_images():
    rng = np.random.default_rng(1)
    widths = []
    for n in (500, 8000):
        a, b = rng.random(n) < 0.85, rng.random(n) < 0.83
        first, again = paired_comparison(a, b, seed=3), paired_comparison(a, b, seed=3)
        assert first.interval == again.interval
        widths.append(first.interval[1] - first.interval[0])
    assert widths[1] < widths[0] / 2  # about 1/sqrt(16) as wide


def test_it_refuses_arrays_that_are_not_the_same_images():
    with pytest.raises(ValueError, match="equal, non-empty"):
        paired_comparison(np.ones(3, bool), np.ones(4, bool))


def test_fast_calibration_error_is_the_tables():
    """evaluation.expected_calibration_error, bootstrapped below, equals calibration()'s ECE and
    the gap its reliability table shows, weighted by each bin's count."""
    from mobilevit_utils import evaluation

    rng = np.random.default_rng(1)
    probabilities = rng.dirichlet(np.full(10, 0.3), size=700)
    y = rng.integers(0, 10, 700)
    y[:400] = probabilities[:400].argmax(-1)  # right more often when confident: a realistic mix
    for bins in (5, 15, 50):
        ece, table = evaluation.calibration(y, probabilities, bins=bins)
        filled = table[table["count"] > 0]
        weighted = (filled["count"] * (filled["confidence"] - filled["accuracy"]).abs()).sum()
        assert ece == pytest.approx(weighted / len(y))
        assert evaluation.expected_calibration_error(y, probabilities, bins) == pytest.approx(ece)


def test_paired_interval_of_a_score_finds_a_real_change_and_none_in_a_copy():
    from mobilevit_utils import evaluation
    from mobilevit_utils.comparison import paired_interval

    rng = np.random.default_rng(2)
    y = rng.integers(0, 10, 2000)
    right = rng.random(2000) < 0.8
    predicted = np.where(right, y, (y + 1) % 10)
    honest = np.full((2000, 10), 0.2 / 9)
    honest[np.arange(2000), predicted] = 0.8  # says 80 %, right 80 % of the time
    overconfident = np.full((2000, 10), 0.01 / 9)
    overconfident[np.arange(2000), predicted] = 0.99
    score = evaluation.expected_calibration_error
    change, (low, high) = paired_interval(score, y, honest, overconfident, resamples=300)
    assert change == pytest.approx(score(y, overconfident) - score(y, honest))
    assert 0.15 < low <= change <= high  # about 0.19 worse, and the interval excludes zero
    same, (low, high) = paired_interval(score, y, honest, honest.copy(), resamples=300)
    assert same == low == high == 0.0
    with pytest.raises(ValueError, match="same images"):
        paired_interval(score, y, honest, honest[:10])
