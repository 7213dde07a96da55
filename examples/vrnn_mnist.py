"""A variational RNN (VRNN) on MNIST rows: 28 steps of 28 pixels.

The setting of a popular PyTorch port of Chung et al. (2015): a VRNN with a
GRU recurrence of 100 units, a 16-dimensional latent z_t per step and a
Bernoulli decoder of the 28 pixels of each row, trained with Adam 1e-3 on
its negative ELBO (`model.compile(optimizer)` and `model.fit(x)`: the
`keras_mrnn.VRNN` layer adds its own loss). Pixels are binarized at 0.5 by
default, so that the Bernoulli likelihood is a proper one
(`--no-binarize` keeps the gray levels in [0, 1]).

It reports, on held-out test images and in nats per image, the negative
ELBO and the importance-weighted negative log-likelihood (Burda et al.,
2016; `VRNN.log_likelihood`), and saves a grid of generated digits (each
row z_t drawn from the prior and decoded, fed back in) and of
reconstructions.

    python examples/vrnn_mnist.py --data ../shared/data/mnist.npz
    python examples/vrnn_mnist.py --quick       # a CI-size run, seconds

Data: `--data PATH` or the MNIST_NPZ environment variable for a local
`mnist.npz`, else `keras.datasets.mnist.load_data()` (downloads once).
"""

import argparse
import json
import os
import time

import _common  # examples/_common.py: the boilerplate the examples share

# ---------------------------------------------------------------- arguments
parser = _common.argument_parser(__doc__)
parser.add_argument("--epochs", type=int, default=20,
                    help="Training epochs.")
parser.add_argument("--batch-size", type=int, default=128,
                    help="Sequences per batch.")
parser.add_argument("--seed", type=int, default=1234,
                    help="Seed of the data, the initial weights and the "
                         "noise.")
parser.add_argument("--output-dir", default="outputs/vrnn_mnist",
                    help="Where the model (.keras), metrics JSON and figures "
                         "go.")
parser.add_argument("--quick", action="store_true",
                    help="CI-size run: 1,000 training and 200 test images, "
                         "1 epoch, 16 units, 4 importance samples (seconds).")
parser.add_argument("--data", default=None,
                    help="Path of a local mnist.npz (default: $MNIST_NPZ, "
                         "else keras.datasets.mnist.load_data()).")
parser.add_argument("--train-samples", type=int, default=None,
                    help="Train on the first N training images (default: "
                         "all 60,000).")
parser.add_argument("--test-samples", type=int, default=None,
                    help="Evaluate on the first N test images (default: "
                         "all 10,000).")
parser.add_argument("--binarize", action=argparse.BooleanOptionalAction,
                    default=True,
                    help="Binarize the pixels at 0.5 (default) or keep "
                         "gray levels in [0, 1].")
parser.add_argument("--units", type=int, default=100,
                    help="Units of the recurrence.")
parser.add_argument("--latent-dim", type=int, default=16,
                    help="Size of the latent z_t of each step.")
parser.add_argument("--recurrence", choices=["gru", "lstm"], default="gru",
                    help="Recurrence of the VRNN.")
parser.add_argument("--learning-rate", type=float, default=1e-3,
                    help="Adam learning rate.")
parser.add_argument("--clipnorm", type=float, default=5.0,
                    help="Gradient clipping (Keras clipnorm, per variable).")
parser.add_argument("--iw-samples", type=int, default=100,
                    help="Importance samples per test image for the NLL.")
_common.add_compile_flags(parser)  # --jit-compile, --mixed-precision
# --quick: smaller defaults; flags given on the command line still win.
args = _common.parse_args(parser, train_samples=1000, test_samples=200,
                           epochs=1, units=16, latent_dim=4, iw_samples=4)

# Keras (and its backend) is imported after parsing, so that --help answers
# at once. set_up: quiet TensorFlow logs, figures off screen, the output
# folder, the seed, --mixed-precision, and the device line.
device = _common.set_up(args)

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_mrnn  # noqa: E402

# --------------------------------------------------------------------- data
(x_train, _), (x_test, _) = keras_mrnn.datasets.load_mnist(args.data)
x_train = x_train[: args.train_samples].astype("float32") / 255.0
x_test = x_test[: args.test_samples].astype("float32") / 255.0
if args.binarize:
    x_train = (x_train > 0.5).astype("float32")
    x_test = (x_test > 0.5).astype("float32")
steps = x_train.shape[1]
print(f"Training on {len(x_train)} images, testing on {len(x_test)}; "
      f"{steps} steps of {x_train.shape[2]} pixels, "
      f"{'binarized' if args.binarize else 'gray levels in [0, 1]'}.")

# -------------------------------------------------------------------- model
# The VRNN adds its negative ELBO (nats per step) to the model's losses and
# reports vrnn_kl, vrnn_nll and vrnn_elbo in the progress bar.
vrnn = keras_mrnn.VRNN(
    args.units,
    latent_dim=args.latent_dim,
    likelihood="bernoulli",
    recurrence=args.recurrence,
    seed=args.seed,
    name="vrnn",
)
model = keras.Sequential([keras.Input(shape=x_train.shape[1:]), vrnn],
                         name="vrnn_mnist")
model.summary()
model.compile(
    optimizer=keras.optimizers.Adam(args.learning_rate,
                                    clipnorm=args.clipnorm),
    jit_compile={"auto": "auto", "on": True, "off": False}[args.jit_compile],
)

# -------------------------------------------------------------------- train
start = time.time()
history = model.fit(x_train, batch_size=args.batch_size, epochs=args.epochs)
train_seconds = time.time() - start

# ----------------------------------------------------------------- evaluate
# evaluate() averages the ELBO over the test steps (posterior samples);
# times the 28 steps it is per image.
results = model.evaluate(x_test, batch_size=args.batch_size,
                         return_dict=True)
negative_elbo = -results["vrnn_elbo"] * steps
log_likelihood = keras.ops.convert_to_numpy(vrnn.log_likelihood(
    x_test, num_samples=args.iw_samples, seed=args.seed,
    batch_size=max(1, 20000 // args.iw_samples),
))
nll = float(-np.mean(log_likelihood))
print(f"Test negative ELBO: {negative_elbo:.2f} nats per image; "
      f"importance-weighted NLL ({args.iw_samples} samples): {nll:.2f} nats "
      "per image.")

model_path = os.path.join(args.output_dir, "model.keras")
model.save(model_path)
metrics = {
    "test_negative_elbo_nats_per_image": float(negative_elbo),
    "test_iw_nll_nats_per_image": nll,
    "iw_samples": args.iw_samples,
    "test_kl_nats_per_image": float(results["vrnn_kl"] * steps),
    "test_reconstruction_nll_nats_per_image": float(
        results["vrnn_nll"] * steps
    ),
    "train_seconds": train_seconds,
    "device": device,
    "history": {k: [float(v) for v in vs]
                for k, vs in history.history.items()},
    "args": vars(args),
}
with open(os.path.join(args.output_dir, "metrics.json"), "w") as f:
    json.dump(metrics, f, indent=2)

# -------------------------------------------------------------------- plots
# Generated digits: z_t from the prior, each row's pixel probabilities
# (decode="mean") fed back as the next input.
samples = keras.ops.convert_to_numpy(
    vrnn.sample(steps, batch_size=50, seed=args.seed, decode="mean")
)
fig = keras_mrnn.plotting.plot_image_grid(
    samples, columns=10, title="VRNN samples (pixel probabilities)"
)
fig.savefig(os.path.join(args.output_dir, "samples.png"), dpi=100)
# Reconstructions: rows of test images, each above its reconstructions.
columns = min(10, len(x_test))
originals = x_test[: min(30, len(x_test)) // columns * columns]
reconstructions = keras.ops.convert_to_numpy(
    vrnn.reconstruct(originals, decode="mean", seed=args.seed)
)
pairs = np.concatenate([
    part[start:start + columns]
    for start in range(0, len(originals), columns)
    for part in (originals, reconstructions)
])
fig = keras_mrnn.plotting.plot_image_grid(
    pairs, columns=columns, title="Test images and their reconstructions"
)
fig.savefig(os.path.join(args.output_dir, "reconstructions.png"), dpi=100)
fig = keras_mrnn.plotting.plot_history(history, ["loss", "vrnn_kl",
                                                 "vrnn_nll"])
fig.savefig(os.path.join(args.output_dir, "history.png"), dpi=100)
print(f"Saved {model_path}, metrics.json and figures in {args.output_dir} "
      f"(training took {train_seconds:.0f} s).")
