"""A JAX function as an ONNX model: its jaxpr translated primitive by primitive.

jaxpose's networks use a few dozen of JAX's primitives; each has an ONNX counterpart
(``_RULES``). The function is traced once with a symbolic batch size, so the model takes any
batch; what depends only on the weights (BatchNorm's ``rsqrt(var + eps)``, reshaped biases) is
computed here, once, and stored as initializers. Layouts stay JAX's (NHWC): convolutions and
pooling are wrapped in transposes to ONNX's NCHW, which ONNX Runtime's layout optimiser
cancels between consecutive operations. Branches chosen by platform
(``lax.platform_dependent``, e.g. jaxpose's XLA:CPU-only kernels in ``models/ops.py``) take the
generic branch. A primitive without a rule fails the export, naming it.
"""

from __future__ import annotations

import dataclasses
import string
from typing import Any, Callable

import jax
from jax.extend import core as jax_core
import jax.numpy as jnp
import numpy as np
import onnx
from onnx import helper
from onnx import numpy_helper

OPSET = 18
# The name of the model's symbolic batch dimension.
BATCH = 'batch'


class _Graph:
  """The ONNX nodes and initializers being built, and what each jaxpr variable became: an
  ONNX tensor name, or a numpy array where it depends on constants only."""

  def __init__(self, batch_dim, input_name: str):
    self.batch_dim = batch_dim
    self.input_name = input_name
    self.nodes: list[onnx.NodeProto] = []
    self.initializers: list[onnx.TensorProto] = []
    self.values: dict[Any, Any] = {}
    self._count = 0
    self._batch = None
    self._emitted = {}

  def fresh(self, hint: str) -> str:
    self._count += 1
    return f'{hint}_{self._count}'

  def const(self, value) -> str:
    name = self.fresh('const')
    self.initializers.append(numpy_helper.from_array(np.asarray(value), name))
    return name

  def node(self, op: str, inputs: list, **attributes) -> str:
    out = self.fresh(op.lower())
    names = [self.name(x) for x in inputs]
    self.nodes.append(helper.make_node(op, names, [out], **attributes))
    return out

  def name(self, value) -> str:
    """An ONNX tensor name for ``value``: a name as it is, an array as an initializer."""
    return value if isinstance(value, str) else self.const(value)

  def emitted(self, value):
    """``value``, with a pending convolution (``_PendingConv``) emitted, once."""
    if not isinstance(value, _PendingConv):
      return value
    if id(value) not in self._emitted:
      self._emitted[id(value)] = (value, value.emit(self))
    return self._emitted[id(value)][1]

  def batch(self) -> str:
    """The input's batch size as a (1,) int64 tensor."""
    if self._batch is None:
      shape = self.node('Shape', [self.input_name])
      self._batch = self.node('Slice', [shape, np.int64([0]), np.int64([1])])
    return self._batch

  def shape(self, dims, infer: bool = False) -> Any:
    """``dims`` as an int64 shape tensor; the symbolic batch becomes the input's batch size,
    or -1 with ``infer`` (for Reshape, which infers it)."""
    if all(isinstance(d, int) for d in dims):
      return np.int64(dims)
    parts = []
    for d in dims:
      if isinstance(d, int):
        parts.append(np.int64([d]))
      elif d == self.batch_dim:
        parts.append(np.int64([-1]) if infer else self.batch())
      else:
        raise NotImplementedError(f'ONNX export: dimension {d} (only the batch may be '
                                  'symbolic, as itself)')
    return np.concatenate(parts) if infer else self.node('Concat', parts, axis=0)


def _static(shape) -> bool:
  return all(isinstance(d, int) for d in shape)


def _to_onnx_dtype(dtype) -> int:
  return helper.np_dtype_to_tensor_dtype(np.dtype(dtype))


# Rules: (graph, eqn, inputs) -> list of outputs (ONNX names or arrays). Inputs are ONNX
# names or numpy arrays.
def _elementwise(op: str) -> Callable:
  return lambda g, eqn, xs: [g.node(op, list(xs))]


def _max(g, eqn, xs):
  for x, other in (xs, xs[::-1]):
    if isinstance(other, np.ndarray) and other.size == 1 and not other.any():
      return [g.node('Relu', [x])]
  return [g.node('Max', list(xs))]


def _unary(ops: tuple[str, ...]) -> Callable:
  def rule(g, eqn, xs):
    x = xs[0]
    for op in ops:
      x = g.node(op, [x])
    return [x]
  return rule


def _convert(g, eqn, xs):
  return [g.node('Cast', [xs[0]], to=_to_onnx_dtype(eqn.params['new_dtype']))]


def _integer_pow(g, eqn, xs):
  y = eqn.params['y']
  dtype = eqn.invars[0].aval.dtype
  return [g.node('Pow', [xs[0], np.asarray(y, dtype)])]


def _reshape(g, eqn, xs):
  if eqn.params.get('dimensions') is not None:
    raise NotImplementedError('ONNX export: reshape with dimensions')
  return [g.node('Reshape', [xs[0], g.shape(eqn.params['new_sizes'], infer=True)])]


def _broadcast_in_dim(g, eqn, xs):
  shape, dims = eqn.params['shape'], eqn.params['broadcast_dimensions']
  operand = eqn.invars[0].aval.shape
  # The operand's dimensions in place, 1 elsewhere; then Expand (numpy broadcasting).
  placed = [1] * len(shape)
  for i, d in enumerate(dims):
    placed[d] = operand[i]
  x = g.node('Reshape', [xs[0], g.shape(placed, infer=True)])
  has_batch = [not isinstance(p, int) for p in placed]
  target = [1 if keep else d for keep, d in zip(has_batch, shape)]
  return [g.node('Expand', [x, g.shape(target)])]


def _squeeze(g, eqn, xs):
  return [g.node('Squeeze', [xs[0], np.int64(eqn.params['dimensions'])])]


def _expand_dims(g, eqn, xs):
  return [g.node('Unsqueeze', [xs[0], np.int64(eqn.params['dimensions'])])]


def _transpose(g, eqn, xs):
  return [g.node('Transpose', [xs[0]], perm=list(eqn.params['permutation']))]


def _reduce(op: str) -> Callable:
  def rule(g, eqn, xs):
    return [g.node(op, [xs[0], np.int64(eqn.params['axes'])], keepdims=0)]
  return rule


def _argmax(g, eqn, xs):
  axis, = eqn.params['axes']
  out = g.node('ArgMax', [xs[0]], axis=axis, keepdims=0, select_last_index=0)
  return [g.node('Cast', [out], to=_to_onnx_dtype(eqn.params['index_dtype']))]


def _slice(g, eqn, xs):
  starts = eqn.params['start_indices']
  limits = eqn.params['limit_indices']
  strides = eqn.params['strides'] or (1,) * len(starts)
  big = np.iinfo(np.int64).max
  ends = [d if isinstance(d, int) else big for d in limits]
  return [g.node('Slice', [xs[0], np.int64(starts), np.int64(ends),
                           np.int64(range(len(starts))), np.int64(strides)])]


def _concatenate(g, eqn, xs):
  return [g.node('Concat', list(xs), axis=eqn.params['dimension'])]


def _stack(g, eqn, xs):
  axis = eqn.params['axis']
  parts = [g.node('Unsqueeze', [x, np.int64([axis])]) for x in xs]
  return [g.node('Concat', parts, axis=axis)]


def _gather(g, eqn, xs):
  """Only the gather that indexing with constants makes where a dimension is symbolic
  (``x[:, 0]``): one constant start per indexed axis, whole slices elsewhere."""
  p = eqn.params
  numbers, sizes = p['dimension_numbers'], p['slice_sizes']
  operand = eqn.invars[0].aval.shape
  index = xs[1]
  rank = len(operand)
  if (not isinstance(index, np.ndarray) or index.shape != (len(numbers.start_index_map),)
      or numbers.operand_batching_dims
      or tuple(numbers.offset_dims) != tuple(range(rank - len(numbers.collapsed_slice_dims)))):
    raise NotImplementedError(f'ONNX export: gather with {numbers}')
  axes = list(numbers.start_index_map)
  # Starts are clamped so that the slice fits, as XLA does.
  starts = [int(np.clip(i, 0, operand[a] - sizes[a])) for i, a in zip(index, axes)]
  out = g.node('Slice', [xs[0], np.int64(starts),
                         np.int64([s + sizes[a] for s, a in zip(starts, axes)]),
                         np.int64(axes)])
  if numbers.collapsed_slice_dims:
    out = g.node('Squeeze', [out, np.int64(numbers.collapsed_slice_dims)])
  return [out]


def _select_n(g, eqn, xs):
  if len(xs) != 3:
    raise NotImplementedError('ONNX export: select_n with more than two cases')
  which, false, true = xs
  condition = g.node('Cast', [which], to=onnx.TensorProto.BOOL)
  return [g.node('Where', [condition, true, false])]


def _dot_general(g, eqn, xs):
  (lc, rc), (lb, rb) = eqn.params['dimension_numbers']
  lhs, rhs = (v.aval for v in eqn.invars)
  if not lb and tuple(lc) == (lhs.ndim - 1,) and tuple(rc) == (0,) and rhs.ndim == 2:
    out = g.node('MatMul', list(xs))  # a Dense layer: ONNX Runtime fuses its bias (Gemm)
  else:
    out = g.node('Einsum', list(xs), equation=_einsum(lhs.ndim, rhs.ndim, lc, rc, lb, rb))
  dtype = eqn.outvars[0].aval.dtype
  return [out if lhs.dtype == dtype else g.node('Cast', [out], to=_to_onnx_dtype(dtype))]


def _einsum(lhs_rank, rhs_rank, lc, rc, lb, rb) -> str:
  """dot_general's dimension numbers as an einsum equation (batch, lhs free, rhs free)."""
  letters = iter(string.ascii_lowercase)
  lhs = [None] * lhs_rank
  rhs = [None] * rhs_rank
  for i, j in zip(lb, rb):
    lhs[i] = rhs[j] = next(letters)
  for i, j in zip(lc, rc):
    lhs[i] = rhs[j] = next(letters)
  for dims in (lhs, rhs):
    for i, letter in enumerate(dims):
      if letter is None:
        dims[i] = next(letters)
  out = ([lhs[i] for i in lb] + [lhs[i] for i in range(lhs_rank) if i not in lb + lc] +
         [rhs[i] for i in range(rhs_rank) if i not in rb + rc])
  return f'{"".join(lhs)},{"".join(rhs)}->{"".join(out)}'


@dataclasses.dataclass(frozen=True)
class _PendingConv:
  """A convolution's NHWC output not emitted yet, so that the per-channel affine operations
  after it (BatchNorm at inference, a bias) and a ReLU fold into the ONNX Conv: ONNX
  Runtime's fast convolutions fuse a ReLU and a residual sum, not BatchNorm's four
  operations."""
  x: str  # the input, NCHW
  kernel: np.ndarray  # OIHW
  bias: np.ndarray  # (O,)
  attributes: tuple
  out_perm: tuple  # NCHW back to JAX's layout
  relu: bool = False

  def affine(self, op: str, c: np.ndarray) -> _PendingConv | None:
    """This conv followed by ``op`` (add, sub, mul) with the constant ``c``, if ``c`` is
    one value per output channel of an NHWC output (else None)."""
    channels = self.kernel.shape[0]
    if self.relu or self.out_perm != (0, 2, 3, 1) or c.ndim > 4 or any(
        d != 1 for d in c.shape[:-1]) or (c.ndim and c.shape[-1] not in (1, channels)):
      return None
    c = np.broadcast_to(c.reshape(-1), (channels,)).astype(self.bias.dtype)
    if op == 'mul':
      return dataclasses.replace(self, kernel=self.kernel * c[:, None, None, None],
                                 bias=self.bias * c)
    return dataclasses.replace(self, bias=self.bias + (c if op == 'add' else -c))

  def emit(self, g: _Graph) -> str:
    y = g.node('Conv', [self.x, self.kernel, self.bias], **dict(self.attributes))
    if self.relu:
      y = g.node('Relu', [y])
    return g.node('Transpose', [y], perm=list(self.out_perm))


def _conv(g, eqn, xs):
  p = eqn.params
  if any(d != 1 for d in p['lhs_dilation']) or p['batch_group_count'] != 1:
    raise NotImplementedError('ONNX export: transposed or batch-grouped convolution')
  lhs_spec, rhs_spec, out_spec = p['dimension_numbers']
  x = g.node('Transpose', [xs[0]], perm=list(lhs_spec))
  pads = [lo for lo, _ in p['padding']] + [hi for _, hi in p['padding']]
  attributes = (('strides', list(p['window_strides'])), ('pads', pads),
                ('dilations', list(p['rhs_dilation'])), ('group', p['feature_group_count']))
  out_perm = tuple(list(out_spec).index(j) for j in range(len(out_spec)))
  kernel = xs[1]
  if isinstance(kernel, np.ndarray):
    kernel = np.transpose(kernel, rhs_spec)
    return [_PendingConv(x, kernel, np.zeros(kernel.shape[0], kernel.dtype), attributes,
                         out_perm)]
  kernel = g.node('Transpose', [kernel], perm=list(rhs_spec))
  return [g.node('Transpose', [g.node('Conv', [x, kernel], **dict(attributes))],
                 perm=list(out_perm))]


def _fold(name: str, xs: list):
  """``name`` applied to a pending convolution and a constant, folded into it (or None)."""
  if name == 'max' and len(xs) == 2:
    for conv, other in (xs, xs[::-1]):
      if (isinstance(conv, _PendingConv) and not conv.relu and
          isinstance(other, np.ndarray) and not other.any()):
        return dataclasses.replace(conv, relu=True)
  if name in ('add', 'mul') and isinstance(xs[1], _PendingConv):
    xs = xs[::-1]
  if name in ('add', 'sub', 'mul') and isinstance(xs[0], _PendingConv) and isinstance(
      xs[1], np.ndarray):
    return xs[0].affine(name, xs[1])
  return None


def _max_pool(g, eqn, xs):
  p = eqn.params
  window, strides, padding = p['window_dimensions'], p['window_strides'], p['padding']
  rank = len(window)
  # NHWC: the window slides over the spatial axes only.
  pooled = [i for i in range(rank) if window[i] != 1 or strides[i] != 1 or padding[i] != (0, 0)]
  if any(d != 1 for d in (*p['base_dilation'], *p['window_dilation'])) or not set(pooled) <= set(
      range(1, rank - 1)):
    raise NotImplementedError('ONNX export: reduce_window_max other than NHWC max pooling')
  to_nchw = [0, rank - 1, *range(1, rank - 1)]
  x = g.node('Transpose', [xs[0]], perm=to_nchw)
  spatial = range(1, rank - 1)
  y = g.node('MaxPool', [x], kernel_shape=[window[i] for i in spatial],
             strides=[strides[i] for i in spatial],
             pads=[padding[i][0] for i in spatial] + [padding[i][1] for i in spatial])
  return [g.node('Transpose', [y], perm=[0, *range(2, rank), 1])]


_RULES: dict[str, Callable] = {
    'add': _elementwise('Add'), 'sub': _elementwise('Sub'), 'mul': _elementwise('Mul'),
    'div': _elementwise('Div'), 'max': _max, 'min': _elementwise('Min'),
    'pow': _elementwise('Pow'), 'gt': _elementwise('Greater'), 'lt': _elementwise('Less'),
    'ge': _elementwise('GreaterOrEqual'), 'le': _elementwise('LessOrEqual'),
    'eq': _elementwise('Equal'),
    'exp': _unary(('Exp',)), 'log': _unary(('Log',)), 'neg': _unary(('Neg',)),
    'abs': _unary(('Abs',)), 'sqrt': _unary(('Sqrt',)), 'rsqrt': _unary(('Sqrt', 'Reciprocal')),
    'tanh': _unary(('Tanh',)), 'logistic': _unary(('Sigmoid',)), 'floor': _unary(('Floor',)),
    'round': _unary(('Round',)), 'stop_gradient': _unary(()),
    'copy': _unary(()), 'copy_p': _unary(()),
    'integer_pow': _integer_pow, 'convert_element_type': _convert, 'reshape': _reshape,
    'broadcast_in_dim': _broadcast_in_dim, 'squeeze': _squeeze, 'expand_dims': _expand_dims,
    'transpose': _transpose, 'reduce_max': _reduce('ReduceMax'),
    'reduce_min': _reduce('ReduceMin'), 'reduce_sum': _reduce('ReduceSum'),
    'argmax': _argmax, 'slice': _slice, 'concatenate': _concatenate, 'stack': _stack,
    'gather': _gather, 'select_n': _select_n, 'dot_general': _dot_general,
    'conv_general_dilated': _conv,
    'reduce_window_max': _max_pool,
}
# Calls whose body is inlined: params key of the body's (closed) jaxpr.
_CALLS = {'jit': 'jaxpr', 'pjit': 'jaxpr', 'closed_call': 'call_jaxpr',
          'custom_jvp_call': 'call_jaxpr', 'custom_vjp_call': 'call_jaxpr',
          'custom_vjp_call_jaxpr': 'fun_jaxpr', 'remat': 'jaxpr', 'checkpoint': 'jaxpr'}


def _read(g: _Graph, var):
  if isinstance(var, jax_core.Literal):
    return np.asarray(var.val, var.aval.dtype)
  return g.values[var]


def _run_jaxpr(g: _Graph, jaxpr, consts, args) -> list:
  for var, value in zip(jaxpr.constvars, consts):
    g.values[var] = np.asarray(value)
  for var, value in zip(jaxpr.invars, args):
    g.values[var] = value
  for eqn in jaxpr.eqns:
    name = eqn.primitive.name
    xs = [_read(g, v) for v in eqn.invars]
    if name == 'platform_index':
      # The generic branch: the model does not run on XLA:CPU.
      platforms = eqn.params['platforms']
      if None not in platforms:
        raise NotImplementedError(f'ONNX export: no generic branch among {platforms}')
      out = [np.asarray(platforms.index(None), np.int32)]
    elif name == 'cond':
      index = xs[0]
      if not isinstance(index, np.ndarray):
        raise NotImplementedError('ONNX export: a cond on computed values')
      branch = eqn.params['branches'][int(index)]
      out = _run_jaxpr(g, branch.jaxpr, branch.consts, xs[1:])
    elif name in _CALLS:
      body = eqn.params[_CALLS[name]]
      closed = body if hasattr(body, 'consts') else None
      out = _run_jaxpr(g, closed.jaxpr if closed else body, closed.consts if closed else (),
                       xs)
    elif all(isinstance(x, np.ndarray) for x in xs) and all(
        _static(v.aval.shape) for v in eqn.outvars):
      # Depends on the weights only: computed now.
      out = eqn.primitive.bind(*map(jnp.asarray, xs), **eqn.params)
      out = [np.asarray(o) for o in (out if eqn.primitive.multiple_results else [out])]
    elif (folded := _fold(name, xs)) is not None:
      out = [folded]
    elif name in _RULES:
      xs = [g.emitted(x) for x in xs]
      out = _RULES[name](g, eqn, xs)
    else:
      raise NotImplementedError(f'ONNX export: no rule for the primitive {name!r}')
    for var, value in zip(eqn.outvars, out):
      g.values[var] = value
  return [_read(g, v) for v in jaxpr.outvars]


def to_onnx(fn: Callable, input_shape: tuple[int, ...], input_dtype, input_name: str,
            doc: str = '') -> onnx.ModelProto:
  """``fn`` (one array of ``(batch, *input_shape)`` → a dict of arrays) as an ONNX model
  with one input ``input_name`` and the dict's keys as outputs, for any batch size."""
  batch_dim, = jax.export.symbolic_shape('b')
  closed, out_shapes = jax.make_jaxpr(fn, return_shape=True)(
      jax.ShapeDtypeStruct((batch_dim, *input_shape), input_dtype))
  if not isinstance(out_shapes, dict):
    raise ValueError(f'ONNX export: fn must return a dict of arrays, not {out_shapes}')
  g = _Graph(batch_dim, input_name)
  outs = _run_jaxpr(g, closed.jaxpr, closed.consts, [input_name])
  names = sorted(out_shapes)  # a dict's leaves, in jax's order
  outputs = []
  for key, value in zip(names, outs):
    shape = out_shapes[key]
    g.nodes.append(helper.make_node('Identity', [g.name(g.emitted(value))], [key]))
    dims = [BATCH if not isinstance(d, int) else d for d in shape.shape]
    outputs.append(helper.make_tensor_value_info(key, _to_onnx_dtype(shape.dtype), dims))
  inputs = [helper.make_tensor_value_info(input_name, _to_onnx_dtype(input_dtype),
                                          [BATCH, *input_shape])]
  graph = helper.make_graph(g.nodes, 'jaxpose', inputs, outputs, g.initializers)
  model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', OPSET)],
                            producer_name='jaxpose', doc_string=doc)
  onnx.checker.check_model(model, full_check=True)
  return model
