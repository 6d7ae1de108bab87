"""Two processes on localhost (CPU collectives over gloo, the coordinator on loopback) train
like one: each loads only its half of every global batch, and the run's records, parameters
and checkpoint match the single-process run's. Each process has 2 fake CPU devices, so the
mesh spans 4 devices on 2 hosts. Bounded in time; the processes are always killed."""

import os
import signal
import socket
import subprocess

from tests import helpers

TIMEOUT_S = 240


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


def test_two_processes_match_one(one_device_main_run, tmp_path):
  workdir = str(tmp_path / 'two_hosts')
  address = f'localhost:{_free_port()}'
  procs, logs = [], []
  try:
    for pid in range(2):
      log = open(tmp_path / f'process_{pid}.log', 'w+')
      logs.append(log)
      procs.append(
        subprocess.Popen(
          helpers.main_command(
            *helpers.TINY_MAIN_FLAGS,
            f'--workdir={workdir}',
            '--distributed',
            f'--coordinator_address={address}',
            '--num_processes=2',
            f'--process_id={pid}',
          ),
          cwd=helpers.ROOT,
          env=helpers.main_env(devices=2),
          stdout=log,
          stderr=subprocess.STDOUT,
          start_new_session=True,  # its own process group, killed as a whole below
        )
      )
    codes = [p.wait(timeout=TIMEOUT_S) for p in procs]
  finally:
    for p in procs:
      if p.poll() is None:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
  outputs = []
  for log in logs:
    log.seek(0)
    outputs.append(log.read())
    log.close()
  assert codes == [0, 0], '\n'.join(outputs)
  assert 'devices=4 processes=2' in outputs[0], outputs[0]
  assert 'eval step=6' in outputs[0]
  helpers.assert_same_run(one_device_main_run, workdir, rtol=1e-4, atol=1e-5)
