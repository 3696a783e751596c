"""Tiled against whole-image inference: speed, memory and agreement.

  python benchmarks/tiling_speed.py                        # denoise, 8 MP
  python benchmarks/tiling_speed.py --workdir=runs/denoise --megapixels=24

Runs the image-to-image model of --workdir (its latest checkpoint) or,
without one, a freshly initialized model of --config (same cost; speed does
not depend on training) on one large photo (scikit-image's astronaut,
enlarged to --megapixels), whole and in tiles of --tile_size, in the same
process, each after a warm-up run that compiles it. Prints MP/s of both and
their ratio, XLA's estimate of the memory each needs, and the largest
difference between the two outputs.
"""

import argparse
import time

import jax
import numpy as np
import skimage.data

from ae_research import corruptions, steps, tiling
from ae_research import workdir as workdir_lib
from configs import denoise


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--workdir', default='')
  parser.add_argument('--megapixels', type=float, default=8.0)
  parser.add_argument('--tile_size', type=int, default=512)
  parser.add_argument('--tile_batch', type=int, default=4)
  args = parser.parse_args()
  if args.workdir:
    config = workdir_lib.load_config(args.workdir)
    state, _ = workdir_lib.restore_latest(config, args.workdir)
    task, model, _ = workdir_lib.build(config)
  else:
    config = denoise.get_config()
    task, model, tx = workdir_lib.build(config)
    state = steps.create_train_state(model, tx, jax.random.key(0),
                                     workdir_lib.init_shape(task, config, model))
  predict = jax.jit(steps.make_predict(model))
  multiple = model.downsampling

  photo = skimage.data.astronaut().astype(np.float32) / 255.0
  side = int(round((args.megapixels * 1e6) ** 0.5))
  x = corruptions.resize(photo, (side, side))
  x = np.clip(x, 0, 1)[..., :task.input_channels(config)]
  megapixels = side * side / 1e6

  plans = {'whole': tiling.Tiling(mode='never'),
           'tiled': tiling.Tiling(mode='always', tile_size=args.tile_size,
                                  batch=args.tile_batch)}
  outputs, seconds, decisions = {}, {}, {}
  for name, plan in plans.items():
    tiling.apply_image(predict, state, x, multiple, plan)  # Compiles.
    start = time.perf_counter()
    outputs[name], decisions[name] = tiling.apply_image(predict, state, x, multiple, plan)
    seconds[name] = time.perf_counter() - start

  d = decisions['tiled']
  padded = tiling.pad_to(x, multiple).shape
  (r0, r1), = tiling.windows(padded[0] // multiple, d.tile, d.halo, d.blend)[:1]
  tile_shape = (args.tile_batch, (r1 - r0) * multiple, (r1 - r0) * multiple,
                x.shape[-1])
  memory = {'whole': tiling.whole_image_bytes(predict, state, (1,) + padded),
            'tiled': tiling.whole_image_bytes(predict, state, tile_shape)}
  print(f'{config.task} model {tuple(config.model.features)}, '
        f'{side}x{side} ({megapixels:.1f} MP), {jax.devices()[0].platform}; '
        f'tiles of {tile_shape[1]} px (at most {d.tile * multiple}) with a halo of {d.halo * multiple} px '
        f'(the receptive field), {args.tile_batch} per call')
  print('| | seconds | MP/s | XLA memory estimate (MiB) |\n|---|---|---|---|')
  for name in plans:
    print(f'| {name} | {seconds[name]:.2f} | {megapixels / seconds[name]:.2f} | '
          f'{memory[name] / 2**20:.0f} |')
  print(f'tiled / whole: speed {seconds["whole"] / seconds["tiled"]:.2f}x, '
        f'memory {memory["tiled"] / memory["whole"]:.3f}x; largest difference '
        f'{np.abs(outputs["tiled"] - outputs["whole"]).max():.2e}')


if __name__ == '__main__':
  main()
