"""Parallel test runs (`pytest -n 2`, as `make test` runs them): each test file stays on one
worker, so its module-scoped fixtures are built once and order-dependent tests
(tests/integration/test_backends.py) keep their order; the notebooks share one worker and run in series,
because 04 and 05 read the run that 03 writes. The solutions to their exercises (solutions/) read
no notebook's output, but they decode CIFAR-10 subsets into the same `data/cache/` files as the
notebooks do (the solutions of 04 and 05 both decode the whole set), and two processes writing
one cache file at once could break each other: they run on the same worker, after the notebooks.

A scheduler of our own rather than `--dist loadgroup`: pytest-xdist 3.8 marks groups by
rewriting `item._nodeid`, which pytest 9.2 no longer reads."""

import pytest

# Rough seconds per file on 2 cores (a CI run's durations), used only to start the longest
# files first, so that a run cannot end on one worker alone with a slow file; xdist's own order
# (most tests first) put the few-but-slow subprocess files (every recipe, every backend) last.
# Unlisted files count 3 s per test.
SECONDS = {
    "notebooks": 550 + 400,  # the notebooks, then the solutions (solutions/, about 400 s)
    "tests/integration/test_photos_to_phone.py": 300,
    "tests/integration/test_recipes.py": 320,
    "tests/integration/test_backends.py": 290,
    "tests/integration/test_training.py": 280,
    "tests/integration/test_run_safety.py": 200,
    "tests/repo/test_site.py": 200,  # builds the site, exports the Try it page's model once
    "tests/integration/test_cli_trial.py": 150,
    "tests/integration/test_export.py": 225,
    "tests/integration/test_distribution.py": 150,
    "tests/integration/test_benchmarks.py": 130,
    "tests/integration/test_release.py": 130,
    "tests/integration/test_finetune.py": 85,
    "tests/integration/test_tuning.py": 70,
    "tests/integration/test_probe.py": 60,
    "tests/integration/test_evaluation.py": 60,
}


@pytest.hookimpl(optionalhook=True)  # only called when pytest-xdist runs the suite
def pytest_xdist_make_scheduler(config, log):
    from xdist.scheduler import LoadScopeScheduling

    class FileScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid):
            path = nodeid.split("::", 1)[0]
            return "notebooks" if path.startswith(("notebooks/", "solutions/")) else path

        def _assign_work_unit(self, node):
            # Longest remaining file next (longest-processing-time-first).
            def cost(scope):
                return SECONDS.get(scope, 3 * len(self.workqueue[scope]))

            self.workqueue.move_to_end(max(self.workqueue, key=cost), last=False)
            super()._assign_work_unit(node)

    return FileScheduling(config, log)
