"""The notebooks' prose holds the rules a reader relies on (no execution needed):

- a markdown cell never states a result: results are printed by code, from the outputs, so the
  text is true in quick mode and in a full run alike. A number in prose must be a constant of the
  text (a recipe value, a dataset size, a paper's figure), listed below with why, or a small count;
- a heading starts its own markdown cell (the table of contents and collapsing depend on it);
- no wall of text: a markdown cell of more than 150 words is split;
- plain words: readers know ``SEED = 42``, not the source document the series started from.
"""

import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("0*.ipynb"))
MAX_WORDS = 150

# Names that contain digits (CIFAR-10, MobileViTv2, int8, 3x3, 03_training, notebook 04, top-5).
NAMES = re.compile(
    r"CIFAR-10|MobileViTv[12]|MobileNetV[23]|ICLR 20\d\d|\b(?:u?int|float|bfloat)\d+|top-\d"
    r"|\bv[12]\b|Python 3\.\d+|\d+(?:x\d+)+|\b\d{2}_[a-z_]+|\bnotebooks? 0\d(?:(?:, | and | or |–)0\d)*"
    r"|^# 0\d ·",
    flags=re.M,
)
NUMBER = re.compile(r"(?<![\w.])[-+−]?\d[\d,]*(?:\.\d+)?(?:\s?%| points?)?")

# Constants of the text, per notebook: the number as written, and why it is not a result.
CONSTANTS = {
    "01": {
        "50,000": "CIFAR-10's training split",
        "10 %": "the validation share the notebook's code sets",
        "10,000": "CIFAR-10's test split",
        "100": "quick mode's images per class (code sets it)",
        "5,000": "CIFAR-10's training images per class",
        "255": "the 8-bit pixel range",
        "0.7": "an example soft label",
        "0.3": "an example soft label",
        "500": "the cap the class-weight cell's code sets",
    },
    "02": {
        "1000": "ImageNet's classes",
        "1,272,024": "Apple's published parameter count (XXS)",
        "2,317,848": "Apple's published parameter count (XS)",
        "5,578,632": "Apple's published parameter count (S)",
        "255": "the 8-bit pixel range",
        "288": "the reference's resize (its preprocessing)",
        "256": "the tokens per sequence of a 32x32 map in 2x2 patches (arithmetic)",
        "2022": "a paper's year",
        "2020": "a paper's year",
        "64": "the example's embedding width (code sets it)",
        "16": "the example's tokens (code sets it)",
        "1,024": "the example's token count (code sets it)",
        "128": "an example width (code sets it)",
        "32": "the CIFAR image side; the ImageNet layout's output stride (its strides)",
        "0.5": "the width multiplier of the cpu recipe's MobileViTv2 (its name, v2_050_cifar)",
        "30": "dynamic convolution's starting softmax temperature (Chen et al.; the default)",
        "1119": "an issue number in a link (tensorflow/model-optimization)",
        "23082": "an issue number in a link (keras-team/keras)",
    },
    "03": {
        "255": "the 8-bit pixel range",
        "0.1": "the recipe's label smoothing",
        "0.91": "label smoothing's target (1 - 0.1 + 0.1/10)",
        "0.01": "label smoothing's off-target (0.1/10)",
        "200": "the published reference's epochs",
        "20": "a recipe value the code sets",
    },
    "04": {
        "255": "the 8-bit pixel range",
        "80 %": "an example confidence in the definition of calibration",
    },
    "05": {
        "255": "the 8-bit pixel range",
        "−128": "int8's lowest value",
        "128": "int8's zero point shift",
    },
    "06": {
        "12": "the ablations' budget in epochs (benchmarks/ablations.py's default)",
        "45,000": "the ablations' training images (CIFAR-10's 50,000 less the 10 % held out)",
        "5,000": "the images held out by the ablations' split and by the release's twin",
        "0.5": "the cpu recipe's MobileViTv2 width (a recipe value)",
        "0.01": "the smallest label weight the mixing gallery's titles show (the code sets it)",
        "0.2": "MixUp's alpha (a recipe value, augmentation.POLICIES)",
        "1.0": "CutMix's factor (a recipe value, augmentation.POLICIES)",
    },
    "07": {
        "1,797": "scikit-learn's digits dataset size",
        "1.5": "a recipe value the code sets",
        "20": "a recipe value the code sets",
        "50": "a recipe value the code sets",
        "125": "a recipe value the code sets",
        "200": "a recipe value the code sets",
        "64": "a recipe value the code sets",
        "10 %": "the validation share the code sets",
    },
}


def markdown_cells(path):
    cells = nbformat.read(path, as_version=4).cells
    return [(i, c.source) for i, c in enumerate(cells) if c.cell_type == "markdown"]


def prose(source):
    """The sentences of a markdown cell: no code, formulas, link targets or names with digits."""
    source = re.sub(r"```.*?```", " ", source, flags=re.S)
    source = re.sub(r"`[^`]*`", " ", source)
    source = re.sub(r"\$[^$]*\$", " ", source)
    source = re.sub(r"\]\([^)]*\)", "]", source)
    source = re.sub(r"<!--.*?-->", " ", source, flags=re.S)
    source = re.sub(r"^#+\s*\d+\.", "#", source, flags=re.M)  # section numbers
    return NAMES.sub(" ", source)


def stated_numbers(source):
    return [m.group().rstrip(",") for m in NUMBER.finditer(prose(source))]


def is_small_count(number):
    return number.isdigit() and int(number) <= 10


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_markdown_states_no_result(notebook):
    allowed = CONSTANTS[notebook.name[:2]]
    stated = [
        f"cell {i}: {number!r}"
        for i, source in markdown_cells(notebook)
        for number in stated_numbers(source)
        if not is_small_count(number) and number not in allowed
    ]
    assert not stated, (
        f"{notebook.name}: markdown states numbers that are not constants of the text: "
        f"{', '.join(stated)}. Print results from the outputs (an f-string under the table or "
        "figure); list a true constant in CONSTANTS with why"
    )


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_headings_start_their_own_cell(notebook):
    buried = []
    for i, source in markdown_cells(notebook):
        outside_code = re.sub(r"```.*?```", "", source, flags=re.S)
        lines = outside_code.strip().splitlines()
        buried += [f"cell {i}: {line!r}" for line in lines[1:] if re.match(r"#{1,6} ", line)]
    assert not buried, f"{notebook.name}: headings inside a cell (start a new cell): {buried}"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_no_wall_of_text(notebook):
    long = [
        f"cell {i} ({n} words)"
        for i, source in markdown_cells(notebook)
        if (n := len(re.sub(r"```.*?```", "", source, flags=re.S).split())) > MAX_WORDS
    ]
    assert not long, f"{notebook.name}: split markdown cells above {MAX_WORDS} words: {long}"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_plain_words(notebook):
    text = "\n".join(source for _, source in markdown_cells(notebook))
    jargon = re.findall(r"the seed's|seed article|the seed (?:list|idea)", text, flags=re.I)
    assert not jargon, f"{notebook.name}: say what is meant instead of {sorted(set(jargon))}"


def test_the_checker_finds_results():
    assert stated_numbers("reaches 86.4 % after 12 epochs on CIFAR-10 with 3x3 convs") == [
        "86.4 %",
        "12",
    ]
    assert stated_numbers("`epochs=48` and $k^2$ in notebook 04 (see 03_training)") == []
