"""docs/guide.md's "From a folder of photos to your app" copies its commands from
examples/photos_to_phone.sh, which tests/integration/test_photos_to_phone.py runs after a
`pip install`: every command line of that section is a line of the script, and every command of
the script is in the section."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "guide.md"
SCRIPT = ROOT / "examples" / "photos_to_phone.sh"
TITLE = "## From a folder of photos to your app"


def section(text, title):
    start = text.index(title + "\n")
    end = text.find("\n## ", start + len(title))
    return text[start : end if end != -1 else None]


def command_lines(text):
    """Lines that run the command line (`mobilevit ...`), in code blocks or scripts."""
    return [line.strip() for line in text.splitlines() if line.strip().startswith("mobilevit ")]


def test_the_guide_section_runs_the_scripts_commands_and_no_others():
    guide = command_lines(section(GUIDE.read_text(), TITLE))
    script = command_lines(SCRIPT.read_text())
    assert [line.split()[1] for line in script] == ["train", "evaluate", "predict", "export"]
    assert guide == script, "copy the commands of examples/photos_to_phone.sh into the guide"


def test_the_guide_sets_the_variables_the_commands_use():
    part = section(GUIDE.read_text(), TITLE)
    used = set(re.findall(r"\$(\w+)", " ".join(command_lines(part))))
    assert used == {"HEAD_EPOCHS", "EPOCHS"}
    for name in used:  # the script's defaults, stated in the guide
        default = re.search(rf"^{name}=\$\{{{name}:-(\d+)\}}$", SCRIPT.read_text(), re.M)
        assert default and re.search(rf"\b{name}={default.group(1)}\b", part), name


def test_the_measured_times_are_the_committed_benchmark():
    committed = (ROOT / "benchmarks" / "results" / "photos_to_phone.txt").read_text()
    assert committed.startswith("$ ") and "python benchmarks/photos_to_phone.py" in committed
    total = re.search(r"^total: (\d+) s$", committed, re.M).group(1)
    assert f"{total} s in all" in section(GUIDE.read_text(), TITLE)
