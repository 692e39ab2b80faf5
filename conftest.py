"""Parallel test runs (`pytest -n 2`, as `make test` runs them): each test file stays on one
worker, so its module-scoped fixtures are built once and order-dependent tests
(tests/test_backends.py) keep their order; the notebooks share one worker and run in series,
because 04 and 05 read the run that 03 writes.

A scheduler of our own rather than `--dist loadgroup`: pytest-xdist 3.8 marks groups by
rewriting `item._nodeid`, which pytest 9.2 no longer reads."""

import pytest


@pytest.hookimpl(optionalhook=True)  # only called when pytest-xdist runs the suite
def pytest_xdist_make_scheduler(config, log):
    from xdist.scheduler import LoadScopeScheduling

    class FileScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid):
            path = nodeid.split("::", 1)[0]
            return "notebooks" if path.startswith("notebooks/") else path

    return FileScheduling(config, log)
