import sys
from pathlib import Path

import pytest
import torch

# Lets tests import the helpers that live beside them (helpers.py, transcription.py).
sys.path.insert(0, str(Path(__file__).parent))

# The tests run tiny models: one thread avoids OpenMP spin-waiting on a busy machine.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture
def set_threads():
    """torch.set_num_threads for one test: the thread count is restored after it, also
    when the code under test (a benchmark's main, say) sets it."""
    threads = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(threads)
