"""The committed checkpoints' MODEL_CARD.md are what `tools/release_checkpoint.py --card-only`
writes from their committed files (metadata.json, results.json, report/, results.md)."""

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RELEASES = sorted(path.parent for path in ROOT.glob("checkpoints/*/results.json"))


@pytest.mark.parametrize("release", RELEASES, ids=lambda path: path.name)
def test_the_committed_card_is_the_tools_card(release):
    sys.path.insert(0, str(ROOT / "tools"))
    import release_checkpoint

    card = (release / "MODEL_CARD.md").read_text()
    assert card == release_checkpoint.card_text(release), (
        f"rerun: python tools/release_checkpoint.py --card-only {release.relative_to(ROOT)}"
    )
    assert "## How it was made" in card and "(Wilson)" in card


def test_every_release_has_a_card():
    assert len(RELEASES) >= 3
