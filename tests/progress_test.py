"""Progress lines: printed when their interval has passed, silent before it and when disabled."""

from hrm_jax import progress


def test_progress_lines_respect_their_interval_and_process(capsys, monkeypatch):
  now = [100.0]
  monkeypatch.setattr(progress.time, 'monotonic', lambda: now[0])
  shown = progress.Progress('data: tasks written', 50, every_s=10.0)
  silent = progress.Progress('evaluating: batch', 50, enabled=False, every_s=10.0)
  for done in range(1, 30):
    now[0] += 1.0  # one item per second
    shown.update(done)
    silent.update(done)
  lines = capsys.readouterr().out.splitlines()
  assert lines == ['data: tasks written 10/50', 'data: tasks written 20/50'], lines
