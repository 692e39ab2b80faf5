"""What every notebook's Setup section does, in one call (kept apart from `environment`, which
the rest of the package uses and which must not depend on plotting)."""

from __future__ import annotations

import os

from mobilevit_utils import environment, plots


def setup_notebook(seed=42):
    """What every notebook's Setup section does: version check, quiet logs, plot style, seed.

    Returns `describe()` so the notebook can show what it runs on.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    environment.start_backend_quietly()
    environment.check_versions()
    plots.set_style()
    environment.set_seed(seed)
    return environment.describe()
