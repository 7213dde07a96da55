"""The boilerplate every example shares, and only that.

Each script in examples/ keeps its data, model, training and report and
reads top to bottom; the lines that were the same in all of them live here:
the `--help` layout, the two compile flags, `--quick`'s smaller defaults,
and the set-up before the model (quiet TensorFlow logs, a seed, mixed
precision, the device line). `benchmarks/markov_lstm_speed.py` uses the
`--help` layout and the device look-up too.

Importing this module does not import Keras, so that `--help` answers at
once; `set_up` imports it.
"""

import argparse
import os
import platform
import sys


class HelpFormatter(argparse.RawDescriptionHelpFormatter,
                    argparse.ArgumentDefaultsHelpFormatter):
    """The docstring as written, and each flag's default when it has one."""

    def _get_help_string(self, action):
        if action.default in (None, False):
            return action.help
        return super()._get_help_string(action)


def argument_parser(description):
    """A parser whose `--help` prints `description` (the script's docstring)
    as written and each flag's default."""
    return argparse.ArgumentParser(description=description,
                                   formatter_class=HelpFormatter)


def add_compile_flags(parser):
    """Adds `--jit-compile {auto,on,off}` and `--mixed-precision`."""
    parser.add_argument("--jit-compile", choices=["auto", "on", "off"],
                        default="auto",
                        help="XLA compilation of the train step.")
    parser.add_argument("--mixed-precision", action="store_true",
                        help="Compute in float16 (mixed_float16 policy).")


def parse_args(parser, **quick_defaults):
    """Parses the command line; with `--quick`, `quick_defaults` replace the
    defaults (flags given on the command line still win). A `--data` file
    that does not exist is an error here, before Keras starts."""
    args = parser.parse_args()
    if args.quick:
        parser.set_defaults(**quick_defaults)
        args = parser.parse_args()
    data = getattr(args, "data", None)
    if data is not None and not os.path.isfile(data):
        parser.error(f"--data {data!r}: no such file")
    return args


def gpu_names(backend):
    """The names of the GPUs that Keras's `backend` sees (none: `[]`)."""
    if backend == "tensorflow":
        import tensorflow as tf

        return [tf.config.experimental.get_device_details(gpu).get(
            "device_name", gpu.name)
            for gpu in tf.config.list_physical_devices("GPU")]
    if backend == "jax":
        import jax

        return [d.device_kind for d in jax.devices() if d.platform == "gpu"]
    if backend == "torch":
        import torch

        return [torch.cuda.get_device_name(i)
                for i in range(torch.cuda.device_count())]
    return []


def cpu_name():
    """`"<processor>, <n> cores"` of this machine."""
    return (f"{platform.processor() or platform.machine()}, "
            f"{os.cpu_count()} cores")


def set_up(args):
    """What every example does before its data: imports Keras (with
    TensorFlow's C++ logs quiet), draws figures off screen, makes
    `args.output_dir`, seeds Python, NumPy and the backend with `args.seed`,
    sets the mixed_float16 policy with `args.mixed_precision`, and prints the
    device and the Keras backend. Returns the device, as printed."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import matplotlib

    matplotlib.use("Agg")
    os.makedirs(args.output_dir, exist_ok=True)
    backend = keras.backend.backend()
    if backend != "tensorflow" and "tensorflow" not in sys.modules:
        # Keras imports TensorFlow where it is installed (seconds, and its
        # start-up log) to seed it in set_random_seed and to look for its
        # types when saving; off TensorFlow the examples hold none. A
        # private flag of Keras 3's lazy module: if it goes, the log returns.
        from keras.src.utils.module_utils import tensorflow as lazy_tf

        lazy_tf._available = False
    keras.utils.set_random_seed(args.seed)
    if args.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
    device = ", ".join(gpu_names(backend)) or f"CPU ({cpu_name()})"
    print(f"Device: {device}; Keras backend: {backend}")
    return device
