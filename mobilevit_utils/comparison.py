"""Judging two models, or two settings of one model, on the same images.

Both see every image, so the comparison is paired: what matters is the images that one gets
right and the other wrong (the discordant pairs), not the spread between training seeds.
McNemar's exact test asks whether those split evenly; a paired bootstrap over the images gives an
interval for the difference in accuracy, and `paired_interval` one for any other score computed
from the images (a calibration error, say). (Training changes are judged differently: by the spread
of each arm over several seeds; see benchmarks/ablations.py.)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PairedComparison:
    """Accuracy of A and B on the same images, the discordant counts and the test."""

    num_images: int
    accuracy_a: float
    accuracy_b: float
    only_a: int  # images A gets right and B wrong
    only_b: int  # images B gets right and A wrong
    p_value: float  # McNemar's exact test (two-sided)
    interval: tuple[float, float]  # paired bootstrap interval of accuracy_a - accuracy_b
    confidence: float

    @property
    def difference(self):
        return self.accuracy_a - self.accuracy_b

    def verdict(self, alpha=0.05):
        """One phrase: which is better, or that these images cannot tell them apart."""
        if self.p_value >= alpha:
            return "no difference shown on these images"
        return "A is better" if self.difference > 0 else "B is better"

    def summary(self, name_a="A", name_b="B", alpha=0.05):
        low, high = (100 * x for x in self.interval)
        verdict = (
            self.verdict(alpha).replace("A is", f"{name_a} is").replace("B is", f"{name_b} is")
        )
        return (
            f"{name_a} {self.accuracy_a:.2%} vs {name_b} {self.accuracy_b:.2%} on "
            f"{self.num_images:,} images: {100 * self.difference:+.2f} points "
            f"({self.confidence:.0%} paired bootstrap interval {low:+.2f} to {high:+.2f}); "
            f"{self.only_a} images only {name_a} gets right, {self.only_b} only {name_b}; "
            f"McNemar p = {self.p_value:.3g}: {verdict}"
        )


def mcnemar_exact(only_a, only_b):
    """Two-sided exact McNemar p-value: with no difference between the two, each discordant
    image is a fair coin's toss between them (a binomial test); 1.0 when there are none."""
    from scipy import stats

    n = only_a + only_b
    return 1.0 if n == 0 else float(stats.binomtest(only_a, n, 0.5).pvalue)


def paired_comparison(correct_a, correct_b, confidence=0.95, resamples=2000, seed=0):
    """Compare per-image correctness (booleans, one per image, the same images in the same
    order) of A and B."""
    from scipy import stats

    a, b = np.asarray(correct_a, bool), np.asarray(correct_b, bool)
    if a.shape != b.shape or a.ndim != 1 or not a.size:
        raise ValueError(f"Expected two equal, non-empty 1-D arrays; got {a.shape} and {b.shape}.")
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    difference = a.astype(np.float32) - b.astype(np.float32)
    if only_a + only_b == 0:
        interval = (0.0, 0.0)  # every resample is 0: no interval to estimate
    else:
        result = stats.bootstrap(
            (difference,),
            np.mean,
            confidence_level=confidence,
            n_resamples=resamples,
            method="percentile",
            rng=np.random.default_rng(seed),
        )
        interval = (float(result.confidence_interval.low), float(result.confidence_interval.high))
    return PairedComparison(
        num_images=a.size,
        accuracy_a=float(a.mean()),
        accuracy_b=float(b.mean()),
        only_a=only_a,
        only_b=only_b,
        p_value=mcnemar_exact(only_a, only_b),
        interval=interval,
        confidence=confidence,
    )


def paired_interval(score, y_true, outputs_a, outputs_b, confidence=0.95, resamples=1000, seed=0):
    """score(y_true, outputs_b) - score(y_true, outputs_a) on the same images, with its paired
    bootstrap interval (the images are resampled, each keeping both outputs): (difference,
    (low, high)). `score` is any per-set statistic, e.g. evaluation.expected_calibration_error."""
    from scipy import stats

    y, a, b = np.asarray(y_true), np.asarray(outputs_a), np.asarray(outputs_b)
    if not (len(y) == len(a) == len(b) > 0):
        raise ValueError(
            f"Expected the same images in all three; got {len(y)}, {len(a)}, {len(b)}."
        )
    # Resampling image indices keeps each image's label and both outputs together (paired).
    result = stats.bootstrap(
        (np.arange(len(y)),),
        lambda i: score(y[i], b[i]) - score(y[i], a[i]),
        vectorized=False,
        confidence_level=confidence,
        n_resamples=resamples,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    interval = result.confidence_interval
    return float(score(y, b) - score(y, a)), (float(interval.low), float(interval.high))
