"""Training and evaluation metrics: read from the devices late, checked, printed and written.

The loop hands each step's metric arrays to `TrainLog.add` right after dispatching the step; they
are fetched only when a later step is already queued (`poll`), so the host never waits on the
device inside the loop. Every fetched step is checked for a non-finite loss or gradient, which
stops the run with its step number (`Divergence`). Records go to `<workdir>/metrics.jsonl`, the
console (the contract's `train step=...` lines), TensorBoard (`<workdir>/tensorboard`) and,
with log.wandb on, Weights & Biases.
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Optional

import jax
from etils import epath

from hrm_jax import losses

# Per-step values, not sums over the batch: `lr` is reported as its last value in an interval,
# `grad_norm` as the mean, `nonfinite` as the count of dropped steps.
PER_STEP = ('lr', 'grad_norm', 'nonfinite')


class Divergence(FloatingPointError):
  """A training step produced a non-finite loss or gradient."""

  def __init__(self, step: int, values: dict):
    super().__init__(
      f'non-finite loss or gradient at step {step} '
      f'(lm_loss={values.get("lm_loss")}, grad_norm={values.get("grad_norm")}); '
      'the last checkpoint before it is kept. Lower opt.lr, or set train.skip_nonfinite=True '
      'to drop such steps.'
    )
    self.step = step


def fmt(d: dict) -> str:
  """`k=v` pairs, floats to 4 significant digits: the console's progress lines."""
  return ' '.join(f'{k}={v:.4g}' if isinstance(v, float) else f'{k}={v}' for k, v in d.items())


class Writer:
  """Appends records to metrics.jsonl and TensorBoard scalars, on process 0 only.

  `workdir` may be a bucket (`gs://...`): files go through `etils.epath`; as objects in a bucket
  cannot be appended to, there the whole file is rewritten at each record (records come once
  per log interval, so this stays small)."""

  def __init__(self, workdir: str, tensorboard: bool = True, wandb: Optional[dict] = None):
    """`wandb`: `wandb_init`'s keywords (project, name, config) to also send the records to
    Weights & Biases; None: off."""
    self.path = epath.Path(workdir) / 'metrics.jsonl'
    self.active = jax.process_index() == 0
    self.append = '://' not in str(workdir)  # a local file; a bucket object is rewritten
    self.lines: Optional[list[str]] = None  # the file's lines, kept when it is rewritten
    self.tb = None
    if self.active:
      epath.Path(workdir).mkdir(parents=True, exist_ok=True)
    if tensorboard and self.active:
      from tensorboardX import SummaryWriter  # imported here: only the writer needs it

      self.tb = SummaryWriter(str(epath.Path(workdir) / 'tensorboard'), flush_secs=30)
    self.wandb = wandb_init(workdir, **wandb) if wandb is not None and self.active else None

  def _read(self) -> list[str]:
    return self.path.read_text().splitlines(keepends=True) if self.path.exists() else []

  def truncate(self, step: int) -> None:
    """Drops the records after `step`: a run resumed from a checkpoint at `step` rewrites them,
    so the log reads as one uninterrupted run."""
    if not self.active or not self.path.exists():
      return
    kept = []
    for line in self._read():
      try:
        if json.loads(line)['step'] <= step:
          kept.append(line)
      except (ValueError, KeyError, TypeError):
        continue  # a line cut short by a kill mid-write
    if self.append:  # a local file: atomic, a kill leaves the old or the new one
      tmp = self.path.parent / (self.path.name + '.tmp')
      tmp.write_text(''.join(kept))
      tmp.replace(self.path)
    else:  # an object write is atomic by itself
      self.path.write_text(''.join(kept))
    self.lines = kept

  def has(self, step: int, split: str) -> bool:
    """Whether metrics.jsonl holds a `split` record at `step` (False off process 0)."""
    if not self.active:
      return False
    # A local file is appended to without keeping `lines`; a bucket object's are kept current.
    for line in self._read() if self.append or self.lines is None else self.lines:
      try:
        r = json.loads(line)
      except ValueError:
        continue  # a line cut short by a kill mid-write
      if isinstance(r, dict) and r.get('step') == step and r.get('split') == split:
        return True
    return False

  def write(self, record: dict) -> None:
    """One record {'step', 'split', metric: value, ...}: a JSON line, and `split/metric` scalars."""
    if not self.active:
      return
    line = json.dumps(record) + '\n'
    if self.append:
      with self.path.open('a') as f:
        f.write(line)
    else:
      if self.lines is None:
        self.lines = self._read()
      self.lines.append(line)
      self.path.write_text(''.join(self.lines))
    if self.tb is not None and record.get('split') in ('train', 'eval'):
      for k, v in record.items():
        if k not in ('step', 'split') and isinstance(v, (int, float)):
          self.tb.add_scalar(f'{record["split"]}/{k}', v, record['step'])
    if self.wandb is not None and record['step'] >= self.wandb.starting_step:  # not yet sent
      numbers = {k: v for k, v in record.items() if isinstance(v, (int, float))}
      numbers.pop('step')
      self.wandb.log({f'{record["split"]}/{k}': v for k, v in numbers.items()}, step=record['step'])

  def image(self, tag: str, step: int, image_HxWx3) -> None:
    """A uint8 RGB image [H, W, 3] under `tag` in TensorBoard (e.g. predictions)."""
    if self.tb is not None:
      self.tb.add_image(tag, image_HxWx3, step, dataformats='HWC')
    if self.wandb is not None and step >= self.wandb.starting_step:
      import wandb

      self.wandb.log({tag: wandb.Image(image_HxWx3)}, step=step)

  def close(self) -> None:
    """Flushes and closes TensorBoard's file and the W&B run."""
    if self.tb is not None:
      self.tb.close()
    if self.wandb is not None:
      self.wandb.finish()
      self.wandb = None


def wandb_settings(cfg) -> Optional[dict]:
  """`Writer`'s `wandb` keywords from config `cfg` (its log.wandb* fields; the whole config is
  the run's W&B config), or None when log.wandb is off."""
  if not cfg.log.get('wandb'):
    return None
  return dict(project=cfg.log.wandb_project, name=cfg.log.wandb_run_name, config=cfg.to_dict())


def wandb_init(workdir: str, project: str, name: str = '', config: Optional[dict] = None):
  """The W&B run of `workdir` (a `wandb.Run`): its id is kept in `<workdir>/wandb_id`, so a
  resumed training run continues the same W&B run. Its local files go to `<workdir>/wandb` (a
  bucket workdir: to W&B's default, `$WANDB_DIR` or the current directory). `WANDB_MODE=offline`
  keeps it off the network (`wandb sync` uploads it later)."""
  import wandb  # only when W&B logging is on (config.validate checked it is installed)

  id_path = epath.Path(workdir) / 'wandb_id'
  if id_path.exists():
    run_id = id_path.read_text().strip()
  else:
    run_id = secrets.token_hex(6)  # W&B ids: letters and digits
    id_path.write_text(run_id + '\n')
  local = '://' not in str(workdir)
  return wandb.init(
    project=project,
    name=name or None,
    config=config,
    dir=str(workdir) if local else None,
    id=run_id,
    resume='allow',
  )


def _hms(seconds: float) -> str:
  """`h:mm:ss` of a duration in seconds."""
  s = int(round(seconds))
  return f'{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}'


class TrainLog:
  """Accumulates per-step training metrics into `log_every`-step records (see module doc).

  The open interval's running sums are part of a checkpoint (`state()` / `restore()`), so a
  resumed run writes the same records as an uninterrupted one.
  """

  def __init__(
    self, writer: Writer, global_batch_size: int, log_every: int, shown: tuple, skip_nonfinite: bool
  ):
    self.writer, self.batch, self.log_every = writer, global_batch_size, log_every
    self.shown, self.skip_nonfinite = shown, skip_nonfinite
    self.queued: list[tuple[int, dict]] = []  # (step, device metrics) not yet fetched
    self.sums: dict[str, float] = {}
    self.steps_in_interval = 0
    self.tick, self.tick_step = time.time(), 0
    self.total: Optional[int] = None  # the run's last step: the progress line's `N/total`, ETA

  def start(self, step: int) -> None:
    """Starts timing at `step` (the first step of this process)."""
    self.tick, self.tick_step = time.time(), step

  def add(self, step: int, metrics: dict) -> None:
    """Queues step `step`'s device metrics; fetches the ones before it (they are done or
    about to be, while `step` is queued on the device)."""
    self.queued.append((step, metrics))
    if len(self.queued) > 1:
      self._fetch(self.queued[:-1])
      self.queued = self.queued[-1:]

  def flush(self) -> None:
    """Fetches everything queued (waits for the device): before a checkpoint, eval or exit."""
    self._fetch(self.queued)
    self.queued = []

  def _fetch(self, items: list) -> None:
    for step, values in jax.device_get(items):
      values = {k: float(v) for k, v in values.items()}
      if values['nonfinite'] and not self.skip_nonfinite:
        raise Divergence(step, values)
      for k, v in values.items():  # sequential float64 sums: identical across resumes
        self.sums[k] = self.sums.get(k, 0.0) + v
      self.steps_in_interval += 1
      self.sums['lr'] = values['lr']
      if step % self.log_every == 0:
        self._report(step)

  def _report(self, step: int) -> None:
    sums, n = dict(self.sums), self.steps_in_interval
    per_step = {k: sums.pop(k) for k in PER_STEP}
    m = losses.normalize_metrics(sums, self.batch * n)
    m.update(lr=per_step['lr'], grad_norm=per_step['grad_norm'] / n)
    m['nonfinite'] = per_step['nonfinite']
    now = time.time()
    m['steps_per_s'] = (step - self.tick_step) / max(now - self.tick, 1e-9)
    self.tick, self.tick_step = now, step
    line = 'train ' + fmt(dict(step=step, **{k: m[k] for k in self.shown}))
    if self.total:  # progress and the time left at this interval's pace (evaluations aside)
      eta = (self.total - step) / max(m['steps_per_s'], 1e-9)
      line += f' progress={step}/{self.total} eta={_hms(eta)}'
    print(line, flush=True)
    self.writer.write(dict(step=step, split='train', **m))
    self.sums, self.steps_in_interval = {}, 0

  def finish(self, step: int) -> None:
    """Flushes and writes the last, possibly partial, interval ending at `step`."""
    self.flush()
    if self.steps_in_interval:
      self._report(step)

  def state(self) -> dict:
    """The open interval (call after `flush`): JSON-able, saved with each checkpoint."""
    assert not self.queued, 'flush() before state()'
    return dict(sums=dict(self.sums), steps_in_interval=self.steps_in_interval)

  def restore(self, state: Optional[dict]) -> None:
    """Continues the open interval of a checkpoint's `state()`."""
    if state:
      self.sums = {k: float(v) for k, v in state['sums'].items()}
      self.steps_in_interval = int(state['steps_in_interval'])
