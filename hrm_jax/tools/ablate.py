r"""The TRM paper's ablation family at equal wall time: trains each variant, prints a table.

  python -m hrm_jax.tools.ablate --workdir=runs/ablation [--minutes=5] [--variants=base,no_ema]
      [--config=experiments/sudoku.py:trm_cpu] [--config.<field>=<value> ...]

Each variant is the base config (default: the TRM `trm_cpu` preset) changed by one entry of
`hrm_jax.config.TRM_ABLATIONS` (attention instead of the MLP mixer, no EMA, the 1-step gradient,
a single z, separate networks, HRM's halting, HRM and the direct-prediction transformer at equal
parameters). Equal wall time: every variant's train step is timed first
(`bench.seconds_per_step`: the best of 3 blocks of 10 steps on random batches; all variants
back to back before any training, so that later work on the machine cannot change the step
counts), and each then trains for `floor(minutes · 60 / step time)` steps with the base's
schedule stretched to that length (warm-up and cosine decay included), evaluated on the base's
held-out test set at half way and at the end. Evaluation, data building and compilation are not
counted in the budget.

Every variant trains in `<workdir>/<variant>` on one dataset built in `<workdir>/data`; the
chosen step counts are kept in `<workdir>/ablation.json`, so a rerun (after an interruption)
resumes with the same counts and skips finished variants. Prints one `variant: …` line per
finished variant and a Markdown table, also written to `<workdir>/ablation.md`. 9 variants × 5
minutes: about an hour on 2 CPU cores.
"""

from __future__ import annotations

import json
import math
import os
from typing import Optional

import ml_collections
from absl import flags
from ml_collections import config_flags

from hrm_jax import cli as cli_lib
from hrm_jax import config as config_lib
from hrm_jax import tasks, train
from hrm_jax.analysis import plots
from hrm_jax.tools import bench

FLAGS = flags.FLAGS

# The TRM paper's Sudoku-Extreme exact accuracy (%) of each variant (Tables 1-2, spec §8.1):
# TRM-MLP itself, then relative to it; HRM and the direct transformer at their own sizes.
PAPER = {
  'base': 87.4,
  'act_continue': 86.1,
  'separate_nets': 82.4,
  'no_ema': 79.9,
  'attention': 74.7,
  'single_z': 71.9,
  'multi_z': 77.6,
  'one_step_grad': 56.5,
  'hrm': 55.0,
  'direct': 0.0,
}
VARIANTS = tuple(PAPER)


def define_flags() -> None:
  """The command's flags (defined only when it runs, see `hrm_jax.cli`)."""
  config_flags.DEFINE_config_file(
    'config', 'experiments/sudoku.py:trm_cpu', 'Base config file[:preset].', lock_config=True
  )
  flags.DEFINE_string('workdir', None, 'Root folder: one run per variant, and the table.')
  flags.DEFINE_float('minutes', 5.0, 'Training wall time per variant (step time × steps).')
  flags.DEFINE_list('variants', list(VARIANTS), f'Which variants, of {", ".join(VARIANTS)}.')
  flags.DEFINE_integer('time_steps', 10, 'Train steps per timing block (best of 3 blocks).')
  flags.mark_flag_as_required('workdir')


def variant_config(base: ml_collections.ConfigDict, name: str) -> ml_collections.ConfigDict:
  """A copy of `base` changed by `config.TRM_ABLATIONS[name]` ('base': unchanged)."""
  if name not in PAPER:
    raise config_lib.ConfigError(f'unknown variant {name!r}; choose from {", ".join(VARIANTS)}')
  c = ml_collections.ConfigDict(base.to_dict())
  return config_lib.apply(c, {} if name == 'base' else config_lib.TRM_ABLATIONS[name])


def stretched(cfg: ml_collections.ConfigDict, steps: int) -> ml_collections.ConfigDict:
  """`cfg` trained for `steps` steps: warm-up scaled with the length (at least 1 step),
  evaluations at half way and at the end, in place (and returned)."""
  base_steps = cfg.train.steps or steps
  warmup = max(1, round(cfg.opt.lr_warmup_steps * steps / base_steps))
  cfg.opt.lr_warmup_steps = min(warmup, steps)
  cfg.train.update(steps=steps, eval_every=-(-steps // 2))  # ceil: no second eval at the end
  return cfg


def final_records(workdir: str) -> tuple[Optional[dict], Optional[dict]]:
  """(last `eval` record, `meta` record) of `<workdir>/metrics.jsonl` (`plots.read_metrics`);
  None for what it does not hold yet."""
  path = os.path.join(workdir, 'metrics.jsonl')
  records = plots.read_metrics(path) if os.path.exists(path) else {}
  evals, meta = records.get('eval', []), records.get('meta', [])
  return (evals[-1] if evals else None), (meta[0] if meta else None)


def table(rows: list[dict]) -> str:
  """The Markdown table of finished variants (dicts of `run_variant`), in paper order."""
  lines = [
    '| variant | params | ms/step | steps | exact | blank acc. | paper (%) |',
    '|---|---:|---:|---:|---:|---:|---:|',
  ]
  for r in rows:
    lines.append(
      f'| {r["variant"]} | {r["params"]:,} | {r["ms_per_step"]:.0f} | {r["steps"]} | '
      f'{r["exact_accuracy"]:.3f} | {r["blank_accuracy"]:.3f} | {r["paper"]:.1f} |'
    )
  return '\n'.join(lines)


def plan(base, names: list[str], minutes: float, time_steps: int, saved: dict) -> dict:
  """{variant: {'ms_per_step', 'steps'}}: `saved` entries as they are, the others timed now."""
  out = {}
  for name in names:
    if name in saved:
      out[name] = saved[name]
      continue
    cfg = config_lib.resolve(variant_config(base, name), 1.0)
    config_lib.validate(cfg)
    seconds = bench.seconds_per_step(cfg, time_steps)
    out[name] = dict(ms_per_step=seconds * 1e3, steps=max(2, math.floor(minutes * 60 / seconds)))
    print(f'timed: {name} {seconds * 1e3:.0f} ms/step -> {out[name]["steps"]} steps', flush=True)
  return out


def main(argv) -> None:
  del argv
  unknown = [v for v in FLAGS.variants if v not in PAPER]
  if unknown:
    raise config_lib.ConfigError(f'unknown variants {unknown}; choose from {", ".join(VARIANTS)}')
  os.makedirs(FLAGS.workdir, exist_ok=True)
  plan_path = os.path.join(FLAGS.workdir, 'ablation.json')
  saved = json.load(open(plan_path)) if os.path.exists(plan_path) else {}
  steps = plan(FLAGS.config, FLAGS.variants, FLAGS.minutes, FLAGS.time_steps, saved)
  with open(plan_path, 'w') as f:
    json.dump({**saved, **steps}, f, indent=1)
  # One dataset for all: built under the root, then named by path (a resumable field).
  data_dir = tasks.prepare_data(FLAGS.config, FLAGS.workdir)
  rows = []
  for name in FLAGS.variants:
    cfg = stretched(variant_config(FLAGS.config, name), steps[name]['steps'])
    cfg.data.path = data_dir
    workdir = os.path.join(FLAGS.workdir, name)
    record, _ = final_records(workdir)
    if record is None or record['step'] < cfg.train.steps:
      train.train_and_evaluate(cfg, workdir)
    record, meta = final_records(workdir)
    params = meta['num_params']
    row = dict(
      variant=name,
      params=params,
      **steps[name],
      exact_accuracy=record['exact_accuracy'],
      blank_accuracy=record.get('blank_accuracy', float('nan')),
      paper=PAPER[name],
    )
    rows.append(row)
    print('variant: ' + json.dumps(row), flush=True)
  text = table(rows)
  with open(os.path.join(FLAGS.workdir, 'ablation.md'), 'w') as f:
    f.write(text + '\n')
  print(text)


def cli() -> None:
  cli_lib.run(main, define_flags)


if __name__ == '__main__':
  cli()
