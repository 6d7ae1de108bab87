"""Progress lines for long phases (building data, evaluating): `<label> i/n`, at most every
EVERY_S seconds, as plain lines that a log file or CI keeps parseable."""

from __future__ import annotations

import time

EVERY_S = 10.0


class Progress:
  """Prints `<label> <done>/<total>` from `update` when EVERY_S seconds have passed since the
  start or the last line; silent when not `enabled` (other processes than 0)."""

  def __init__(self, label: str, total: int, enabled: bool = True, every_s: float = EVERY_S):
    self.label, self.total, self.enabled, self.every_s = label, total, enabled, every_s
    self._shown = time.monotonic()

  def update(self, done: int) -> None:
    """Reports that `done` of `total` items are finished (printed only when it is time)."""
    if self.enabled and time.monotonic() - self._shown >= self.every_s:
      print(f'{self.label} {done}/{self.total}', flush=True)
      self._shown = time.monotonic()
