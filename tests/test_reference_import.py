"""The NumPy reference imports NumPy only."""

import subprocess
import sys

CHECK = """
import sys
{setup}
import relational_rnn.reference as reference
import relational_rnn.reference.train
model = reference.RelationalRNN(input_size=3, hidden_size=4, num_slots=2, slot_size=4)
import numpy as np
model.forward(model.init_params(np.random.default_rng(0)), np.ones((2, 3, 3)))
loaded = sorted(
    name for name, module in sys.modules.items()
    if module is not None and (name == "torch" or name.startswith("torch."))
)
assert not loaded, f"importing the reference imported {{loaded[:5]}}"
"""


def run_check(setup: str) -> subprocess.CompletedProcess:
    code = CHECK.format(setup=setup)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)


def test_importing_the_reference_does_not_import_torch():
    result = run_check("")
    assert result.returncode == 0, result.stderr


def test_the_reference_runs_where_torch_cannot_be_imported():
    result = run_check("sys.modules['torch'] = None  # any `import torch` now raises ImportError")
    assert result.returncode == 0, result.stderr
