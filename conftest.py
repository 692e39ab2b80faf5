"""Parallel test runs (`pytest -n 2 --dist loadgroup`, as `make test` runs them): each test file
stays on one worker, so its module-scoped fixtures are built once and order-dependent tests
(tests/test_backends.py) keep their order; the notebooks share one worker and run in series,
because 04 and 05 read the run that 03 writes."""

import pytest


def pytest_collection_modifyitems(items):
    for item in items:
        group = "notebooks" if item.path.suffix == ".ipynb" else item.path.name
        item.add_marker(pytest.mark.xdist_group(group))
