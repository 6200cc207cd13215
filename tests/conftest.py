"""Fixtures shared by several test modules."""

import os

import pytest
import torch
from threadpoolctl import threadpool_limits

# the fixtures of old releases and the scripts that made them: data, not tests
collect_ignore_glob = ["data/*"]


def pytest_configure(config):
    if os.environ.get("PYTEST_XDIST_WORKER"):
        # one worker per core (dev.py runs -n auto): each computes on one thread, or the
        # workers' thread pools contend for the same cores
        torch.set_num_threads(1)
        threadpool_limits(1)


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module of tiny models: on a shared 2-core machine intra-op
    threads only add synchronisation (measured 10x slower under load). The setting is
    restored after the module. Use with ``pytestmark = pytest.mark.usefixtures(...)``."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


# Modules whose tests start processes or train real fits, heaviest first. Run before the
# rest (dev.py runs pytest-xdist's "worksteal": a worker that runs out takes half of the
# other's queue), so that no long test starts last and leaves one core idle at the end.
_HEAVY_FIRST = (
    "test_readme.py",
    "test_gpu_suite.py",
    "training/test_distributed.py",
    "training/test_checkpoint.py",
    "training/test_cluster.py",
    "test_onnx.py",
    "cnn/test_classifier.py",
)


def pytest_collection_modifyitems(config, items):
    def rank(item):
        path = item.path.as_posix()
        for i, name in enumerate(_HEAVY_FIRST):
            if path.endswith("tests/" + name):
                return i
        return len(_HEAVY_FIRST)

    items.sort(key=rank)  # stable: each module's own order is kept
