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

# The reference models of zoo.py, by config.model.arch: each one's fields and
# defaults (config.model holds 'arch' and the fields of that architecture).
# Published sizes: DnCNN 17 x 64 with batch norm; FFDNet (color) 12 x 96;
# ESPCN 64, 32; FSRCNN d=56, s=12, m=4; EDSR baseline 16 blocks x 64.
ARCHS = dict(
    autoencoder=AUTOENCODER,
    unet=dict(features=(32, 64, 128), blocks_per_level=2, downsample='avgpool',
              upsample='pixel_shuffle', norm='none', activation='relu',
              output_activation='none', residual=True),
    dncnn=dict(depth=17, width=64, norm='batch', residual=True),
    ffdnet=dict(depth=12, width=96, norm='none', residual=False),
    espcn=dict(widths=(64, 32), activation='tanh', bicubic_skip=False),
    fsrcnn=dict(width=56, shrink=12, mapping_layers=4, bicubic_skip=False),
    edsr=dict(num_blocks=16, width=64, res_scale=1.0, bicubic_skip=False),
)
