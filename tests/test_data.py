import numpy as np
import pytest

from ae_research import corruptions, datasets, input_pipeline, tasks
from ae_research.datasets import shapes


def test_render_colors_follow_the_labels():
  rng = np.random.default_rng(0)
  for _ in range(20):
    ex = shapes.render(rng, 32, 2, 4, 3, 7)
    label, image, gray = ex['label'], ex['image'], ex['gray'][..., 0]
    assert np.all(image[label == 1] == [255, 0, 0])
    assert np.all(image[label == 2] == [0, 0, 255])
    assert (label == 1).any() or (label == 2).any()
    assert np.all(image[label == 0] == shapes.BACKGROUND)
    # The gray input hides which shape is which.
    assert np.all(gray[label > 0] == shapes.SHAPE_GRAY)
    assert np.all(gray[label == 0] == shapes.BACKGROUND)


def test_shapes_never_touch():
  """Each connected component of the shape mask has a single class."""
  from scipy import ndimage
  rng = np.random.default_rng(1)
  for _ in range(50):
    ex = shapes.render(rng, 32, 3, 4, 3, 7)
    components, n = ndimage.label(ex['label'] > 0)
    for i in range(1, n + 1):
      assert len(np.unique(ex['label'][components == i])) == 1


def test_builder_is_fixed_by_its_seed(data_dir):
  kwargs = dict(image_size=16, max_shapes=2, max_radius=4, num_train=12,
                num_test=5)
  a = shapes.builder(data_dir, seed=0, **kwargs)
  b = shapes.builder(data_dir + '/other', seed=0, **kwargs)
  c = shapes.builder(data_dir, seed=1, **kwargs)
  ta, tb, tc = (x.as_data_source('train') for x in (a, b, c))
  assert len(ta) == 12 and len(a.as_data_source('test')) == 5
  assert ta[3]['image'].shape == (16, 16, 3)
  for i in range(12):
    np.testing.assert_array_equal(ta[i]['image'], tb[i]['image'])
  assert any(not np.array_equal(ta[i]['image'], tc[i]['image']) for i in range(12))


def _first_images(it, n):
  return [next(it)['target'] for _ in range(n)]


def test_train_pipeline_is_deterministic_and_resumes_exactly(smoke_config):
  task = tasks.get('colorize')
  source = datasets.get_source(smoke_config, 'train')
  make = lambda: input_pipeline.train_dataset(source, task, smoke_config, 8).__iter__()
  a, b = make(), make()
  batches_a = _first_images(a, 5)
  for x, y in zip(batches_a, _first_images(b, 5)):
    np.testing.assert_array_equal(x, y)
  assert batches_a[0].shape == (8, 32, 32, 3)
  # Resume from a saved position.
  it = make()
  _first_images(it, 2)
  state = it.get_state()
  rest = _first_images(it, 3)
  resumed = make()
  resumed.set_state(state)
  for x, y in zip(rest, _first_images(resumed, 3)):
    np.testing.assert_array_equal(x, y)


def test_epochs_cover_the_data_in_a_new_order(smoke_config):
  task = tasks.get('colorize')
  source = datasets.get_source(smoke_config, 'train')
  n = len(source)
  it = input_pipeline.train_dataset(source, task, smoke_config, n // 4).__iter__()
  epoch1 = np.concatenate(_first_images(it, 4))
  epoch2 = np.concatenate(_first_images(it, 4))
  key = lambda a: sorted(x.tobytes() for x in a)
  assert key(epoch1) == key(epoch2)  # Same examples...
  assert not np.array_equal(epoch1, epoch2)  # ...in another order.


def test_each_process_gets_its_own_shard(smoke_config):
  task = tasks.get('colorize')
  source = datasets.get_source(smoke_config, 'train')
  n = len(source)
  seen = []
  for p in range(2):
    it = input_pipeline.train_dataset(source, task, smoke_config, n // 8,
                                      process_index=p, process_count=2).__iter__()
    seen.append({x.tobytes() for x in np.concatenate(_first_images(it, 4))})
  assert len(seen[0]) == len(seen[1]) == n // 2
  assert not seen[0] & seen[1]


@pytest.mark.parametrize('process_count', [1, 3])
def test_eval_batches_cover_every_example_once(smoke_config, process_count):
  task = tasks.get('colorize')
  source = datasets.get_source(smoke_config, 'test')
  images, counts = [], []
  for p in range(process_count):
    batches = list(input_pipeline.eval_batches(source, task, smoke_config, 16,
                                               p, process_count))
    counts.append(len(batches))
    for b in batches:
      assert b['input'].shape[0] == 16
      images += [x for x, m in zip(b['target'], b['mask']) if m]
  assert len(set(counts)) == 1
  assert len(images) == len(source)
  expected = {(source[i]['image'].astype(np.float32) / 255).tobytes()
              for i in range(len(source))}
  assert {x.tobytes() for x in images} == expected


def test_device_prefetcher_state_points_at_the_next_batch(smoke_config):
  task = tasks.get('colorize')
  source = datasets.get_source(smoke_config, 'train')
  make = lambda: input_pipeline.train_dataset(source, task, smoke_config, 8).__iter__()
  pre = input_pipeline.DevicePrefetcher(make(), put=lambda b: b, size=2)
  _first_images(pre, 3)
  state = pre.get_state()
  expected = _first_images(pre, 2)
  fresh = make()
  fresh.set_state(state)
  for x, y in zip(expected, _first_images(fresh, 2)):
    np.testing.assert_array_equal(x, y)


def test_dihedral_gives_the_8_distinct_symmetries():
  image = np.arange(2 * 3 * 2, dtype=np.float32).reshape(2, 3, 2)
  outs = [corruptions.dihedral(image, k) for k in range(8)]
  assert len({o.tobytes() + bytes(o.shape) for o in outs}) == 8
  np.testing.assert_array_equal(outs[0], image)
  np.testing.assert_array_equal(outs[1], np.swapaxes(image, 0, 1)[::-1])  # 90 degrees
  np.testing.assert_array_equal(outs[4], image[:, ::-1])  # Mirror.
  with pytest.raises(ValueError, match='use 0 to 7'):
    corruptions.dihedral(image, 8)


def test_augmentation_moves_every_plane_together_reproducibly(smoke_config):
  """Shapes examples carry image, gray and label: one transform for all."""
  task = tasks.get('colorize')
  source = datasets.get_source(smoke_config, 'train')
  smoke_config.augment = True
  make = lambda: input_pipeline.train_dataset(source, task, smoke_config, 8).__iter__()
  a, b = next(make()), next(make())
  for k in a:
    np.testing.assert_array_equal(a[k], b[k])  # Reproducible from the seed.
  # The gray input still matches the colored target where shapes are.
  gray = a['input'][..., 0] > 0.7
  assert np.array_equal(gray, a['label'] > 0)
  smoke_config.augment = False
  plain = next(make())
  assert not np.array_equal(plain['target'], a['target'])
  # Each augmented target is one of the 8 transforms of the plain pipeline's
  # crop of the same example (the same order: the epoch order ignores k).
  for aug, orig in zip(a['target'], plain['target']):
    assert any(np.array_equal(aug, corruptions.dihedral(orig, k)) for k in range(8))
