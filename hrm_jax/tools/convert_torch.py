r"""Imports a PyTorch HRM/TRM checkpoint (sapientinc/HRM, SamsungSAILMontreal/TinyRecursiveModels).

  python -m hrm_jax.convert_torch --checkpoint=PATH --config=experiments/<task>.py[:preset] \
      --workdir=DIR
  python -m hrm_jax.main --config=<the same config> --workdir=DIR --mode=eval

PATH is a state dict written by the reference `pretrain.py` (`torch.save(model.state_dict())`,
files `step_<N>`), or `hf://<owner>/<repo>[/<file>]` for a Hugging Face model repo (file
default `checkpoint`, as in `sapientinc/HRM-checkpoint-sudoku-extreme`). The result is an
ordinary hrm_jax workdir: an orbax checkpoint of the train state and ACT carry at step N (0 when
the file name has no step) and `train_metadata.json`.

The mapping (spec §1, §11b, §12.2) works on plain `dict[str, np.ndarray]`; torch is imported only
to read `.pt` files. Reference keys may carry `_orig_mod.` (torch.compile) and `model.inner.` (the
loss head and ACT wrapper); both are stripped. Then, with hrm_jax's attribute paths equal to the
reference module names:

  <path>.kernel [in, out]            <-> <path>.weight [out, in]   (transposed)
  <path>.bias                        <-> <path>.bias
  embed_tokens.embedding [V, D]      <-> embed_tokens.embedding_weight
  embed_pos [P+L, D]                 <-> embed_pos.embedding_weight  (learned positions only)
  H_init, L_init [D] (buffers)       <-> H_init, L_init             (bf16 in the reference)
  L_init [n·D] (trm_multi_z)         <-> L1_init, ..., Ln_init      (trm_hier6.py, n = 6)
  puzzle table [ids, E]              <-> puzzle_emb.weights         (a buffer in the reference)

The fused projections need no reordering: `qkv_proj` is [q heads | k heads | v heads] and
`gate_up_proj` is [gate | up] in both codebases, so a transpose maps them exactly.
Every source tensor must be used exactly once and every target filled; otherwise
`ConversionError` lists each offending key. The number of heads and the cycle counts leave no
trace in the weights: when an `all_config.yaml` lies beside the checkpoint (the reference writes
one per run) its `arch` section is checked against the config as well.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any, Optional

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from etils import epath

from hrm_jax import checkpoint, tasks
from hrm_jax import config as config_lib
from hrm_jax import train_step as ts
from hrm_jax import workdir as workdir_lib
from hrm_jax.data import format as data_format
from hrm_jax.models import layers
from hrm_jax.models import model as model_lib

PREFIXES = ('_orig_mod.', 'model.', 'inner.')  # torch.compile, ACTLossHead, ACT wrapper
PUZZLE_KEY = 'puzzle_emb.weights'
HF_SCHEME = 'hf://'
HF_DEFAULT_FILE = 'checkpoint'


class ConversionError(ValueError):
  """The checkpoint cannot be converted; the message names each offending key or field."""


# ---------------------------------------------------------------------------------------------
# Key mapping


def _torch_key(path: tuple) -> tuple[str, bool]:
  """(reference key, transposed?) of an hrm_jax params/buffers leaf path."""
  names = [str(p.key if hasattr(p, 'key') else p.idx if hasattr(p, 'idx') else p) for p in path]
  if names == ['embed_pos']:
    return 'embed_pos.embedding_weight', False
  if names[-1] == 'kernel':
    return '.'.join(names[:-1] + ['weight']), True
  if names[-1] == 'embedding':
    return '.'.join(names[:-1] + ['embedding_weight']), False
  return '.'.join(names), False


def strip_prefixes(state_dict: Mapping[str, Any]) -> dict[str, Any]:
  """The state dict with `_orig_mod.`, `model.` and `inner.` removed from the front of each key.

  Raises ConversionError when two keys become one (e.g. the same tensor saved twice).
  """
  out: dict[str, Any] = {}
  for key, value in state_dict.items():
    short = key
    for prefix in PREFIXES:
      short = short.removeprefix(prefix)
    if short in out:
      raise ConversionError(f'key {short!r} appears twice in the checkpoint (with prefixes)')
    out[short] = value
  return out


def to_torch_state_dict(
  params: Any,
  buffers: Any,
  puzzle_emb: Optional[np.ndarray],
  prefix: str = '_orig_mod.model.inner.',
) -> dict[str, np.ndarray]:
  """hrm_jax arrays -> a state dict in the reference layout (fp32 numpy, torch shapes).

  params/buffers: the pure dicts of `TrainState`; puzzle_emb: the [ids, E] table, or None /
  width 0 when the model has no puzzle embedding. Keys get `prefix` (default: what the
  reference's compiled loss-head model writes). Linear kernels [in, out] become weights [out, in].
  """
  out = {}
  for tree in (params, buffers):
    for path, x in jax.tree_util.tree_leaves_with_path(tree):
      key, transpose = _torch_key(path)
      x = np.asarray(x, np.float32)
      out[prefix + key] = np.ascontiguousarray(x.T) if transpose else x
  latent = out.get(prefix + 'L_init')
  if latent is not None and latent.shape != np.shape(buffers['H_init']):
    del out[prefix + 'L_init']  # trm_multi_z: one initial vector per latent feature
    for i, part in enumerate(latent.reshape(-1, np.shape(buffers['H_init'])[0])):
      out[f'{prefix}L{i + 1}_init'] = part
  if puzzle_emb is not None and puzzle_emb.shape[-1] > 0:
    out[prefix + PUZZLE_KEY] = np.asarray(puzzle_emb, np.float32)
  return out


def from_torch_state_dict(
  state_dict: Mapping[str, Any], params: Any, buffers: Any, puzzle_emb: Any
) -> tuple[Any, Any, np.ndarray]:
  """A reference state dict -> (params, buffers, puzzle table) shaped like the given templates.

  The templates (arrays or ShapeDtypeStructs) fix the tree and every shape; values come from
  `state_dict` (prefixes stripped, weights transposed, cast to fp32 numpy). Raises one
  ConversionError listing every missing, unused (extra) and mis-shaped tensor.
  """
  sd = _join_latent_inits(strip_prefixes(state_dict))
  used: set[str] = set()
  problems: list[str] = []

  def take(key: str, transpose: bool, shape: tuple) -> np.ndarray:
    if key not in sd:
      problems.append(f'missing tensor {key!r} (expected shape {_torch_shape(shape, transpose)})')
      return np.zeros(shape, np.float32)
    used.add(key)
    x = np.asarray(sd[key], np.float32)
    if transpose and x.ndim == 2:
      x = x.T
    if x.shape != tuple(shape):
      problems.append(
        f'tensor {key!r} has shape {tuple(np.asarray(sd[key]).shape)}, '
        f'expected {_torch_shape(shape, transpose)}'
      )
      return np.zeros(shape, np.float32)
    return np.ascontiguousarray(x)

  def fill(tree):
    return jax.tree_util.tree_map_with_path(lambda p, t: take(*_torch_key(p), tuple(t.shape)), tree)

  new_params, new_buffers = fill(params), fill(buffers)
  table_shape = tuple(puzzle_emb.shape)
  if table_shape[-1] > 0:
    table = take(PUZZLE_KEY, False, table_shape)
  else:
    table = np.zeros(table_shape, np.float32)
  problems += [
    f'unused tensor {k!r} with shape {tuple(np.shape(sd[k]))}' for k in sd if k not in used
  ]
  if problems:
    raise ConversionError(
      'the checkpoint does not match the model built from the config:\n  ' + '\n  '.join(problems)
    )
  return new_params, new_buffers, table


def _join_latent_inits(sd: dict[str, Any]) -> dict[str, Any]:
  """trm_hier6's L1_init, L2_init, ... as one L_init [n·D] (hrm_jax's trm_multi_z layout)."""
  parts = []
  while f'L{len(parts) + 1}_init' in sd and 'L_init' not in sd:
    parts.append(sd.pop(f'L{len(parts) + 1}_init'))
  if parts:
    sd['L_init'] = np.concatenate([np.asarray(p, np.float32) for p in parts])
  return sd


def _torch_shape(shape: tuple, transpose: bool) -> tuple:
  return tuple(reversed(shape)) if transpose else tuple(shape)


# ---------------------------------------------------------------------------------------------
# Sizes and architecture checks


def data_shapes(data_cfg: Any) -> tuple[int, int]:
  """(vocab_size, seq_len) of the data the config evaluates on (`tasks.shapes`)."""
  return tasks.shapes(data_cfg)[:2]


def _num_layers(sd: Mapping[str, Any], level: str) -> int:
  ids = {int(m.group(1)) for k in sd if (m := re.match(rf'{level}\.layers\.(\d+)\.', k))}
  return max(ids) + 1 if ids else 0


def check_architecture(m: Any, sd: Mapping[str, Any], seq_len: int) -> None:
  """Compares the config's model group `m` with what the (stripped) state dict `sd` implies.

  Checks hidden size, layers per network, token mixer, SwiGLU width (expansion), learned
  positions, puzzle-embedding width and, where a weight depends on it, the sequence length.
  Raises one ConversionError naming every config field that disagrees.
  """
  bad: list[str] = []
  emb = sd.get('embed_tokens.embedding_weight')
  if emb is None:
    raise ConversionError("missing tensor 'embed_tokens.embedding_weight': not an HRM/TRM model")
  D = int(np.shape(emb)[1])
  if D != m.hidden_size:
    bad.append(f'model.hidden_size is {m.hidden_size}, the checkpoint has {D}')
  want_H = m.H_layers if model_lib.has_separate_f_H(m) else 0
  want_L = m.L_layers if model_lib.has_f_L(m) else 0
  for level, want, field in (('H_level', want_H, 'H_layers'), ('L_level', want_L, 'L_layers')):
    have = _num_layers(sd, level)
    if have != want:
      bad.append(
        f'model.{field} (arch {m.arch!r}) needs {want} {level} layers, the checkpoint has {have}'
      )
  mixer = 'mlp' if any('.mlp_t.' in k for k in sd) else 'attention'
  if mixer != m.token_mixer:
    bad.append(f'model.token_mixer is {m.token_mixer!r}, the checkpoint has {mixer!r}')
  P = model_lib.puzzle_prefix_len(m)
  inter = next((np.shape(v)[1] for k, v in sd.items() if k.endswith('.mlp.down_proj.weight')), 0)
  if inter and inter != layers.swiglu_width(m.hidden_size, m.expansion):
    bad.append(
      f'model.expansion {m.expansion} gives another SwiGLU width than the checkpoint {inter}'
    )
  S = next((np.shape(v)[1] for k, v in sd.items() if k.endswith('.mlp_t.gate_up_proj.weight')), 0)
  if S and S != seq_len + P:
    bad.append(f'the sequence mixer spans {S} positions, the config {seq_len} + {P} prefix')
  learned = 'embed_pos.embedding_weight' in sd
  if learned != (m.pos_encodings == 'learned'):
    bad.append(
      f'model.pos_encodings is {m.pos_encodings!r}, but the checkpoint '
      f'{"has" if learned else "has no"} learned position embeddings'
    )
  elif learned and np.shape(sd['embed_pos.embedding_weight'])[0] != seq_len + P:
    rows = np.shape(sd['embed_pos.embedding_weight'])[0]
    bad.append(f'embed_pos has {rows} rows, the config {seq_len} positions + {P} prefix')
  E = int(np.shape(sd[PUZZLE_KEY])[1]) if PUZZLE_KEY in sd else 0
  if E != m.puzzle_emb_ndim:
    bad.append(f'model.puzzle_emb_ndim is {m.puzzle_emb_ndim}, the checkpoint has {E}')
  if bad:
    raise ConversionError('the config does not match the checkpoint:\n  ' + '\n  '.join(bad))


def check_reference_config(cfg: ml_collections.ConfigDict, arch: Mapping[str, Any]) -> None:
  """Compares the `arch` section of a reference `all_config.yaml` with `cfg`.

  Covers what the weights cannot show (heads, cycles, M_max, RoPE base, prefix length) besides
  the sizes. Raises one ConversionError naming every field that differs.
  """
  m = cfg.model
  name = str(arch.get('name', ''))
  # `name` is module@class; without one, only TRM's config has a puzzle_emb_len field.
  is_trm = 'trm' in name.split('@')[0].split('.')[-1] or 'TinyRecursive' in name
  is_trm = is_trm or (not name and 'puzzle_emb_len' in arch)
  bad = []
  fields = ['hidden_size', 'num_heads', 'expansion', 'H_cycles', 'L_cycles', 'L_layers']
  fields += ['rope_theta', 'rms_norm_eps', 'puzzle_emb_ndim'] + ([] if is_trm else ['H_layers'])
  pairs = [(f, m[f]) for f in fields] + [('halt_max_steps', cfg.act.halt_max_steps)]
  for field, ours in pairs:
    if field in arch and float(arch[field]) != float(ours):
      bad.append(f'{field}: all_config.yaml has {arch[field]}, the config {ours}')
  pos = arch.get('pos_encodings', 'rope')
  pos = pos if pos in ('rope', 'learned') else 'none'  # TRM: any other string means none
  if pos != m.pos_encodings:
    bad.append(f'pos_encodings: all_config.yaml has {pos!r}, the config {m.pos_encodings!r}')
  if bool(arch.get('mlp_t', False)) != (m.token_mixer == 'mlp'):
    bad.append(f'mlp_t: all_config.yaml has {arch.get("mlp_t")}, the config {m.token_mixer!r}')
  ndim, D = int(arch.get('puzzle_emb_ndim', 0)), int(arch.get('hidden_size', m.hidden_size))
  # Only the TRM class reads puzzle_emb_len (default 16); HRM classes always use ceil(E / D).
  length = int(arch.get('puzzle_emb_len', 16)) if is_trm else 0
  ref_P = (-(ndim // -D) if length == 0 else length) if ndim > 0 else 0
  if ref_P != model_lib.puzzle_prefix_len(m):
    bad.append(
      f'puzzle prefix: all_config.yaml gives {ref_P}, the config {model_lib.puzzle_prefix_len(m)}'
    )
  if bad:
    raise ConversionError(
      "the config differs from the checkpoint's all_config.yaml:\n  " + '\n  '.join(bad)
    )


# ---------------------------------------------------------------------------------------------
# Conversion and writing


def convert_state_dict(
  cfg: ml_collections.ConfigDict, state_dict: Mapping[str, Any], step: int = 0
):
  """A reference state dict -> (resolved cfg, graphdef, TrainState, Metadata) for `cfg`.

  vocab and the number of puzzle ids come from the tensors (embed_tokens, puzzle_emb.weights);
  seq_len from the config's data (`data_shapes`). The state is `init_state`'s with params,
  buffers and the puzzle table replaced, `ema_params` = params when EMA is on (the reference
  saves the EMA copy as its model, spec §4.5), and `step` set.
  """
  config_lib.validate(cfg)
  sd = strip_prefixes(state_dict)
  vocab, seq_len = data_shapes(cfg.data)
  check_architecture(cfg.model, sd, seq_len)
  emb_vocab = int(np.shape(sd['embed_tokens.embedding_weight'])[0])
  if emb_vocab != vocab:
    raise ConversionError(
      f"the checkpoint has a vocabulary of {emb_vocab} tokens, the config's data "
      f'({cfg.data.name}) {vocab}'
    )
  num_ids = int(np.shape(sd[PUZZLE_KEY])[0]) if PUZZLE_KEY in sd else 1
  cfg = config_lib.resolve(cfg, 1.0)  # as evaluate_checkpoint resolves it
  graphdef, state = ts.init_state(cfg, vocab, seq_len, num_ids)
  params, buffers, table = from_torch_state_dict(sd, state.params, state.buffers, state.puzzle_emb)
  params = jax.tree.map(jnp.asarray, params)
  state = state.replace(
    step=jnp.asarray(step, jnp.int32),
    params=params,
    buffers=jax.tree.map(jnp.asarray, buffers),
    puzzle_emb=jnp.asarray(table),
    ema_params=jax.tree.map(jnp.copy, params) if state.ema_params is not None else None,
  )
  meta = data_format.Metadata(
    pad_id=0,
    ignore_label_id=0,
    blank_identifier_id=0,
    vocab_size=vocab,
    seq_len=seq_len,
    num_puzzle_identifiers=num_ids,
    # The training data's group counts are unknown here; evaluation reads none of them.
    total_groups=1,
    mean_puzzle_examples=1.0,
    sets=['all'],
  )
  return cfg, graphdef, state, meta


def write_workdir(workdir: str, cfg, graphdef, state: ts.TrainState, meta) -> None:
  """Writes `state` as a training workdir: orbax {'state', 'carry'} at `state.step` (carry
  all-halted, batch `cfg.train.global_batch_size`), `config.json` and `train_metadata.json`.

  Raises ConversionError if `workdir` already holds checkpoints.
  """
  mngr = checkpoint.manager(workdir, cfg.ckpt.max_to_keep, directory=cfg.ckpt.get('dir', ''))
  if mngr.latest_step() is not None:
    raise ConversionError(f'{workdir} already holds checkpoints; convert into a new --workdir')
  carry = ts.init_carry(graphdef, state, cfg.train.global_batch_size, meta.seq_len)
  checkpoint.save(mngr, int(state.step), {'state': state, 'carry': carry})
  checkpoint.finish(mngr)
  workdir_lib.write_run_files(workdir, cfg, meta)


# ---------------------------------------------------------------------------------------------
# Reading checkpoints (torch imported here only)


def resolve_checkpoint(path: str) -> str:
  """A local file for `path`: itself, or for `hf://owner/repo[/file]` the downloaded file.

  Beside a downloaded file, `all_config.yaml` is fetched too when the repo has one.
  """
  if not path.startswith(HF_SCHEME):
    if not os.path.isfile(path):
      raise FileNotFoundError(f'checkpoint {path} does not exist')
    return path
  parts = path[len(HF_SCHEME) :].split('/')
  if len(parts) < 2:
    raise ConversionError(f'{path}: expected hf://<owner>/<repo>[/<file>]')
  repo, filename = '/'.join(parts[:2]), '/'.join(parts[2:]) or HF_DEFAULT_FILE
  try:
    from huggingface_hub import hf_hub_download  # only needed online
  except ImportError:
    raise ConversionError(
      f'{path}: huggingface_hub is not installed; pip install -e ".[hub]" in the hrm_jax '
      'checkout, or download the '
      'file yourself and pass its local path'
    ) from None
  try:
    local = hf_hub_download(repo_id=repo, filename=filename)
  except Exception as e:  # network, auth, missing repo or file all end the same way
    raise ConversionError(
      f'{path}: download failed ({type(e).__name__}: {e}); download it yourself and pass the '
      'local path'
    ) from e
  try:
    hf_hub_download(
      repo_id=repo, filename=os.path.join(os.path.dirname(filename), 'all_config.yaml')
    )
  except Exception:  # optional: not every repo has one
    pass
  return local


def load_torch_state_dict(path: str) -> dict[str, np.ndarray]:
  """Reads a `torch.save`d state dict as {key: fp32 numpy} (bf16 tensors widened exactly)."""
  try:
    import torch
  except ImportError:
    raise ConversionError(
      'reading PyTorch checkpoints needs torch (a CPU build is enough): pip install torch'
    ) from None
  obj = torch.load(path, map_location='cpu', weights_only=True)
  if not isinstance(obj, Mapping) or not all(torch.is_tensor(v) for v in obj.values()):
    raise ConversionError(
      f'{path}: expected a state dict (a mapping of names to tensors), found {type(obj).__name__}'
    )
  return {k: v.detach().float().numpy() for k, v in obj.items()}


def read_reference_config(checkpoint_path: str) -> Optional[dict]:
  """The `arch` section of the `all_config.yaml` beside the checkpoint, or None if absent."""
  path = os.path.join(os.path.dirname(os.path.abspath(checkpoint_path)), 'all_config.yaml')
  if not os.path.isfile(path):
    return None
  import yaml  # PyYAML comes with orbax

  with open(path) as f:
    doc = yaml.safe_load(f)
  return doc.get('arch') if isinstance(doc, dict) and isinstance(doc.get('arch'), dict) else None


def checkpoint_step(path: str) -> int:
  """N of a reference checkpoint file named `step_<N>`, else 0."""
  m = re.fullmatch(r'step_(\d+)', os.path.basename(path))
  return int(m.group(1)) if m else 0


def convert_checkpoint(
  cfg: ml_collections.ConfigDict, checkpoint_path: str, workdir: str, step: Optional[int] = None
) -> tuple[int, data_format.Metadata]:
  """Converts the checkpoint at `checkpoint_path` (file or hf://) into `workdir` for `cfg`.

  Returns (step written, metadata written). See the module docstring.
  """
  local = resolve_checkpoint(checkpoint_path)
  arch = read_reference_config(local)
  if arch is not None:
    check_reference_config(cfg, arch)
  sd = load_torch_state_dict(local)
  step = checkpoint_step(local) if step is None else step
  cfg, graphdef, state, meta = convert_state_dict(cfg, sd, step)
  epath.Path(workdir).mkdir(parents=True, exist_ok=True)  # a local folder or a bucket
  write_workdir(workdir, cfg, graphdef, state, meta)
  return step, meta


def define_flags() -> None:
  """The command's flags (defined only when it runs, see `hrm_jax.cli`)."""
  from absl import flags
  from ml_collections import config_flags

  config_flags.DEFINE_config_file('config', None, 'Config file[:preset].', lock_config=True)
  flags.DEFINE_string('checkpoint', None, 'Reference state dict file, or hf://owner/repo[/file].')
  flags.DEFINE_string('workdir', None, 'New hrm_jax workdir to write.')
  flags.DEFINE_integer('step', None, 'Step to save under (default: N of step_<N>, else 0).')
  flags.mark_flags_as_required(['config', 'checkpoint', 'workdir'])


def main(argv) -> None:
  """CLI: converts --checkpoint for --config into --workdir; prints where it went."""
  del argv
  from absl import flags

  f = flags.FLAGS
  step, meta = convert_checkpoint(f.config, f.checkpoint, f.workdir, f.step)
  print(
    f'converted {f.checkpoint} -> {f.workdir} step={step} vocab={meta.vocab_size} '
    f'seq_len={meta.seq_len} puzzle_ids={meta.num_puzzle_identifiers}',
    flush=True,
  )


def cli() -> None:
  from hrm_jax import cli as cli_lib

  cli_lib.run(main, define_flags, errors=(ConversionError,))


if __name__ == '__main__':
  cli()
