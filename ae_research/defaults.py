"""Defaults shared by the library and the experiment configs.

The configs must not import jax, so the values both sides read live here, in
a module that imports nothing: e.g. `models.Autoencoder`'s field defaults and
`configs/default.py`'s `config.model` cannot drift apart.
"""

# The fields of `models.Autoencoder` that `config.model` sets (all but
# out_features, which the task decides, and norm_axis_name, which the loop
# decides), with their defaults. avgpool + pixel_shuffle is the fastest pair
# in jax on CPU (benchmarks/train_speed.py --kinds); transposed convolutions
# are the slowest, their weight gradient being slow in XLA:CPU.
AUTOENCODER = dict(
    features=(16, 32),
    latent_features=32,
    blocks_per_level=1,
    downsample='avgpool',
    upsample='pixel_shuffle',
    norm='none',
    activation='relu',
    output_activation='none',
    residual=False,
)

# The generated 'shapes' data set (datasets/shapes.py, config.shapes).
SHAPES = dict(
    image_size=32,
    min_shapes=1,
    max_shapes=4,
    min_radius=3,
    max_radius=7,
    num_train=20000,
    num_test=1000,
    seed=0,
)
