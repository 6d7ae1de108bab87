r"""hrm_jax's train step beside the PyTorch originals', in one run: prints a Markdown table.

  python -m hrm_jax.tools.side_by_side --hrm_repo=PATH --trm_repo=PATH \
      [--rows=hrm:sudoku:32,trm_att:sudoku:32,trm_mlp:sudoku:32,hrm:maze:8] [--steps=3] \
      [--compile] [--repeats=1]

Each row runs, one after the other and each in a fresh process, `python -m hrm_jax.bench` (the
full ACT train step, random valid batches, `--dtype=float32`: the paper presets compute in bf16,
the original here in fp32) and `python -m hrm_jax.tools.torch_bench` (the
original's unmodified model code, eagerly, and with --compile also under `torch.compile`), with
the same config, batch and number of timed steps; with --repeats=R the processes alternate R
times and each keeps its best mean. So both codebases meet the same machine state, and the table
says which machine it was: the CPU model and vector extensions, the versions, and the fastest
GEMM on it (`hrm_jax.tools.gemm_peak`), against which `utilisation` is measured: hrm_jax's, and
the original's from the same matmul FLOPs (the architectures are the same) over its step time.

Row names: model:task:batch with model in hrm, trm_att, trm_mlp and task in sudoku, maze.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from typing import Optional

# model:task -> (our config, the torch_bench --model, which repo flag)
ROWS = {
  'hrm:sudoku': ('experiments/sudoku.py', 'hrm', 'hrm_repo'),
  'trm_att:sudoku': ('experiments/sudoku.py:trm_att', 'trm', 'trm_repo'),
  'trm_mlp:sudoku': ('experiments/sudoku.py:trm_mlp', 'trm_mlp', 'trm_repo'),
  'hrm:maze': ('experiments/maze.py', 'hrm', 'hrm_repo'),
  'trm_att:maze': ('experiments/maze.py:trm', 'trm', 'trm_repo'),
}
NAMES = {'hrm': 'HRM', 'trm_att': 'TRM-Att', 'trm_mlp': 'TRM-MLP', 'sudoku': 'Sudoku'}
DEFAULT_ROWS = 'hrm:sudoku:32,trm_att:sudoku:32,trm_mlp:sudoku:32,hrm:maze:8'


@dataclasses.dataclass(frozen=True)
class Row:
  """One table row: `model` (hrm, trm_att, trm_mlp) on `task` (sudoku, maze) at `batch`."""

  model: str
  task: str
  batch: int

  @property
  def label(self) -> str:
    task = NAMES.get(self.task, 'Maze 30×30')
    return f'{NAMES[self.model]} | {task} | {self.batch}'


def parse_rows(text: str) -> list[Row]:
  """'hrm:sudoku:32,...' -> rows; ValueError naming a bad entry and the known model:task pairs."""
  rows = []
  for entry in filter(None, text.split(',')):
    parts = entry.split(':')
    if len(parts) != 3 or ':'.join(parts[:2]) not in ROWS or not parts[2].isdigit():
      raise ValueError(
        f'--rows: {entry!r} is not model:task:batch with model:task one of {sorted(ROWS)}'
      )
    rows.append(Row(parts[0], parts[1], int(parts[2])))
  if not rows:
    raise ValueError('--rows: no rows given')
  return rows


def parse_lines(text: str) -> dict[str, str]:
  """The `name: value` lines a benchmark prints, as a dict."""
  return dict(line.split(': ', 1) for line in text.splitlines() if ': ' in line)


def run_bench(args: list[str], timeout: Optional[float] = None) -> dict[str, str]:
  """Runs `python -m <args>` and returns its `name: value` lines; RuntimeError with its output
  when it fails."""
  r = subprocess.run([sys.executable, '-m', *args], capture_output=True, text=True, timeout=timeout)
  if r.returncode != 0:
    raise RuntimeError(f'{" ".join(args[:3])} ... failed:\n{r.stdout[-2000:]}{r.stderr[-4000:]}')
  return parse_lines(r.stdout)


def commands(row: Row, repos: dict[str, str], steps: int, compile_: bool) -> dict[str, list]:
  """The benchmark commands of one row: {'jax': [...], 'eager': [...], ('compiled': [...])}."""
  config, torch_model, repo_flag = ROWS[f'{row.model}:{row.task}']
  if not repos.get(repo_flag):
    raise ValueError(f'row {row.model}:{row.task} needs --{repo_flag}')
  torch = [
    'hrm_jax.tools.torch_bench',
    f'--repo={repos[repo_flag]}',
    f'--model={torch_model}',
    f'--config={config}',
    f'--batch={row.batch}',
    f'--steps={steps}',
  ]
  # fp32 on both sides: the paper presets' bf16 is the original's forward_dtype on GPUs, but
  # torch_bench runs it in fp32, and on a CPU without bf16 units bf16 only adds conversions.
  jax_ = ['hrm_jax.bench', f'--config={config}', f'--batch={row.batch}', f'--steps={steps}']
  out = {
    'jax': [*jax_, '--dtype=float32'],
    'eager': torch,
  }
  if compile_:
    out['compiled'] = [*torch, '--compile']
  return out


def measure(row: Row, repos: dict[str, str], steps: int, compile_: bool, repeats: int) -> dict:
  """{'jax' | 'eager' | 'compiled': the run with the lowest step_ms}, the codebases alternating
  `repeats` times."""
  best: dict = {}
  for _ in range(repeats):
    for name, args in commands(row, repos, steps, compile_).items():
      out = run_bench(args)
      if name not in best or float(out['step_ms']) < float(best[name]['step_ms']):
        best[name] = out
  return best


def utilisation(jax_run: dict, step_ms: float) -> float:
  """The share of the machine's fastest GEMM that a step of `step_ms` reaches with the matmul
  FLOPs hrm_jax's benchmark `jax_run` counted (the same for the original: same architecture)."""
  gflops_per_s = float(jax_run['gflops_per_step']) / (step_ms / 1e3)
  return gflops_per_s / float(jax_run['peak_gflops_per_s'])


def table_row(row: Row, m: dict) -> str:
  """One Markdown row: ms/step and examples/s of both, speed-ups, utilisation, peak RSS."""
  jax_ms, eager_ms = float(m['jax']['step_ms']), float(m['eager']['step_ms'])
  if m['jax'].get('dtype') != 'float32':  # the original runs in fp32: so must we, to compare
    raise RuntimeError(f'hrm_jax.bench ran in {m["jax"].get("dtype")}, not float32')
  cells = [
    row.label,
    f'{jax_ms:,.0f}',
    f'{float(m["jax"]["examples_per_s"]):.2f}',
    m['jax']['utilisation'],
    m['jax']['peak_rss_mb'],
    f'{eager_ms:,.0f}',
    f'{utilisation(m["jax"], eager_ms):.3f}',
    m['eager']['peak_rss_mb'],
    f'{eager_ms / jax_ms:.2f}×',
  ]
  if 'compiled' in m:
    compiled_ms = float(m['compiled']['step_ms'])
    cells += [f'{compiled_ms:,.0f}', f'{compiled_ms / jax_ms:.2f}×']
  return '| ' + ' | '.join(cells) + ' |'


def header(compile_: bool) -> str:
  """The table's Markdown header."""
  cols = [
    'model',
    'task',
    'batch',
    'hrm_jax ms/step',
    'examples/s',
    'utilisation',
    'peak RSS MiB',
    'original eager ms/step',
    'utilisation',
    'peak RSS MiB',
    'speed-up',
  ]
  if compile_:
    cols += ['original compiled ms/step', 'speed-up vs compiled']
  return '| ' + ' | '.join(cols) + ' |\n|' + '---|' * 3 + '---:|' * (len(cols) - 3)


def define_flags() -> None:
  """The command's flags (defined only when it runs, see `hrm_jax.cli`)."""
  from absl import flags

  flags.DEFINE_string('hrm_repo', '', 'Checkout of sapientinc/HRM (rows with model hrm).')
  flags.DEFINE_string('trm_repo', '', 'Checkout of SamsungSAILMontreal/TinyRecursiveModels.')
  flags.DEFINE_string('rows', DEFAULT_ROWS, 'Rows, as model:task:batch,...')
  flags.DEFINE_integer('steps', 3, 'Timed steps per benchmark (after one warm-up step).')
  flags.DEFINE_integer('repeats', 1, 'Alternating runs per codebase; each keeps its best.')
  flags.DEFINE_bool('compile', False, 'Also time the original under torch.compile.')


def main(argv) -> None:
  """CLI: prints the machine, the command, then the table row by row as each is measured."""
  del argv
  from absl import flags

  from hrm_jax.tools import gemm_peak

  f = flags.FLAGS
  rows = parse_rows(f.rows)
  repos = dict(hrm_repo=f.hrm_repo, trm_repo=f.trm_repo)
  for row in rows:  # every row's repo is there before the first (long) measurement
    commands(row, repos, f.steps, f.compile)
  cpu = gemm_peak.cpu_info()
  print(f'cpu: {cpu["model"]}, {cpu["cores"]} cores; vector extensions: {cpu["isa"]}')
  print(f'command: python -m hrm_jax.tools.side_by_side {" ".join(sys.argv[1:])}', flush=True)
  for i, row in enumerate(rows):
    m = measure(row, repos, f.steps, f.compile, f.repeats)
    if i == 0:
      j = m['jax']
      print(f'fastest GEMM: {j["peak_gemm"]}, {j["peak_gflops_per_s"]} GFLOP/s ', end='')
      print(f'(XLA: {j["xla_peak_gflops_per_s"]}); hrm_jax on {j["device"]}')
      print(f'original: {m["eager"]["torch"]}, {m["eager"]["threads"]} threads')
      print(header(f.compile), flush=True)
    print(table_row(row, m), flush=True)


def cli() -> None:
  from hrm_jax import cli as cli_lib

  cli_lib.run(main, define_flags, errors=(ValueError, RuntimeError))


if __name__ == '__main__':
  cli()
