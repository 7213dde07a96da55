"""Runs every `>>>` example in the package's docstrings with `doctest`.

The examples are documentation first; this keeps them runnable as written.
Each docstring with examples is one test case, run in a temporary working
directory (examples that call `savefig` write there), and fails with the
doctest report when an example's output differs or it raises.
"""

import doctest

import matplotlib

matplotlib.use("Agg")

import keras  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import keras_mrnn  # noqa: E402
from keras_mrnn import (  # noqa: E402
    _internals,
    _regimes,
    _rnn,
    _stateful_guard,
    _vrnn_analysis,
    callbacks,
    datasets,
    forecasting,
    gumbel,
    markov_lstm,
    plotting,
    regime_mixture,
    stateful,
    switches,
    vrnn,
)

# The private modules hold public methods (the layers' mixins) too.
MODULES = (markov_lstm, switches, vrnn, gumbel, callbacks, stateful,
           plotting, datasets, regime_mixture, forecasting, _regimes,
           _vrnn_analysis, _rnn, _stateful_guard, _internals)
OPTIONFLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE

# The examples print the same on every backend (run by .ci/run on each).


def _docstring_tests():
    finder = doctest.DocTestFinder()
    tests = []
    for module in MODULES:
        for test in finder.find(module, globs={}):
            if test.examples:
                tests.append(test)
    return sorted(tests, key=lambda t: t.name)


DOCTESTS = _docstring_tests()


def test_examples_are_found():
    # Guards against the finder silently collecting nothing.
    assert len(DOCTESTS) >= 20


@pytest.mark.parametrize("test", DOCTESTS, ids=[t.name for t in DOCTESTS])
def test_docstring_example(test, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    test.globs = {"np": np, "keras": keras, "keras_mrnn": keras_mrnn}
    report = []
    runner = doctest.DocTestRunner(optionflags=OPTIONFLAGS)
    keras.backend.clear_session()  # fresh layer names ("vrnn", not "vrnn_1")
    keras.utils.set_random_seed(0)
    try:
        result = runner.run(test, out=report.append, clear_globs=True)
    finally:
        plt.close("all")
    assert result.failed == 0, "".join(report)
