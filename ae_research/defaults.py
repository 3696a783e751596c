"""Defaults shared by the library and the experiment configs.

The configs must not import jax, so the values both sides read live here, in
a module that imports nothing. The architectures' fields and defaults are in
`archs.py`, also free of jax.
"""

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
