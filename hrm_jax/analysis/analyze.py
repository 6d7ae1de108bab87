r"""Analyses of a trained workdir: `python -m hrm_jax.analyze --workdir=DIR --out=DIR2 [--config=F]`
(or `python -m hrm_jax.analysis ...`).

Runs on the latest checkpoint in --workdir (the EMA weights when the run kept them) and writes
PNGs to --out, printing every figure as a `name: value` line:

  residuals    residuals.png; residual_h_last, residual_l_last, residual_baseline_l_last
  pr           participation.png; pr_h, pr_l, pr_h_random, pr_l_random, pr_num_samples
  scaling      scaling.png; scaling_m<M>_exact_accuracy, _blank_accuracy, _steps, and the
               Q-halting variant scaling_qhalt_m<M>_exact_accuracy, scaling_qhalt_m<M>_steps
  predictions  predictions.png: the first test example decoded after each segment
  curves       training_curves.png from <workdir>/metrics.jsonl

`--only=pr,scaling` picks analyses. The model is the one of the config the run saved in
`<workdir>/config.json`; `--config` (with the training overrides) replaces it, and is needed
for workdirs trained before runs saved their config.
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Optional, Sequence

from absl import flags
from etils import epath
from ml_collections import config_flags

from hrm_jax import cli as cli_lib
from hrm_jax import tasks
from hrm_jax.analysis import measures, plots
from hrm_jax.analysis import rollout as rollout_lib

ANALYSES = ('residuals', 'pr', 'scaling', 'predictions', 'curves')
PR_CURVE_SIZES = (8, 16, 32, 64, 128, 256, 512, 1024)
FLAGS = flags.FLAGS


def define_flags() -> None:
  """The command's flags (defined only when it runs, see `hrm_jax.cli`)."""
  config_flags.DEFINE_config_file(
    'config', None, 'The training config file[:preset].', lock_config=True
  )
  flags.DEFINE_string('workdir', None, 'Training workdir with checkpoints.')
  flags.DEFINE_string('out', None, 'Directory for the PNGs and analysis.json.')
  flags.DEFINE_list('only', list(ANALYSES), f'Analyses to run, of {ANALYSES}.')
  flags.DEFINE_list(
    'scaling_m', [str(m) for m in measures.SCALING_M], 'M_max values of the scaling sweep.'
  )
  flags.DEFINE_integer(
    'segments', 0, 'Segments M of the residual/PR rollouts; 0: eval.halt_max_steps.'
  )
  flags.DEFINE_integer('pr_examples', 512, 'Test puzzles whose states PR uses.')
  flags.DEFINE_integer('residual_examples', 64, 'Test puzzles for the residuals.')
  flags.DEFINE_integer('scaling_examples', 0, 'Test puzzles for the scaling sweep; 0: all.')
  flags.DEFINE_string('eval_data', None, 'Dataset folder whose test split to use.')
  flags.mark_flags_as_required(['workdir', 'out'])


def run(
  loaded: rollout_lib.Loaded,
  out: str,
  only: Sequence[str] = ANALYSES,
  *,
  scaling_m: Sequence[int] = measures.SCALING_M,
  segments: int = 0,
  pr_examples: int = 512,
  residual_examples: int = 64,
  scaling_examples: int = 0,
  eval_data: Optional[str] = None,
) -> dict:
  """Runs the `only` analyses on `loaded`, writes their PNGs under `out` (a local folder or a
  bucket) and returns {'figures': {name: float}, 'pngs': {analysis: path}, plus each
  analysis's raw result}."""
  unknown = set(only) - set(ANALYSES)
  if unknown:
    raise ValueError(f'unknown analyses {sorted(unknown)}; choose from {ANALYSES}')
  if '://' in str(out):  # drawn locally (matplotlib writes files), then copied to the bucket
    with tempfile.TemporaryDirectory() as tmp:
      result = run(
        loaded,
        tmp,
        only,
        scaling_m=scaling_m,
        segments=segments,
        pr_examples=pr_examples,
        residual_examples=residual_examples,
        scaling_examples=scaling_examples,
        eval_data=eval_data,
      )
      epath.Path(out).mkdir(parents=True, exist_ok=True)
      for name in os.listdir(tmp):
        (epath.Path(out) / name).write_bytes(epath.Path(tmp, name).read_bytes())
    result['pngs'] = {
      k: str(epath.Path(out) / os.path.basename(v)) for k, v in result['pngs'].items()
    }
    return result
  os.makedirs(out, exist_ok=True)
  M = segments or loaded.cfg.eval.halt_max_steps
  batches = lambda n, b=0: rollout_lib.eval_batches(loaded, n, b, eval_data)  # noqa: E731
  figures: dict[str, float] = {}
  pngs: dict[str, str] = {}
  result: dict = {'figures': figures, 'pngs': pngs, 'step': loaded.step}
  if 'residuals' in only:
    res = measures.forward_residuals(loaded, next(batches(residual_examples)), M)
    figures.update(measures.residual_summary(res))
    pngs['residuals'] = plots.residuals(
      os.path.join(out, 'residuals.png'), res, f'Forward residuals (step {loaded.step})'
    )
    result['residuals'] = res
  if 'pr' in only:
    fresh = rollout_lib.random_init(loaded)
    sizes = [n for n in PR_CURVE_SIZES if n < pr_examples] + [pr_examples]
    trained = measures.participation_ratios(loaded, batches(pr_examples), M, sizes)
    random = measures.participation_ratios(fresh, batches(pr_examples), M, sizes)
    figures.update(
      pr_h=trained['pr_h'],
      pr_l=trained['pr_l'],
      pr_h_random=random['pr_h'],
      pr_l_random=random['pr_l'],
      pr_num_samples=float(trained['num_samples']),
    )
    paper = tasks.get(loaded.cfg.data.name).PAPER_PR
    pngs['pr'] = plots.participation(os.path.join(out, 'participation.png'), trained, random, paper)
    result['pr'] = dict(trained=trained, random=random)
  if 'scaling' in only:
    table = measures.scaling(loaded, batches(scaling_examples), scaling_m)
    for m, row in table.items():
      figures[f'scaling_m{m}_exact_accuracy'] = row['exact_accuracy']
      figures[f'scaling_m{m}_blank_accuracy'] = row['blank_accuracy']
      figures[f'scaling_m{m}_steps'] = row['steps']
      figures[f'scaling_qhalt_m{m}_exact_accuracy'] = row['qhalt_exact_accuracy']
      figures[f'scaling_qhalt_m{m}_steps'] = row['qhalt_steps']
    pngs['scaling'] = plots.scaling(os.path.join(out, 'scaling.png'), table)
    result['scaling'] = table
  if 'predictions' in only:
    # The residuals' batch shape, so that the compiled rollout is reused.
    batch = next(batches(residual_examples))
    traj = rollout_lib.rollout(loaded, batch, M, keep='none')
    pngs['predictions'] = tasks.get(loaded.cfg.data.name).draw(
      os.path.join(out, 'predictions.png'),
      batch['inputs'][0],
      batch['labels'][0],
      traj.preds[:, 0],
    )
  metrics_path = os.path.join(loaded.workdir, 'metrics.jsonl')
  if 'curves' in only and epath.Path(metrics_path).exists():
    pngs['curves'] = plots.training_curves(os.path.join(out, 'training_curves.png'), metrics_path)
  with open(os.path.join(out, 'analysis.json'), 'w') as f:
    json.dump(dict(step=loaded.step, figures=figures, pngs=pngs), f, indent=1)
  return result


def main(argv) -> None:
  del argv
  loaded = rollout_lib.load(FLAGS.workdir, FLAGS.config)
  result = run(
    loaded,
    FLAGS.out,
    FLAGS.only,
    scaling_m=[int(m) for m in FLAGS.scaling_m],
    segments=FLAGS.segments,
    pr_examples=FLAGS.pr_examples,
    residual_examples=FLAGS.residual_examples,
    scaling_examples=FLAGS.scaling_examples,
    eval_data=FLAGS.eval_data,
  )
  print(f'step: {loaded.step}')
  for name, value in result['figures'].items():
    print(f'{name}: {value:.6g}')
  for name, path in result['pngs'].items():
    print(f'png_{name}: {path}', flush=True)


def cli() -> None:
  # ValueError: an unknown analysis name or a bad --scaling_m value.
  cli_lib.run(main, define_flags, errors=(ValueError,))


if __name__ == '__main__':
  cli()
