"""Devices, mesh and shardings: one `data` axis over every device of every host.

We use `jax.jit` with `NamedSharding` over a `Mesh` rather than `pmap`: one code path for 1 CPU,
fake CPU devices, a GPU box or a TPU pod; global arrays whose semantics (sums over the global
batch, spec §5.4) do not depend on the device count; and per-array layouts (a replicated model
beside a row-sharded puzzle table) that `pmap`'s one-axis-per-device model cannot express.
`pmap` has been in maintenance mode since JAX 0.8.
"""

from __future__ import annotations

import math
import queue
import threading
from typing import Iterator, Optional, Sequence

import jax
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

# The puzzle table's rows are padded to a multiple of this (times the device count when it
# does not divide it) when sharded, so one checkpoint restores on any power-of-two device count
# up to 1024. 1023 spare rows of 512 fp32 are 2 MiB.
TABLE_ROW_MULTIPLE = 1024


def initialize_distributed(
  coordinator_address: Optional[str] = None,
  num_processes: Optional[int] = None,
  process_id: Optional[int] = None,
) -> None:
  """Starts JAX's distributed runtime (multi-host TPU pods, GPU clusters, localhost CPU tests).

  With no arguments JAX finds the cluster itself (TPU VM metadata, SLURM, Open MPI); give all
  three for a hand-made cluster, e.g. two processes on localhost. CPU processes exchange
  collectives over gloo, JAX's default CPU collectives.
  """
  jax.distributed.initialize(
    coordinator_address=coordinator_address, num_processes=num_processes, process_id=process_id
  )


def table_rows(num_puzzle_identifiers: int, num_devices: int, shard: bool) -> int:
  """Rows of the puzzle-embedding table: the id count, padded when the table is sharded.

  The padding rows are never looked up (ids lie in [0, num_puzzle_identifiers)).
  """
  if not shard:
    return num_puzzle_identifiers
  multiple = math.lcm(TABLE_ROW_MULTIPLE, num_devices)
  return -(-num_puzzle_identifiers // multiple) * multiple


class Mesh:
  """The device mesh (axis `data` over `devices`, default all of them) and its shardings.

  Parameters, optimizer state and EMA are replicated; the batch and the ACT carry are split
  along their leading (batch) axis; the puzzle table [V, E] is replicated, or split along V
  when `shard_puzzle_emb` (ARC's ~876k-row table is 1.8 GB fp32: 1.8/n GB per device then).
  """

  def __init__(
    self, devices: Optional[Sequence[jax.Device]] = None, shard_puzzle_emb: bool = False
  ):
    devices = list(jax.devices() if devices is None else devices)
    # Auto axes: XLA propagates shardings from the annotated inputs (recent JAX defaults to
    # Explicit axes, whose typed shardings would need annotating every gather in the model).
    self.mesh = jax.make_mesh(
      (len(devices),), ('data',), axis_types=(jax.sharding.AxisType.Auto,), devices=devices
    )
    self.num_devices = len(devices)
    self.shard_puzzle_emb = shard_puzzle_emb
    self.replicated = NamedSharding(self.mesh, P())
    self.batch = NamedSharding(self.mesh, P('data'))
    self.table = NamedSharding(self.mesh, P('data', None) if shard_puzzle_emb else P())

  def global_batch(self, local: dict) -> dict:
    """This process's rows of the batch (numpy) -> global jax arrays sharded on `data`.

    Each host passes only its slice (loader batches of global_batch_size // process_count rows).
    """
    return {
      k: jax.make_array_from_process_local_data(self.batch, np.asarray(v)) for k, v in local.items()
    }

  def carry_sharding(self, carry):
    """The ACT carry's shardings: every field split on its leading (batch) axis."""
    return jax.tree.map(lambda _: self.batch, carry)

  def state_sharding(self, state):
    """The TrainState's shardings: replicated, but for the puzzle table (`self.table`)."""
    shardings = jax.tree.map(lambda _: self.replicated, state)
    return shardings.replace(puzzle_emb=self.table)

  def table_rows(self, num_puzzle_identifiers: int) -> int:
    """Rows of the puzzle table on this mesh (see `table_rows`)."""
    return table_rows(num_puzzle_identifiers, self.num_devices, self.shard_puzzle_emb)


def prefetch(batches: Iterator[dict], mesh: Mesh, size: int = 2) -> Iterator[dict]:
  """Yields `mesh.global_batch(b)` for each b of `batches`, built `size` batches ahead.

  A background thread gathers host batches (memory-mapped reads) and starts their transfer to
  the devices while the current step runs, so the loop never waits on input. The thread ends
  when the consumer closes the iterator (or it is collected); its exceptions are re-raised here.
  """
  if size <= 0:
    yield from (mesh.global_batch(b) for b in batches)
    return
  q: queue.Queue = queue.Queue(maxsize=size)
  stop = threading.Event()
  done = object()

  def put(item) -> bool:
    while not stop.is_set():
      try:
        q.put(item, timeout=0.1)
        return True
      except queue.Full:
        continue
    return False  # the consumer has gone

  def produce():
    try:
      for b in batches:
        if not put(mesh.global_batch(b)):
          return
      put(done)
    except BaseException as e:  # handed to the consumer, which re-raises it
      put(e)

  thread = threading.Thread(target=produce, daemon=True, name='prefetch')
  thread.start()
  try:
    while True:
      item = q.get()
      if item is done:
        return
      if isinstance(item, BaseException):
        raise item
      yield item
  finally:
    stop.set()
    # Joined, not abandoned: a daemon thread still inside JAX at interpreter exit aborts it.
    thread.join()
