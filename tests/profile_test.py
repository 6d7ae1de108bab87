"""`--profile_steps=A:B`: a JAX profiler trace of training steps A..B under <workdir>/profile."""

import pytest

from hrm_jax import config, evaluate, main, train
from tests import helpers


def test_profile_steps_writes_a_trace(tmp_path, capsys, monkeypatch):
  cfg = helpers.tiny_config()
  cfg.train.update(steps=4, eval_every=4)
  cfg.log.tensorboard = False
  monkeypatch.setattr(evaluate, 'run_eval', lambda *a, **k: {})  # the training steps only
  monkeypatch.setattr(evaluate, 'report', lambda *a, **k: None)
  train.train_and_evaluate(cfg, str(tmp_path), profile_steps=(2, 3))
  traces = list((tmp_path / 'profile').rglob('*.xplane.pb'))
  assert len(traces) == 1 and traces[0].stat().st_size > 0, traces
  assert f'profile of steps 2..3 written to {tmp_path}/profile' in capsys.readouterr().out


@pytest.mark.parametrize('text', ['3', '2:x', '0:3', '3:2', '1:2:3'])
def test_bad_profile_steps_is_a_config_error(text):
  with pytest.raises(config.ConfigError, match='profile_steps: want A:B'):
    main.parse_profile_steps(text)


def test_profile_steps_parse():
  assert main.parse_profile_steps(None) is None
  assert main.parse_profile_steps('5:5') == (5, 5)
  assert main.parse_profile_steps('2:10') == (2, 10)
  with pytest.raises(config.ConfigError, match='profile_steps'):
    train.train_and_evaluate(helpers.tiny_config(), '/nonexistent', profile_steps=(0, 1))
