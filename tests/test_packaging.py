"""The README's commands are the ones CI runs, and the package is complete."""

import os
import re

import keras_mrnn
from _helpers import ROOT


def ci_lines():
    """The lines of .ci/run that run the tests (README commands)."""
    with open(os.path.join(ROOT, ".ci", "run")) as f:
        return [line.strip() for line in f
                if "pytest" in line and not line.lstrip().startswith("#")]


def ci_commands():
    """Those lines without their `|| exit 1` (set -e does not stop inside an
    `&&` list): the README commands CI runs."""
    return [line.removesuffix(" || exit 1") for line in ci_lines()]


def readme_block_commands(section_name, word=""):
    """The commands (not comments or blank lines) of the first bash block of
    a README section that contain `word`."""
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    section = readme.split(f"## {section_name}", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [line for line in block.splitlines()
            if line.strip() and word in line and not line.startswith("#")]


def test_readme_quick_start_has_two_commands_and_ci_runs_the_second():
    commands = readme_block_commands("Quick start")
    assert len(commands) == 2
    # The main example needs no download: it works offline.
    assert "examples/regime_switching.py" in commands[0]
    assert "pytest" in commands[1]
    assert '-m "not slow"' in commands[1]
    assert commands[1].strip() == ci_commands()[0]


def test_ci_runs_the_readme_backend_matrix():
    matrix = readme_block_commands("Backends", word="pytest")
    assert len(matrix) == 1
    for backend in ("jax", "torch"):
        assert (f'KERAS_BACKEND={backend} .venv/bin/python -m pytest -q -n '
                f'auto -m "not slow" tests') in matrix[0]
    assert matrix[0].strip() == ci_commands()[1]


def test_ci_runs_the_slow_tests_under_each_backend():
    development = readme_block_commands("Development", word="-m slow")
    assert len(development) == 1
    for backend in ("tensorflow", "jax", "torch"):
        assert (f"KERAS_BACKEND={backend} .venv/bin/python -m pytest -q -n "
                f"auto -m slow tests") in development[0]
    assert development[0].strip() == ci_commands()[2]
    assert len(ci_commands()) == 3


def test_ci_stops_at_the_first_failure():
    # Each README command is an `&&` list: without `|| exit 1` a failure in
    # one (not its last command) would let the next line run and pass.
    lines = ci_lines()
    assert lines and all(line.endswith(" || exit 1") for line in lines)


def test_public_api_is_listed_and_documented():
    for name in keras_mrnn.__all__:
        obj = getattr(keras_mrnn, name)
        assert obj.__doc__, name
    for cls in [keras_mrnn.MarkovLSTM, keras_mrnn.MarkovLSTMCell,
                keras_mrnn.VRNN, keras_mrnn.VRNNCell]:
        doc = cls.__doc__
        assert "Args:" in doc and "Example:" in doc, cls.__name__
