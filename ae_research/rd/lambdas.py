"""The runs of a rate-distortion sweep (experiments/compress_rd.py): one
compression run per lambda, each from scratch or fine-tuned from the run of
an earlier lambda, and the command that trains it.

  lambdas = parse_lambdas('0.003,0.01@0.003')    # [(0.003, None), (0.01, 0.003)]
  run_command('configs/compress.py', 'runs/rd', 0.01, 0.003, 2000, extra=[])
"""

import os
import sys

# The sweep of experiments/compress_rd.py: three from scratch, two fine-tuned.
DEFAULT = '0.0015,0.003,0.006,0.012@0.006,0.024@0.006'


def parse_lambdas(text: str) -> list[tuple[float, float | None]]:
  """'0.003,0.01@0.003' -> [(0.003, None), (0.01, 0.003)]: VALUE, trained from
  scratch, or VALUE@FROM, started from the run of lambda FROM listed before
  it. ValueError naming the entry that is not one."""
  out = []
  for entry in (e for e in text.split(',') if e):
    value, _, parent = entry.partition('@')
    try:
      lmbda, start = float(value), float(parent) if parent else None
    except ValueError:
      raise ValueError(f'{entry!r} is not VALUE or VALUE@FROM') from None
    if lmbda <= 0:
      raise ValueError(f'{entry!r}: lambda must be > 0')
    if start is not None and start not in [v for v, _ in out]:
      raise ValueError(f'{entry!r}: lambda {start:g} is not listed before it')
    out.append((lmbda, start))
  if not out:
    raise ValueError('no lambda given')
  return out


def run_dir(workdir: str, lmbda: float) -> str:
  """The workdir of the run of `lmbda`: <workdir>/lambda_<value>."""
  return os.path.join(workdir, f'lambda_{lmbda:g}')


def run_command(config: str, workdir: str, lmbda: float, start: float | None,
                finetune_steps: int, extra: list[str]) -> list[str]:
  """The command that trains the run of `lmbda`: `extra` (the flags for every
  run) first, then a fine-tuned run's own init_from and steps, which win."""
  cmd = [sys.executable, '-m', 'ae_research.main', f'--config={config}',
         f'--workdir={run_dir(workdir, lmbda)}', f'--config.compress.lmbda={lmbda}',
         *extra]
  if start is not None:
    cmd += [f'--config.init_from={run_dir(workdir, start)}',
            f'--config.num_train_steps={finetune_steps}']
  return cmd
