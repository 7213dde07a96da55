"""The README's commands are the ones CI runs, and the package is complete."""

import os
import re

import keras_mrnn
from _helpers import ROOT


def quick_start_commands():
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [line for line in block.splitlines()
            if line.strip() and not line.startswith("#")]


def test_readme_quick_start_has_two_commands_and_ci_runs_the_second():
    commands = quick_start_commands()
    assert len(commands) == 2
    # The main example needs no download: it works offline.
    assert "examples/regime_switching.py" in commands[0]
    assert "pytest" in commands[1]
    with open(os.path.join(ROOT, ".ci", "run")) as f:
        ci_lines = [line.strip() for line in f]
    assert commands[1].strip() in ci_lines


def test_ci_runs_the_readme_backend_matrix():
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    section = readme.split("## Backends", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    matrix = [line for line in block.splitlines()
              if "pytest" in line and not line.startswith("#")]
    assert len(matrix) == 1
    for backend in ("jax", "torch"):
        assert f"KERAS_BACKEND={backend}" in matrix[0]
    with open(os.path.join(ROOT, ".ci", "run")) as f:
        ci_lines = [line.strip() for line in f]
    assert matrix[0].strip() in ci_lines


def test_public_api_is_listed_and_documented():
    for name in keras_mrnn.__all__:
        obj = getattr(keras_mrnn, name)
        assert obj.__doc__, name
    for cls in [keras_mrnn.MarkovLSTM, keras_mrnn.MarkovLSTMCell,
                keras_mrnn.VRNN, keras_mrnn.VRNNCell]:
        doc = cls.__doc__
        assert "Args:" in doc and "Example:" in doc, cls.__name__
