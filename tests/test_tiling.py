"""Tiled inference: tiles give the whole image's output, and blending hides
the seams of tiles that see too little context."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ae_research import compression, models, tiling


def _model_fn(model, channels=3, seed=0):
  variables = model.init(jax.random.key(seed), jnp.zeros((1, 16, 16, channels)))
  return jax.jit(lambda v, x: model.apply(v, x)), variables


def _image(h, w, c=3, seed=0):
  yy, xx = np.mgrid[0:h, 0:w] / np.array([h, w]).reshape(2, 1, 1)
  smooth = np.stack([xx ** 2, np.sin(8 * yy) * 0.5 + 0.5, xx * yy], -1)[..., :c]
  noise = np.random.default_rng(seed).random((h, w, c))
  return (0.8 * smooth + 0.2 * noise).astype(np.float32)


@pytest.mark.parametrize('n,tile,halo,blend', [
    (10, 10, 2, 1), (11, 10, 2, 1), (37, 12, 2, 3), (64, 20, 0, 0), (50, 9, 1, 0),
    (100, 16, 3, 2)])
def test_windows_cover_the_axis_and_keep_only_context_free_pixels(n, tile, halo, blend):
  out_cell = 2
  total = np.zeros(n * out_cell)
  spans = tiling.windows(n, tile, halo, blend)
  length = spans[0][1] - spans[0][0]
  assert length <= tile
  for start, stop in spans:
    assert 0 <= start < stop <= n and stop - start == length
    weight = tiling.ramp(start, stop, n, halo, blend, out_cell)
    assert weight.min() >= 0 and weight.max() <= 1
    kept = np.nonzero(weight)[0] + start * out_cell
    # A pixel a tile contributes is at least `halo` cells from its inner edges.
    if start > 0:
      assert kept.min() >= (start + halo) * out_cell
    if stop < n:
      assert kept.max() < (stop - halo) * out_cell
    total[start * out_cell:stop * out_cell] += weight
  assert total.min() > 0
  # Where neighbours cross-fade at the nominal overlap, weights sum to 1.
  if len(spans) > 1 and spans[1][0] == length - 2 * halo - blend and blend:
    assert np.isclose(total[(tile - halo - blend) * out_cell], 1.0)


def test_windows_are_as_few_as_the_tile_size_allows():
  # 1414 cells, tiles of at most 256 with 30 of overlap: 7 tiles of 228, not
  # 7 of 256.
  spans = tiling.windows(1414, 256, 11, 8)
  assert len(spans) == 7 and {b - a for a, b in spans} == {228}
  assert spans[-1][1] == 1414


def test_windows_refuse_tiles_that_keep_nothing():
  with pytest.raises(ValueError, match='larger tiles'):
    tiling.windows(100, 8, 3, 2)


@pytest.mark.slow
@pytest.mark.parametrize('kwargs', [
    dict(downsample='stride', upsample='pixel_shuffle'),
    dict(downsample='avgpool', upsample='nearest', residual=True),
    dict(downsample='space_to_depth', upsample='transpose', blocks_per_level=2),
    dict(features=(8,), blocks_per_level=3, residual=True),
    dict(norm='batch', activation='gelu'),
])
def test_tiled_equals_whole_image(kwargs):
  model = models.Autoencoder(**{'features': (8, 16), 'latent_features': 8, **kwargs})
  fn, variables = _model_fn(model)
  multiple = 2 ** len(model.features)
  x = _image(157, 230)
  whole, d = tiling.apply_image(fn, variables, x, multiple, tiling.Tiling(mode='never'))
  assert not d.tiled and whole.shape == x.shape
  tiled, d = tiling.apply_image(fn, variables, x, multiple,
                                tiling.Tiling(mode='always', tile_size=24, blend=4))
  assert d.tiled and d.exact
  # Several tiles across.
  assert len(tiling.windows(-(-230 // multiple), d.tile, d.halo, d.blend)) > 1
  np.testing.assert_allclose(tiled, whole, atol=1e-4)


@pytest.mark.slow
def test_tiled_equals_whole_for_the_codec_transforms():
  config_features = (8, 8, 8)
  for model in (compression.FactorizedPrior(features=config_features, latent_features=8),
                compression.QuantizedAutoencoder(features=(8, 8), latent_features=4)):
    variables = model.init({'params': jax.random.key(0), 'noise': jax.random.key(1)},
                           jnp.zeros((1, 16, 16, 3)))
    m = 2 ** len(model.features)
    latent = jax.jit(lambda v, x, model=model: model.apply(v, x, method='latent'))
    synthesis = jax.jit(lambda v, y, model=model: model.apply(v, y, method='synthesis'))
    x = tiling.pad_to(_image(200, 300), m)
    plan = tiling.Tiling(mode='always', tile_size=16, blend=0)
    whole = np.asarray(latent(variables, x[None]))[0]
    tiled, d = tiling.run(latent, variables, x, in_cell=m, out_cell=1, plan=plan)
    assert d.tiled and d.exact
    np.testing.assert_allclose(tiled, whole, atol=1e-4)
    y = np.round(whole)
    whole = np.asarray(synthesis(variables, y[None]))[0]
    tiled, d = tiling.run(synthesis, variables, y, in_cell=1, out_cell=m,
                          plan=tiling.Tiling(mode='always', tile_size=4, blend=1))
    assert d.tiled and tiled.shape == x.shape
    np.testing.assert_allclose(tiled, whole, atol=1e-4)


class _Convs(nn.Module):
  depth: int

  @nn.compact
  def __call__(self, x):
    for _ in range(self.depth):
      x = nn.Conv(4, (3, 3))(x)
    return x


@pytest.mark.parametrize('depth', [1, 3, 6])
def test_receptive_field_of_a_stack_of_convolutions(depth):
  fn, variables = _model_fn(_Convs(depth))
  field = tiling.receptive_field(fn, variables, 3, 1, 1)
  assert depth <= field <= depth + 1  # Each 3x3 convolution reaches 1 further.


@pytest.mark.slow
def test_receptive_field_of_a_model_that_pools_the_whole_image_is_unbounded():
  fn, variables = _model_fn(models.Autoencoder(features=(8,), latent_features=8,
                                               norm='group'))
  assert tiling.receptive_field(fn, variables, 3, 2, 2, max_cells=32) is None


def _seam_visibility(out, whole):
  """How much the column-to-column change of `out` departs from the whole
  image's, at its worst column, relative to the mean change."""
  profile = lambda o: np.abs(np.diff(o, axis=1)).mean(axis=(0, 2))
  return np.abs(profile(out) - profile(whole)).max() / profile(whole).mean()


def test_blending_hides_the_seams_of_tiles_with_too_little_context():
  model = models.Autoencoder(features=(8, 16), latent_features=8)
  fn, variables = _model_fn(model)
  x = _image(64, 256)
  whole = np.asarray(fn(variables, x[None]))[0]
  common = dict(in_cell=4, out_cell=4, tile=20, halo=0)
  hard = tiling.apply_tiled(fn, variables, x, blend=0, **common)
  blended = tiling.apply_tiled(fn, variables, x, blend=4, **common)
  # Cut tiles leave steps the size of a typical pixel-to-pixel change.
  assert _seam_visibility(hard, whole) > 0.5
  assert _seam_visibility(blended, whole) < _seam_visibility(hard, whole) / 3
  assert np.abs(blended - whole).max() < np.abs(hard - whole).max()


@pytest.mark.slow
def test_auto_tiles_only_what_does_not_fit():
  model = models.Autoencoder(features=(8, 16), latent_features=8)
  fn, variables = _model_fn(model)
  x = _image(96, 256)
  need = tiling.whole_image_bytes(fn, variables, (1, 96, 256, 3))
  assert need > 0
  small = tiling.Tiling(mode='auto', memory_bytes=need // 4, tile_size=48)
  tiled, d = tiling.apply_image(fn, variables, x, 4, small)
  assert d.tiled and 'over the budget' in d.reason
  whole, d = tiling.apply_image(fn, variables, x, 4,
                                tiling.Tiling(mode='auto', memory_bytes=4 * need))
  assert not d.tiled
  np.testing.assert_allclose(tiled, whole, atol=1e-4)


def test_bad_plans_are_refused():
  with pytest.raises(ValueError, match='tile_size 0 must be positive'):
    tiling.Tiling(tile_size=0)
  with pytest.raises(ValueError, match="mode 'sometimes'"):
    tiling.Tiling(mode='sometimes')
