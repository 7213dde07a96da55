"""Shared fixtures: float32 matmuls, and tolerances for comparing two kernel
paths that hold on a GPU as well as on the CPU."""

import pytest
import tensorflow as tf

ON_GPU = bool(tf.config.list_physical_devices("GPU"))


@pytest.fixture(autouse=True)
def float32_matmuls():
    """Runs every test with TensorFloat-32 off, and restores the setting.

    TensorFlow's default on Ampere and newer GPUs rounds matmul inputs to
    TF32 (10-bit mantissa, relative error ~5e-4), which no comparison with
    written-out equations in float32 can pass at 1e-5 (an H100 gave a max
    abs diff of 9.2e-5, rel 3e-3, for a one-state Markov LSTM against
    Keras's LSTM). The suite checks the float32 maths, so it runs in
    float32; every test gets the fixture because equations are compared in
    most test files. A no-op on the CPU.
    """
    enabled = tf.config.experimental.tensor_float_32_execution_enabled()
    tf.config.experimental.enable_tensor_float_32_execution(False)
    yield
    tf.config.experimental.enable_tensor_float_32_execution(enabled)


@pytest.fixture
def kernel_tol():
    """Tolerances for comparing two kernel paths that compute the same
    float32 function (XLA against TensorFlow's per-op kernels, cuDNN
    against the cell's loop, `predict` against an eager call).

    `kernel_tol(rtol=..., atol=...)` gives back the CPU tolerances as they
    are on the CPU, where they hold. On a GPU it gives at least
    `rtol=1e-4, atol=2e-4`: there the two paths use different matmul
    algorithms and fusions, and XLA's own tanh/exp approximations, so each
    op of a step rounds differently, by a few float32 ulps (~1e-7
    relative, 2**-24 = 6e-8 per rounding); carried through the recurrence
    over T steps that grows to ~T * 1e-6 absolute on O(1) values, ~1e-4 at
    T = 50 and 6.7e-5 measured on an H100 at T = 12. Gradients, sums of
    such terms over batch and time, get the relative part. TF32 is off (see
    `float32_matmuls`), so this is float32 rounding only.
    """

    def tolerances(rtol, atol):
        if ON_GPU:
            return {"rtol": max(rtol, 1e-4), "atol": max(atol, 2e-4)}
        return {"rtol": rtol, "atol": atol}

    return tolerances
