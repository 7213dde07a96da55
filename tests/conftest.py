"""Shared fixtures: float32 matmuls, and tolerances for comparing two kernel
paths that hold on a GPU as well as on the CPU.

The whole suite runs on the Keras backend that `KERAS_BACKEND` names;
`.ci/run` runs it under TensorFlow, JAX and PyTorch (README "Backends").
Tests of a TensorFlow-only piece (XLA's loop, `tf.function`'s tracing,
`tf.distribute`) are marked `_helpers.tensorflow_only(reason)` and skip
elsewhere with that reason; `pytest -rs` lists them.
"""

import importlib.util
import os
import pathlib
import shutil

import keras
import pytest

BACKEND = keras.backend.backend()


def _quicker_xla_compiles():
    """Much of the suite's time is XLA compiling the step of each new tiny
    model: JAX's every step, TensorFlow's XLA loop (`loop_jit_compile`) and
    `jit_compile=True`.

    Two settings, for this process and the examples it starts, where the
    user set neither (measured on the 2-core CPU under JAX:
    test_hmm_models 199 s, 158 s with the first, 122 s with both):
    - on a CPU-only machine, LLVM's optimization of the compiled code is
      turned down (`--xla_backend_optimization_level=0`): compiling takes
      ~40% less, and the suite's models, a few units over a few steps, run
      about as fast. It changes how the code is optimized, not its float32
      maths (XLA's CPU code does no fast-math); the tolerances are the same.
      With it, XLA's CPU fusions are emitted by its classic emitters
      (`--xla_cpu_use_fusion_emitters=false`) rather than through MLIR,
      which is slow to compile the many small fusions of a recurrent step:
      test_hmm_models without the cache, 94 s -> 57 s (test_loop_compile's
      TensorFlow XLA tests 93 s -> 69 s). The emitters approximate tanh and
      exp their own ways: a Markov LSTM's and a VRNN's outputs and gradients
      under both flags are within 2.6e-7 relative (a few float32 ulps) of
      XLA's defaults, measured on JAX; every comparison in the suite
      tolerates that (the tightest, 1e-6, compare two paths under the same
      flags).
    - on JAX, its persistent compilation cache in `.jax_cache/`
      (git-ignored): a step compiled before (the same layers, shapes and
      flags, in an earlier test or run) is loaded instead of compiled.
    """
    gpu = shutil.which("nvidia-smi") or any(
        importlib.util.find_spec(name) for name in (
            "jax_cuda12_plugin", "jax_cuda13_plugin", "jax_rocm60_plugin"))
    if "XLA_FLAGS" not in os.environ and not gpu:
        os.environ["XLA_FLAGS"] = ("--xla_backend_optimization_level=0 "
                                   "--xla_cpu_use_fusion_emitters=false")
    if BACKEND == "jax" and "JAX_COMPILATION_CACHE_DIR" not in os.environ:
        cache = pathlib.Path(__file__).resolve().parents[1] / ".jax_cache"
        os.environ["JAX_COMPILATION_CACHE_DIR"] = str(cache)
        # Every compilation, however quick or small (JAX's defaults keep
        # only those over 1 s).
        os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
        os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "-1"


# Before the backend starts (its first computation reads the flags).
_quicker_xla_compiles()


def _on_gpu():
    if BACKEND == "tensorflow":
        import tensorflow as tf

        return bool(tf.config.list_physical_devices("GPU"))
    if BACKEND == "jax":
        import jax

        return jax.default_backend() == "gpu"
    if BACKEND == "torch":
        import torch

        return torch.cuda.is_available()
    return False


ON_GPU = _on_gpu()


if BACKEND == "torch":
    import torch

    # The tests compare layer outputs with NumPy (`np.asarray`,
    # `np.testing`), as TensorFlow's and JAX's tensors allow; PyTorch
    # refuses for tensors that require grad (every output of a layer with
    # weights). Test harness only: users call `keras.ops.convert_to_numpy`.
    _tensor_array = torch.Tensor.__array__

    def _detached_array(self, *args, **kwargs):
        return _tensor_array(self.detach().cpu(), *args, **kwargs)

    torch.Tensor.__array__ = _detached_array


@pytest.fixture(autouse=True)
def float32_matmuls():
    """Runs every test with TensorFloat-32 off, and restores the setting.

    TensorFlow's default on Ampere and newer GPUs (JAX's too; PyTorch's
    cuDNN convolutions, and its matmuls where enabled) rounds matmul inputs to
    TF32 (10-bit mantissa, relative error ~5e-4), which no comparison with
    written-out equations in float32 can pass at 1e-5 (an H100 gave a max
    abs diff of 9.2e-5, rel 3e-3, for a one-state Markov LSTM against
    Keras's LSTM). The suite checks the float32 maths, so it runs in
    float32; every test gets the fixture because equations are compared in
    most test files. A no-op on the CPU.
    """
    if BACKEND == "tensorflow":
        import tensorflow as tf

        enabled = tf.config.experimental.tensor_float_32_execution_enabled()
        tf.config.experimental.enable_tensor_float_32_execution(False)
        yield
        tf.config.experimental.enable_tensor_float_32_execution(enabled)
    elif BACKEND == "jax" and ON_GPU:
        import jax

        with jax.default_matmul_precision("float32"):
            yield
    elif BACKEND == "torch" and ON_GPU:
        import torch

        enabled = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = False
        yield
        torch.backends.cuda.matmul.allow_tf32 = enabled
    else:
        yield


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
