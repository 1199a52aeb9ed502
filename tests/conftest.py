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
