"""Learned image compression: factorized-prior and hyperprior codecs.

  python -m ae_research.main --config=configs/compress.py --workdir=runs/compress
  python -m ae_research.codec compress --workdir=runs/compress in.png out.aec
  python -m ae_research.codec decompress --workdir=runs/compress out.aec out.png
  python experiments/compress_rd.py --workdir=runs/rd   # the lambda sweep

One run is one quality: config.compress.lmbda weighs distortion against
rate in `lambda * 255^2 * MSE + bpp`. The default is the factorized prior
(Balle et al.) at a CPU size. Variants:
  hyperprior   Balle et al. 2018's scale hyperprior
  mean_scale   Minnen et al. 2018's mean-scale hyperprior (no context model)
  n128, n192   the published sizes (N=128, M=192; N=192, M=320: four
               levels, 256x256 patches), with any of the three models
  variable     one mean-scale model for every rate (gain vectors, Cui et
               al. 2021): qualities 0 to 100 span lambdas 0.0001 to 0.15
  bottleneck   the plain autoencoder with a latent of config.compress.bits
               bits, no entropy model
  smoke        seconds
e.g. configs/compress.py:mean_scale,n128. Trains on random patches of the
embedded photos; the held-out photos are coded whole by the real codec and
scored beside JPEG and WebP.
"""

from configs import default


def _bottleneck(config):
  config.compress.model = 'bottleneck'
  config.model.features = (64, 64, 64, 64)
  config.model.latent_features = 16
  config.model.blocks_per_level = 0


def _entropy_model(kind):
  def apply(config):
    config.compress.model = kind
    config.compress.hyper_features = 64
  return apply


def _variable(config):
  if config.compress.model not in ('hyperprior', 'mean_scale'):
    _entropy_model('mean_scale')(config)
  config.compress.rate_levels = 8
  # The shipped codec's range (experiments/zoo.py, compress-variable), for
  # Kodak24 from 0.1 to 1.2 bpp. CompressAI's qualities 1-8 span 0.0018 to
  # 0.18 (0.0018 stops near 0.26 bpp after two hours of CPU training).
  config.compress.lmbda_range = (0.0001, 0.15)


def _published(n, m):
  def apply(config):
    config.model.features = (n,) * 4
    config.model.latent_features = m
    config.compress.hyper_features = n
    config.patch_size = 256
  return apply


def get_config(variant: str = ''):
  config = default.get_config('compress')
  default.photo_training(config)
  config.compress.lmbda = 0.006
  # Patches of 128: with 64, the model learned border effects of a 4x4 latent
  # and lost 7 dB on whole images.
  config.patch_size = 128
  config.batch_size = 8
  # Three stride-2 levels of 5x5 convolutions and GDN (an 8x smaller
  # latent): lower loss after 500 steps than four levels, and faster.
  config.model.features = (64, 64, 64)
  config.model.latent_features = 64
  config.model.residual = False
  config.model.upsample = 'pixel_shuffle'
  config.optimizer.learning_rate = 2e-3  # 5e-3 diverges early.
  config.optimizer.warmup_steps = 200
  config.num_train_steps = 2500
  config.eval_every_steps = 1000
  config.checkpoint_every_steps = 500
  config.num_sample_images = 1
  config = default.apply_variant(config, variant, {
      'bottleneck': _bottleneck,
      'hyperprior': _entropy_model('hyperprior'),
      'mean_scale': _entropy_model('mean_scale'),
      'variable': _variable,
      'n128': _published(128, 192), 'n192': _published(192, 320),
  })
  if 'smoke' in variant.split(','):
    config.patch_size = 32
    hyper = config.compress.model in ('hyperprior', 'mean_scale')
    # A hyperprior's z is 4x smaller than y: two levels leave it 2x2.
    config.model.features = (8, 8) if hyper else (8, 8, 8, 8)
    config.model.latent_features = 8
    if hyper:
      config.compress.hyper_features = 8
  return config
