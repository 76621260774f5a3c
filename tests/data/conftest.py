"""Fixtures for the dataset tests."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    # Small tensor ops gain nothing from threads, and on a loaded 2-core machine torch's spinning
    # worker threads make them ~100x slower.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
