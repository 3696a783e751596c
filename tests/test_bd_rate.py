"""rd.bd_rate against an independent implementation, the `bjontegaard` package.

Both take log rate as a monotone piecewise-cubic (pchip) function of quality,
average test minus anchor over the qualities both curves reach and report
(10^mean - 1) * 100. The package gets rates in bpp (it takes the log10
itself) and integrates its pchip exactly; rd integrates the same function with
the trapezoid rule on a grid of `_GRID_POINTS` points, so the two may differ
by that rule's error alone, which `_tolerance` bounds case by case.
"""

import math

import bjontegaard
import numpy as np
import pytest

from ae_research import rd

_GRID_POINTS = 1001  # rd.bd_rate's integration grid.


def _jpeg_like(rng, n, lo, hi, scale=1.0, noise=0.0):
  """(bpp, psnr) of n settings, shaped like JPEG on photos (about 25 dB at
  0.25 bpp, 36 dB at 2 bpp), bpp scaled by `scale` and both jittered by
  `noise`; sorted so that more bits always give a better PSNR."""
  bpp = np.geomspace(lo, hi, n)
  psnr = 32.5 + 5.2 * np.log(bpp) - 0.3 * np.log(bpp) ** 2
  bpp = bpp * scale * np.exp(rng.normal(0, noise, n))
  psnr = psnr + rng.normal(0, 2 * noise, n)
  return np.sort(bpp), np.sort(psnr)


def _points(bpp, quality, metric='psnr'):
  return [{'bpp': float(b), metric: float(q)} for b, q in zip(bpp, quality)]


def _package(test, anchor):
  """The package's BD-rate (percent) and its two pchip interpolants."""
  (rt, qt), (ra, qa) = test, anchor
  return bjontegaard.bd_rate(ra, qa, rt, qt, 'pchip',
                             require_matching_points=False, interpolators=True,
                             min_overlap=0)  # Partial overlap is intended.


def _max_second_derivative(f):
  # A cubic's second derivative is linear, so on each piece it peaks at an end.
  c, dx = f.c, np.diff(f.x)
  return max(np.abs(2 * c[1]).max(), np.abs(6 * c[0] * dx + 2 * c[1]).max())


def _tolerance(test, anchor, f_anchor, f_test, bd_percent):
  """A bound on the percent difference from rd's trapezoid rule.

  The rule's error on [lo, hi] with step h is at most (hi - lo) h^2 / 12
  times the largest |d''| of the integrand d (pchip is C1 with a bounded
  second derivative, which is all that bound needs); dividing by hi - lo
  gives the error of the mean log10 rate, and 100 (10^x - 1) has slope
  100 ln(10) 10^x there.
  """
  lo = max(test[1].min(), anchor[1].min())
  hi = min(test[1].max(), anchor[1].max())
  h = (hi - lo) / (_GRID_POINTS - 1)
  curvature = _max_second_derivative(f_anchor) + _max_second_derivative(f_test)
  mean_error = h * h / 12 * curvature
  x = math.log10(1 + bd_percent / 100) + mean_error
  return 100 * math.log(10) * 10 ** x * mean_error + 1e-9  # + float rounding.


@pytest.mark.parametrize('scale', [0.8, 1.25])
def test_a_curve_shifted_in_rate_matches_the_shift(scale):
  # The same qualities at `scale` times the bits: log rate differs by
  # log10(scale) everywhere, so BD-rate is (scale - 1) * 100 whatever the
  # interpolation.
  anchor = _jpeg_like(np.random.default_rng(0), 6, 0.15, 2.0)
  test = (anchor[0] * scale, anchor[1])
  ours = rd.bd_rate(_points(*test), _points(*anchor))
  theirs, _, _ = _package(test, anchor)
  np.testing.assert_allclose([ours, theirs], (scale - 1) * 100, atol=1e-9)


# (points, lowest and highest bpp, bpp scale, jitter) of the test curve.
CASES = [(6, 0.15, 2.0, 0.8, 0.03),  # Fewer bits.
         (6, 0.15, 2.0, 1.3, 0.03),  # More bits.
         (5, 0.2, 2.5, 1.0, 0.08),  # About even, crossing the anchor.
         (4, 0.1, 1.5, 0.7, 0.05),  # Fewer points, shorter range.
         (6, 0.3, 3.0, 1.15, 0.05)]  # Only partly overlapping in quality.


@pytest.mark.parametrize('seed', range(4))
@pytest.mark.parametrize('case', CASES)
def test_matches_bjontegaard_pchip(case, seed):
  rng = np.random.default_rng(seed)
  anchor = _jpeg_like(rng, 6, 0.15, 2.0, noise=0.03)
  test = _jpeg_like(rng, *case)
  ours = rd.bd_rate(_points(*test), _points(*anchor))
  theirs, f_anchor, f_test = _package(test, anchor)
  assert ours is not None
  assert abs(ours - theirs) <= _tolerance(test, anchor, f_anchor, f_test, theirs)


def test_matches_bjontegaard_on_ms_ssim():
  rng = np.random.default_rng(7)
  anchor_bpp, anchor_psnr = _jpeg_like(rng, 6, 0.15, 2.0, noise=0.03)
  test_bpp, test_psnr = _jpeg_like(rng, 5, 0.12, 1.6, scale=0.85, noise=0.03)
  # An MS-SSIM-like quality: increasing in PSNR, saturating below 1.
  anchor = (anchor_bpp, 1 - 10 ** (-anchor_psnr / 20))
  test = (test_bpp, 1 - 10 ** (-test_psnr / 20))
  ours = rd.bd_rate(_points(*test, 'ms_ssim'), _points(*anchor, 'ms_ssim'),
                    metric='ms_ssim')
  theirs, f_anchor, f_test = _package(test, anchor)
  assert abs(ours - theirs) <= _tolerance(test, anchor, f_anchor, f_test, theirs)


def test_curves_sharing_no_quality_have_no_bd_rate():
  rng = np.random.default_rng(0)
  anchor = _jpeg_like(rng, 5, 0.1, 0.5)
  test = _jpeg_like(rng, 5, 1.0, 4.0)  # Every PSNR above the anchor's best.
  assert rd.bd_rate(_points(*test), _points(*anchor)) is None
  with pytest.warns(UserWarning, match='do not overlap'):
    theirs, _, _ = _package(test, anchor)
  assert math.isnan(theirs)


def test_classical_curves_are_computed_once_and_keyed_by_the_image(tmp_path, monkeypatch):
  rng = np.random.default_rng(0)
  images = [(f'im{i}', rng.integers(0, 256, (161, 170, 3), dtype=np.uint8)) for i in range(2)]
  qualities = {'jpeg': (10, 50), 'webp': (20,)}
  cache = str(tmp_path / 'cache')
  first = rd.classical_curves(images, qualities, cache=cache)
  assert first == rd.classical_curves(images, qualities, cache=None)
  calls = []
  real = rd.classical_roundtrip
  monkeypatch.setattr(rd, 'classical_roundtrip',
                      lambda *a: calls.append(a[1:]) or real(*a))
  assert rd.classical_curves(images, qualities, cache=cache) == first
  assert not calls  # All from the cache.
  # Another image, or other qualities, are computed (and cached) anew.
  changed = [(n, im.copy()) for n, im in images]
  changed[1][1][0, 0, 0] ^= 1
  rd.classical_curves(changed, qualities, cache=cache)
  assert calls == [('jpeg', 10), ('jpeg', 50), ('webp', 20)]
  calls.clear()
  rd.classical_curves(images, {'jpeg': (10, 60)}, cache=cache)
  assert calls == [('jpeg', 10), ('jpeg', 60)] * 2


def test_bd_table_compares_every_curve_with_the_others_and_not_itself():
  a = [{'bpp': b, 'psnr': 30 + 10 * math.log10(b), 'ms_ssim': 0.9 + b / 10}
       for b in (0.1, 0.2, 0.4)]
  half = [dict(p, bpp=p['bpp'] / 2) for p in a]
  psnr_only = [{'bpp': p['bpp'], 'psnr': p['psnr']} for p in a]
  table, md = rd.bd_table({'a': a, 'half': half},
                          {'a': a, 'half': half, 'published': psnr_only})
  assert set(table) == {'a_vs_half', 'a_vs_published', 'half_vs_a',
                        'half_vs_published'}
  assert table['half_vs_a']['psnr'] == pytest.approx(-50, abs=0.1)
  assert table['a_vs_half']['psnr'] == pytest.approx(100, abs=0.2)
  assert table['a_vs_published']['psnr'] == pytest.approx(0, abs=1e-6)
  assert table['a_vs_published']['ms_ssim'] is None
  assert '| a | published | +0.0% | n/a |' in md


def test_each_learned_point_is_shown_beside_the_anchors_at_its_rate():
  anchor = [{'bpp': b, 'psnr': 30 + 10 * math.log10(b)} for b in (0.1, 1.0)]
  points = [{'quality': q, 'bpp': b, 'psnr': 31.0, 'ms_ssim': 0.95}
            for q, b in ((0.0, 0.05), (50.0, 10 ** -0.5))]
  md = rd.at_rate_table('one', points, {'jpeg': anchor})
  rows = [line.split(' | ') for line in md.splitlines()[2:]]
  # Outside the anchor's rates: no figure; inside: its curve, linear in log rate.
  assert rows[0][0] == '| 0' and rows[0][-1] == '- |'
  assert rows[1][0] == '| 50' and float(rows[1][-1][:-2]) == pytest.approx(
      30 - 5, abs=0.01)
  assert 'jpeg at this rate' in md.splitlines()[0]
