"""Differential testing of qoptc against onnxruntime on small random graphs.

A seeded generator builds small ONNX graphs (opset 17 or 18) over inputs with
symbolic dimensions ("d0", "d1", ...): elementwise ops with broadcasting
between operands of different ranks, Reshape (constant shapes with 0 / -1
and shapes computed in the graph the way torch exporters do:
Shape -> Gather -> Unsqueeze -> Concat), Expand, Slice, Gather (negative
indices, indices as inputs), GatherElements, GatherND, Concat, Transpose,
Squeeze / Unsqueeze, reductions, Softmax, MatMul, Shape / Size / Range,
Trilu, CumSum, Where, Cast, Identity, and graph outputs that alias each
other (an output and an Identity / no-op Cast / Reshape of it).

The run-time sizes of the symbols are drawn first, 3-4 assignments per graph
in which some symbols are 1 and others are not, so that broadcasting is
decided at run time; the graph is built so that it is valid under every
assignment (onnxruntime has the last word: an assignment it rejects is
dropped). Each graph is compiled once by qoptc and the library is run at
every assignment, in a forked child process (a crash of the runtime is
reported, not fatal), and compared with onnxruntime without its graph rewrites
(float: rtol 1e-4, atol 1e-5 scaled by the output's magnitude; integer and
bool outputs exactly).

  difftest.py [--seed S] [--count N] [--only-graph I] [--keep-failures DIR]
              [--verbose] [--refusals K] [--minimize DIR]

Graph i of a campaign uses the seed S * 100003 + i, so `--seed S
--only-graph i` regenerates it alone. `--minimize DIR` (with --only-graph)
shrinks a failing graph (fewer outputs, nodes bypassed, intermediates turned
into inputs) while it fails the same way, and writes DIR/graph<seed>.onnx
and .npz (case<k>.<input> and case<k>.<output>: onnxruntime's outputs).

Prints one line per failing graph, the qoptc refusals by message, and
`difftest: N graphs, K ok, R refused, F failed`; exits 1 when F > 0.
Needs QOPT_BIN (qoptc) and PYTHONPATH with the qopt Python binding.
"""
import argparse
import collections
import multiprocessing
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import onnxruntime as ort

ort.set_default_logger_severity(4)

FLOAT, INT, BOOL = "f", "i", "b"
NP_TYPE = {FLOAT: np.float32, INT: np.int64, BOOL: np.bool_}
ONNX_TYPE = {FLOAT: TensorProto.FLOAT, INT: TensorProto.INT64, BOOL: TensorProto.BOOL}
BIG = 2 ** 63 - 1
MAX_ELEMENTS = 20000
RTOL, ATOL = 1e-4, 1e-5
RUN_TIMEOUT = 60


# --------------------------------------------------------------------------
# Shapes
# --------------------------------------------------------------------------

def bshape(*shapes):
    try:
        return tuple(int(d) for d in np.broadcast_shapes(*[tuple(s) for s in shapes]))
    except ValueError:
        return None


def numel(shape):
    return int(np.prod(shape)) if len(shape) else 1


def reshape_out(shape, target):
    out, neg = [], -1
    for j, v in enumerate(target):
        v = int(v)
        if v == 0:
            if j >= len(shape):
                return None
            out.append(shape[j])
        elif v == -1:
            if neg >= 0:
                return None
            neg = j
            out.append(1)
        elif v < -1:
            return None
        else:
            out.append(v)
    total, p = numel(shape), numel(out)
    if neg >= 0:
        if p == 0 or total % p:
            return None
        out[neg] = total // p
    elif p != total:
        return None
    return tuple(out)


def matmul_shape(s1, s2):
    a, b = list(s1), list(s2)
    if not a or not b:
        return None
    va, vb = len(a) == 1, len(b) == 1
    if va:
        a = [1] + a
    if vb:
        b = b + [1]
    if a[-1] != b[-2]:
        return None
    batch = bshape(tuple(a[:-2]), tuple(b[:-2]))
    if batch is None:
        return None
    out = list(batch) + [a[-2], b[-1]]
    if vb:
        del out[-1]
    if va:
        del out[-2 if not vb else -1]
    return tuple(out)


def slice_len(n, start, end, step):
    return len(range(*slice(start, end, step).indices(n)))


# --------------------------------------------------------------------------
# The generator
# --------------------------------------------------------------------------

class Tensor:
    def __init__(self, name, kind, shapes, sym, values=None, exact=False,
                 is_input=False, const=False):
        self.name, self.kind, self.shapes, self.sym = name, kind, shapes, sym
        self.values, self.exact = values, exact
        self.is_input, self.const = is_input, const

    @property
    def rank(self):
        return len(self.shapes[0])

    def dim(self, i):
        return tuple(s[i] for s in self.shapes)


class Reject(Exception):
    pass


def make_assignments(r):
    nsym = r.randint(2, 5)
    nas = r.choice([3, 4, 4])
    while True:
        kinds = ["b" if r.random() < 0.7 else "f" for _ in range(nsym)]
        big = [r.choice([2, 2, 3, 3, 4, 4, 5, 5, 6, 7, 8, 9, 13, 17]) for _ in range(nas)]
        vals = []
        for a in range(nas):
            row = []
            for k in kinds:
                if k == "b":
                    p = 0.5 if a < 3 else 0.8
                    row.append(1 if a > 0 and r.random() < p else big[a])
                else:
                    row.append(1 if a > 0 and r.random() < 0.2 else r.randint(2, 6))
            vals.append(row)
        vecs = [tuple(vals[a][s] for a in range(nas)) for s in range(nsym)]
        if (len(set(vecs)) == nsym and all(len(set(v)) > 1 for v in vecs)
                and any(1 in v for v in vecs)
                and len(set(tuple(row) for row in vals)) == nas):
            return [f"d{s}" for s in range(nsym)], vals


class Generator:
    def __init__(self, seed):
        self.seed = seed
        self.r = random.Random(seed)
        self.rng = np.random.default_rng(seed)
        self.opset = 18 if self.r.random() < 0.4 else 17
        self.syms, self.vals = make_assignments(self.r)
        self.na = len(self.vals)
        self.symvec = {s: tuple(self.vals[a][i] for a in range(self.na))
                       for i, s in enumerate(self.syms)}
        self.nodes, self.inits, self.inputs = [], [], []
        self.tensors, self.consumed = [], set()
        self.counter = 0
        self.shape_cache = {}

    # -- bookkeeping ---------------------------------------------------------
    def fresh(self, prefix="t"):
        self.counter += 1
        return f"{prefix}{self.counter}"

    def infer_sym(self, shapes):
        sym = []
        for i in range(len(shapes[0])):
            vec = tuple(s[i] for s in shapes)
            if len(set(vec)) == 1:
                sym.append(vec[0])
                continue
            sym.append(next((s for s, v in self.symvec.items() if v == vec), None))
        return sym

    def shapes_of(self, sym):
        return [tuple(d if isinstance(d, int) else self.symvec[d][a] for d in sym)
                for a in range(self.na)]

    def add_input(self, kind, sym, spec=None, exact=False):
        name = self.fresh("in")
        t = Tensor(name, kind, self.shapes_of(sym), list(sym), exact=exact, is_input=True)
        self.inputs.append((t, spec or (kind,)))
        self.tensors.append(t)
        return t

    def const(self, array, node=None):
        array = np.asarray(array)
        kind = FLOAT if array.dtype.kind == "f" else (BOOL if array.dtype == np.bool_ else INT)
        if array.dtype != np.int32:
            array = array.astype(NP_TYPE[kind])
        name = self.fresh("c")
        if node is None:
            node = self.r.random() < 0.5
        if node:
            self.nodes.append(helper.make_node("Constant", [], [name], name=f"n_{name}",
                                               value=numpy_helper.from_array(array, name)))
        else:
            self.inits.append(numpy_helper.from_array(array, name))
        vals = [array.astype(np.int64)] * self.na if kind == INT else None
        return Tensor(name, kind, [array.shape] * self.na, list(array.shape), values=vals,
                      exact=kind == FLOAT and bool(np.all(array == np.round(array))),
                      const=True)

    def node(self, op, ins, kind, shapes, values=None, exact=False, **attrs):
        for s in shapes:
            if s is None:
                raise Reject(op)
            if numel(s) > MAX_ELEMENTS or len(s) > 6:
                raise Reject(op + " too large")
        if values is not None:
            for v, s in zip(values, shapes):
                assert tuple(np.shape(v)) == tuple(s), (op, np.shape(v), s)
        name = self.fresh()
        self.nodes.append(helper.make_node(op, [t.name if t is not None else "" for t in ins],
                                           [name], name=f"n_{name}_{op}", **attrs))
        for t in ins:
            if t is not None:
                self.consumed.add(t.name)
        t = Tensor(name, kind, [tuple(int(d) for d in s) for s in shapes],
                   self.infer_sym(shapes), values=values, exact=exact)
        self.tensors.append(t)
        return t

    def pool(self, kind=None, min_rank=0, max_rank=9):
        return [t for t in self.tensors if not t.const and (kind is None or t.kind == kind)
                and min_rank <= t.rank <= max_rank and all(numel(s) for s in t.shapes)]

    def pick(self, kind=FLOAT, min_rank=0, max_rank=9):
        cands = self.pool(kind, min_rank, max_rank)
        if not cands:
            if kind == FLOAT:
                return self.add_input(FLOAT, self.random_sym(self.r.randint(max(min_rank, 1),
                                                                            max(min(max_rank, 4), 1))))
            raise Reject("no tensor")
        # Prefer recent tensors: deeper chains.
        weights = [1 + i for i in range(len(cands))]
        return self.r.choices(cands, weights)[0]

    def random_sym(self, rank):
        out = []
        for _ in range(rank):
            x = self.r.random()
            out.append(self.r.choice(self.syms) if x < 0.65 else 1 if x < 0.85
                       else self.r.randint(2, 4))
        return out

    def new_float_input(self, sym):
        return self.add_input(FLOAT, sym, exact=self.r.random() < 0.3)

    # -- shape helpers -------------------------------------------------------
    def compatible_dims(self, vec):
        """Symbols (and 1, and the static size) broadcast-compatible with a
        dimension whose run-time sizes are vec."""
        out = [s for s, v in self.symvec.items()
               if all(x == y or x == 1 or y == 1 for x, y in zip(vec, v))]
        out.append(1)
        if len(set(vec)) == 1:
            out.append(vec[0])
        return out

    def derive_sym(self, t, extra=True):
        """A symbolic shape that broadcasts with t at every assignment."""
        r = t.rank
        drop = min(r, self.r.choice([0, 0, 0, 1, 1, 2]))
        sym = []
        if extra and self.r.random() < 0.1:
            sym.append(self.r.choice(self.syms + [1, 2]))
        for i in range(drop, r):
            same = t.sym[i]
            cands = self.compatible_dims(t.dim(i))
            x = self.r.random()
            if same is not None and x < 0.25:
                sym.append(same)
            elif x < 0.85:
                other = [c for c in cands if c != same and c != 1]
                sym.append(self.r.choice(other or cands))
            else:
                sym.append(1)
        return sym

    def shape_of(self, t):
        if t.name in self.shape_cache and self.r.random() < 0.6:
            return self.shape_cache[t.name]
        s = self.node("Shape", [t], INT, [(t.rank,)] * self.na,
                      values=[np.array(sh, np.int64) for sh in t.shapes])
        self.shape_cache[t.name] = s
        return s

    def dim_scalar(self, t, i):
        """Gather(Shape(t), i): a scalar int64, as torch exports x.size(i)."""
        s = self.shape_of(t)
        idx = self.const(np.array(i if self.r.random() < 0.7 else i - t.rank, np.int64))
        return self.node("Gather", [s, idx], INT, [()] * self.na,
                         values=[np.array(sh[i], np.int64) for sh in t.shapes], axis=0)

    def unsq0(self, s):
        axes = self.const(np.array([0], np.int64))
        return self.node("Unsqueeze", [s, axes], INT, [(1,)] * self.na,
                         values=[v.reshape(1) for v in s.values])

    def concat_vec(self, parts):
        if len(parts) == 1:
            return parts[0]
        vals = [np.concatenate([p.values[a] for p in parts]) for a in range(self.na)]
        return self.node("Concat", parts, INT, [v.shape for v in vals], values=vals, axis=0)

    def int_const_part(self, values):
        return self.const(np.array(values, np.int64))

    def positive(self, t):
        a = self.node("Abs", [t], FLOAT, t.shapes)
        c = self.const(np.array(0.5, np.float32))
        return self.node("Add", [a, c], FLOAT, a.shapes)

    def float_partner(self, t):
        """Another float operand that broadcasts with t at every assignment."""
        x = self.r.random()
        if x < 0.25:
            cands = [u for u in self.pool(FLOAT) if u is not t
                     and all(bshape(a, b) is not None for a, b in zip(t.shapes, u.shapes))]
            if cands:
                return self.r.choice(cands)
        if x < 0.72:
            return self.new_float_input(self.derive_sym(t))
        if x < 0.82:
            return t
        if x < 0.92:
            drop = self.r.randint(0, t.rank)
            shape = [d if isinstance(d, int) and self.r.random() < 0.7 else 1 for d in t.sym[drop:]]
            return self.const(self.rng.standard_normal(shape).astype(np.float32))
        return self.const(np.array(self.r.choice([0.5, -1.5, 2.0]), np.float32))

    # -- ops -----------------------------------------------------------------
    def op_binary(self):
        a = self.pick(FLOAT)
        op = self.r.choice(["Add", "Sub", "Mul", "Div", "Max", "Min"])
        b = self.float_partner(a)
        ins = [a, b]
        if op == "Div":
            ins = [a, self.positive(b)]
        elif self.r.random() < 0.5:
            ins = [b, a]
        if op in ("Max", "Min") and self.r.random() < 0.2:
            ins.append(self.float_partner(a))
        shapes = [bshape(*[t.shapes[k] for t in ins]) for k in range(self.na)]
        exact = all(t.exact for t in ins) and op != "Div"
        return self.node(op, ins, FLOAT, shapes, exact=exact)

    def op_int_binary(self):
        a = self.pick(INT)
        b = self.r.choice([a, self.const(np.array(self.r.choice([1, 2, -1]), np.int64))]
                          + [u for u in self.pool(INT) if u is not a and all(
                              bshape(p, q) is not None for p, q in zip(a.shapes, u.shapes))])
        op = self.r.choice(["Add", "Sub", "Mul", "Max", "Min"])
        f = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Max": np.maximum,
             "Min": np.minimum}[op]
        shapes = [bshape(p, q) for p, q in zip(a.shapes, b.shapes)]
        vals = None
        if a.values is not None and b.values is not None:
            vals = [f(p, q) for p, q in zip(a.values, b.values)]
        return self.node(op, [a, b], INT, shapes, values=vals)

    def op_unary(self):
        t = self.pick(FLOAT)
        op = self.r.choice(["Relu", "Tanh", "Sigmoid", "Exp", "Abs", "Neg", "Sqrt"])
        if op == "Exp":
            t = self.node("Tanh", [t], FLOAT, t.shapes)
        if op == "Sqrt":
            t = self.node("Abs", [t], FLOAT, t.shapes, exact=t.exact)
        return self.node(op, [t], FLOAT, t.shapes, exact=t.exact and op in ("Relu", "Abs", "Neg"))

    def op_compare(self):
        a = self.pick(FLOAT)
        b = self.float_partner(a)
        op = "Equal" if a.exact and b.exact and self.r.random() < 0.7 else \
            self.r.choice(["Less", "Greater"])
        shapes = [bshape(x, y) for x, y in zip(a.shapes, b.shapes)]
        return self.node(op, [a, b], BOOL, shapes)

    def op_where(self):
        x = self.pick(FLOAT)
        y = self.float_partner(x)
        c = self.r.random()
        if c < 0.5:
            cond = self.op_compare_on(x)
        elif c < 0.8:
            cond = self.add_input(BOOL, self.derive_sym(x))
        else:
            cands = [u for u in self.pool(BOOL)
                     if all(bshape(a, b, u_) is not None
                            for a, b, u_ in zip(x.shapes, y.shapes, u.shapes))]
            cond = self.r.choice(cands) if cands else self.add_input(BOOL, self.derive_sym(x))
        ins = [cond, x, y] if self.r.random() < 0.5 else [cond, y, x]
        shapes = [bshape(*[t.shapes[k] for t in ins]) for k in range(self.na)]
        return self.node("Where", ins, FLOAT, shapes, exact=x.exact and y.exact)

    def op_compare_on(self, x):
        b = self.float_partner(x)
        op = "Equal" if x.exact and b.exact else "Less"
        return self.node(op, [x, b], BOOL, [bshape(p, q) for p, q in zip(x.shapes, b.shapes)])

    def op_cast(self):
        t = self.r.choice(self.pool())
        x = self.r.random()
        if t.kind == FLOAT:
            to = FLOAT if x < 0.6 or not t.exact else (INT if x < 0.85 else BOOL)
        elif t.kind == INT:
            to = FLOAT if x < 0.5 else (INT if x < 0.8 else BOOL)
        else:
            to = FLOAT if x < 0.5 else (INT if x < 0.8 else BOOL)
        vals = None
        if t.values is not None and to == INT:
            vals = t.values
        return self.node("Cast", [t], to, t.shapes, values=vals, exact=t.kind != FLOAT or t.exact,
                         to=ONNX_TYPE[to])

    def op_identity(self):
        t = self.r.choice(self.pool())
        return self.node("Identity", [t], t.kind, t.shapes, values=t.values, exact=t.exact)

    def op_reshape_const(self):
        x = self.pick(self.r.choice([FLOAT, FLOAT, FLOAT, INT]))
        r = x.rank
        for _ in range(30):
            n = self.r.randint(1, r + 1)
            target, has_neg = [], False
            for j in range(n):
                c = self.r.random()
                if j < r and c < 0.45:
                    target.append(0)
                elif c < 0.65 and not has_neg:
                    target.append(-1)
                    has_neg = True
                elif c < 0.85:
                    target.append(1)
                else:
                    stat = [d for d in x.sym if isinstance(d, int) and d > 1]
                    target.append(self.r.choice(stat) if stat else 1)
            shapes = [reshape_out(s, target) for s in x.shapes]
            if all(s is not None for s in shapes):
                break
        else:
            target = [0] * (r - 1) + [-1] if r else [1]
            shapes = [reshape_out(s, target) for s in x.shapes]
        tt = self.const(np.array(target, np.int64))
        vals = [x.values[a].reshape(shapes[a]) for a in range(self.na)] if x.values else None
        return self.node("Reshape", [x, tt], x.kind, shapes, values=vals, exact=x.exact)

    def op_reshape_computed(self):
        x = self.pick(self.r.choice([FLOAT, FLOAT, FLOAT, INT]))
        r = x.rank
        c = self.r.random()
        if c < 0.35:
            # The shape of another tensor with the same number of elements:
            # a Reshape between fully dynamic types (often of the same rank).
            cands = [u for u in self.pool() if u is not x and
                     all(numel(a) == numel(b) for a, b in zip(u.shapes, x.shapes))]
            if r >= 2 and (not cands or self.r.random() < 0.5):
                perm = list(range(r))
                self.r.shuffle(perm)
                u = self.node("Transpose", [x], x.kind,
                              [tuple(s[p] for p in perm) for s in x.shapes], perm=perm)
                cands.append(u)
            if not cands:
                raise Reject("no same-size tensor")
            target = self.shape_of(self.r.choice(cands))
        elif c < 0.5 and r >= 1:
            # A shape given as a graph input: nothing to infer from.
            perm = list(range(r))
            if self.r.random() < 0.5:
                self.r.shuffle(perm)
            vals = [[s[p] for p in perm] for s in x.shapes]
            if r >= 2 and self.r.random() < 0.4:
                vals = [[v[0] * v[1]] + v[2:] for v in vals]
            if self.r.random() < 0.3:
                j = self.r.randrange(len(vals[0]))
                for v in vals:
                    v[j] = -1
            if self.r.random() < 0.2:
                j = self.r.randint(0, len(vals[0]))
                for v in vals:
                    v.insert(j, 1)
            target = self.values_input([np.array(v, np.int64) for v in vals])
        elif c < 0.6 and r >= 1:
            # Shape(x, start, end) + [-1]
            k = self.r.randint(0, r - 1)
            vals = [np.array(s[:k], np.int64) for s in x.shapes]
            head = self.node("Shape", [x], INT, [(k,)] * self.na, values=vals, end=k) if k else None
            tail = self.int_const_part([-1] + [1] * self.r.randint(0, 1))
            target = self.concat_vec([head, tail]) if head is not None else tail
        else:
            idx = list(range(r))
            if self.r.random() < 0.5:
                self.r.shuffle(idx)
            parts, i, used_neg = [], 0, False
            while i < len(idx):
                y = self.r.random()
                if y < 0.2 and i + 1 < len(idx):
                    m = self.node("Mul", [self.dim_scalar(x, idx[i]), self.dim_scalar(x, idx[i + 1])],
                                  INT, [()] * self.na,
                                  values=[np.array(s[idx[i]] * s[idx[i + 1]], np.int64)
                                          for s in x.shapes])
                    parts.append(self.unsq0(m))
                    i += 2
                    continue
                if y < 0.3 and not used_neg:
                    parts.append(self.int_const_part([-1]))
                    used_neg = True
                elif y < 0.4:
                    parts.append(self.int_const_part([1]))
                    continue
                else:
                    parts.append(self.unsq0(self.dim_scalar(x, idx[i])))
                i += 1
            if not parts:
                parts = [self.int_const_part([1])]
            target = self.concat_vec(parts)
        shapes = [reshape_out(s, v) for s, v in zip(x.shapes, target.values)]
        vals = [x.values[a].reshape(shapes[a]) for a in range(self.na)] \
            if x.values and all(shapes) else None
        return self.node("Reshape", [x, target], x.kind, shapes, values=vals, exact=x.exact)

    def op_expand(self):
        x = self.pick(FLOAT)
        c = self.r.random()
        if c < 0.3:
            target = []
            if self.r.random() < 0.4:
                target.append(self.r.choice([1, 2, 3]))
            for i in range(x.rank):
                vec = x.dim(i)
                if set(vec) == {1} and self.r.random() < 0.6:
                    target.append(self.r.choice([2, 3]))
                elif len(set(vec)) == 1 and self.r.random() < 0.5:
                    target.append(vec[0])
                else:
                    target.append(1)
            if self.r.random() < 0.2 and target:
                target = target[self.r.randint(0, len(target) - 1):]
            t = self.const(np.array(target, np.int64))
        else:
            cands = [u for u in self.pool() if u is not x and
                     all(bshape(a, b) is not None for a, b in zip(x.shapes, u.shapes))]
            if not cands or c < 0.55:
                u = self.add_input(FLOAT, self.derive_sym(x))
            else:
                u = self.r.choice(cands)
            t = self.shape_of(u) if self.r.random() < 0.85 else \
                self.values_input([np.array(sh, np.int64) for sh in u.shapes])
            if c > 0.85:
                # torch's pattern: Where(Equal(shape, -1), 1, shape)
                eq = self.node("Equal", [t, self.const(np.array(-1, np.int64))], BOOL,
                               t.shapes)
                ones = self.const(np.ones(t.shapes[0], np.int64))
                t = self.node("Where", [eq, ones, t], INT, t.shapes, values=t.values)
        shapes = [bshape(s, tuple(v)) for s, v in zip(x.shapes, t.values)]
        return self.node("Expand", [x, t], FLOAT, shapes, exact=x.exact)

    SLICES = [(0, BIG, 1), (1, BIG, 1), (0, -1, 1), (-2, BIG, 1), (-1, -BIG, -1),
              (0, BIG, 2), (1, 3, 1), (-3, -1, 1), (-1, BIG, 1), (0, 1, 1), (-1, 0, -1),
              (-2, -BIG, -2), (2, 0, -1), (1, 1000, 1), (-1000, 2, 1), (BIG, -BIG, -1)]

    def op_slice(self):
        x = self.pick(self.r.choice([FLOAT, FLOAT, FLOAT, INT]), min_rank=1)
        r = x.rank
        axes = self.r.sample(range(r), self.r.randint(1, min(2, r)))
        starts, ends, steps, computed = [], [], [], None
        shapes = [list(s) for s in x.shapes]
        for j, ax in enumerate(axes):
            if j == 0 and self.r.random() < 0.2:
                # end from another tensor's size (x[:, :y.size(k)]): never empty
                u = self.pick(None, min_rank=1)
                k = self.r.randrange(u.rank)
                computed = self.unsq0(self.dim_scalar(u, k))
                st, en, sp = 0, None, 1
                for a in range(self.na):
                    shapes[a][ax] = slice_len(x.shapes[a][ax], 0, u.shapes[a][k], 1)
            else:
                opts = list(self.SLICES)
                self.r.shuffle(opts)
                for st, en, sp in opts:
                    if all(slice_len(s[ax], st, en, sp) > 0 for s in x.shapes):
                        break
                else:
                    st, en, sp = 0, BIG, 1
                for a in range(self.na):
                    shapes[a][ax] = slice_len(x.shapes[a][ax], st, en, sp)
            starts.append(st)
            ends.append(en)
            steps.append(sp)
        if computed is not None:
            rest = [self.int_const_part(ends[1:])] if len(ends) > 1 else []
            ends_t = self.concat_vec([computed] + rest)
        else:
            ends_t = self.const(np.array(ends, np.int64))
        if computed is None and self.r.random() < 0.15:
            ends_t = self.values_input([np.array(ends, np.int64)] * self.na)
        ins = [x, self.const(np.array(starts, np.int64)), ends_t]
        neg_axes = [a - r if self.r.random() < 0.3 else a for a in axes]
        omit_axes = axes == list(range(len(axes))) and self.r.random() < 0.5
        with_steps = any(s != 1 for s in steps) or self.r.random() < 0.3
        if not omit_axes or with_steps:
            ins.append(self.const(np.array(neg_axes, np.int64)))
        if with_steps:
            ins.append(self.const(np.array(steps, np.int64)))
        vals = None
        if x.values is not None and computed is None:
            vals = []
            for a in range(self.na):
                sl = [slice(None)] * r
                for ax, st, en, sp in zip(axes, starts, ends, steps):
                    sl[ax] = slice(st, en, sp)
                vals.append(x.values[a][tuple(sl)])
        return self.node("Slice", ins, x.kind, [tuple(s) for s in shapes], values=vals,
                         exact=x.exact)

    def values_input(self, values):
        """An int64 input (a shape, starts, ...) fed with known values."""
        rank = np.ndim(values[0])
        sizes = [np.shape(v) for v in values]
        sym = self.infer_sym(sizes) if rank else []
        if any(d is None for d in sym):
            raise Reject("values input")
        t = self.add_input(INT, sym, spec=("values", [np.asarray(v, np.int64) for v in values]))
        t.values = [np.asarray(v, np.int64) for v in values]
        return t

    def index_input(self, sym, bounds, int32=True):
        """An int64 (or int32) input of symbolic shape sym whose values at
        assignment a lie in [-bounds[a], bounds[a] - 1] (bounds[a] broadcasts)."""
        dt = np.int32 if int32 and self.r.random() < 0.2 else np.int64
        t = self.add_input(INT, sym, spec=("index", bounds, dt))
        t.const = dt == np.int32  # not an operand of other ops (int64 only)
        return t

    def const_indices(self, shape, m, int32=True):
        m = np.asarray(m)
        v = np.floor(self.rng.random(shape) * 2 * m).astype(np.int64) - m
        return self.const(v.astype(np.int32 if int32 and self.r.random() < 0.2 else np.int64))

    def op_gather(self):
        x = self.pick(self.r.choice([FLOAT, FLOAT, FLOAT, INT]), min_rank=1)
        r = x.rank
        axis = self.r.choice([0, 0, 1, -1, self.r.randrange(r)])
        axis = axis if -r <= axis < r else 0
        ax = axis % r
        bound = x.dim(ax)
        c = self.r.random()
        if c < 0.45:
            shape = self.r.choice([(), (), (1,), (2,), (3,), (2, 2)])
            idx = self.const_indices(shape, min(bound))
            ishapes = [shape] * self.na
        else:
            sym = self.r.choice([[], [1], [2], [self.r.choice(self.syms)],
                                 [self.r.choice(self.syms), 2]])
            idx = self.index_input(sym, [np.array(b) for b in bound])
            ishapes = idx.shapes
        shapes = [s[:ax] + tuple(i) + s[ax + 1:] for s, i in zip(x.shapes, ishapes)]
        vals = None
        if x.values is not None and idx.values is not None:
            vals = [np.take(x.values[a], idx.values[a], axis=ax) for a in range(self.na)]
        return self.node("Gather", [x, idx], x.kind, shapes, values=vals, exact=x.exact,
                         axis=axis)

    def op_gather_elements(self):
        x = self.pick(FLOAT, min_rank=1)
        r = x.rank
        ax = self.r.randrange(r)
        sym = []
        for j in range(r):
            if j == ax:
                sym.append(self.r.choice(self.syms + [1, 2, 3]))
            else:
                sym.append(x.sym[j] if x.sym[j] is not None and self.r.random() < 0.7 else 1)
        bound = x.dim(ax)
        if all(isinstance(d, int) for d in sym) and self.r.random() < 0.5:
            idx = self.const_indices(tuple(sym), min(bound))
        else:
            idx = self.index_input(sym, [np.array(b) for b in bound])
        axis = ax - r if self.r.random() < 0.3 else ax
        return self.node("GatherElements", [x, idx], FLOAT, idx.shapes, exact=x.exact, axis=axis)

    def op_gather_nd(self):
        x = self.pick(FLOAT, min_rank=1)
        r = x.rank
        b = 1 if r >= 2 and x.sym[0] is not None and self.r.random() < 0.3 else 0
        q = self.r.randint(1, r - b)
        extra = self.r.choice([[], [], [2], [1], [self.r.choice(self.syms)]])
        sym = x.sym[:b] + extra + [q]
        bounds = [np.array(s[b:b + q]) for s in x.shapes]
        if all(isinstance(d, int) for d in sym) and self.r.random() < 0.5:
            idx = self.const_indices(tuple(sym), np.min(np.stack(bounds), axis=0), int32=False)
        else:
            idx = self.index_input(sym, bounds, int32=False)
        shapes = [s[:b] + tuple(i[b:-1]) + s[b + q:] for s, i in zip(x.shapes, idx.shapes)]
        return self.node("GatherND", [x, idx], FLOAT, shapes, exact=x.exact, batch_dims=b)

    def op_concat(self):
        x = self.pick(self.r.choice([FLOAT, FLOAT, FLOAT, INT]), min_rank=1)
        r = x.rank
        ax = self.r.randrange(r)
        ins = [x]
        for _ in range(self.r.choice([1, 1, 2])):
            c = self.r.random()
            if c < 0.3:
                cands = [u for u in self.pool(x.kind) if u is not x and u.rank == r and all(
                    a[:ax] == b[:ax] and a[ax + 1:] == b[ax + 1:] for a, b in zip(x.shapes, u.shapes))]
                if cands:
                    ins.append(self.r.choice(cands))
                    continue
            if c < 0.6 and x.kind == FLOAT and all(
                    d is not None for j, d in enumerate(x.sym) if j != ax):
                sym = list(x.sym)
                sym[ax] = self.r.choice(self.syms + [1, 2])
                ins.append(self.new_float_input(sym))
            elif c < 0.8 and x.kind == FLOAT:
                ins.append(self.node("Relu", [x], FLOAT, x.shapes, exact=x.exact))
            else:
                ins.append(x)
        shapes = []
        for a in range(self.na):
            s = list(x.shapes[a])
            s[ax] = sum(t.shapes[a][ax] for t in ins)
            shapes.append(tuple(s))
        vals = None
        if all(t.values is not None for t in ins):
            vals = [np.concatenate([t.values[a] for t in ins], axis=ax) for a in range(self.na)]
        axis = ax - r if self.r.random() < 0.3 else ax
        return self.node("Concat", ins, x.kind, shapes, values=vals,
                         exact=all(t.exact for t in ins), axis=axis)

    def op_transpose(self):
        x = self.pick(self.r.choice([FLOAT, FLOAT, FLOAT, BOOL]), min_rank=2)
        r = x.rank
        perm = list(range(r))
        while perm == list(range(r)):
            self.r.shuffle(perm)
        if self.r.random() < 0.15:
            perm = list(range(r))[::-1]
            return self.node("Transpose", [x], x.kind,
                             [tuple(s[p] for p in perm) for s in x.shapes], exact=x.exact)
        return self.node("Transpose", [x], x.kind, [tuple(s[p] for p in perm) for s in x.shapes],
                         exact=x.exact, perm=perm)

    def op_unsqueeze(self):
        x = self.pick(self.r.choice([FLOAT, FLOAT, INT]), max_rank=4)
        r = x.rank
        n = self.r.choice([1, 1, 2])
        out_rank = r + n
        axes = sorted(self.r.sample(range(out_rank), n))
        shapes = []
        for s in x.shapes:
            it = iter(s)
            shapes.append(tuple(1 if j in axes else next(it) for j in range(out_rank)))
        axes_in = [a - out_rank if self.r.random() < 0.3 else a for a in axes]
        vals = [x.values[a].reshape(shapes[a]) for a in range(self.na)] if x.values else None
        return self.node("Unsqueeze", [x, self.const(np.array(axes_in, np.int64))], x.kind,
                         shapes, values=vals, exact=x.exact)

    def op_squeeze(self):
        cands = [t for t in self.pool() if any(set(t.dim(i)) == {1} for i in range(t.rank))]
        if not cands:
            raise Reject("nothing to squeeze")
        x = self.r.choice(cands)
        ones = [i for i in range(x.rank) if set(x.dim(i)) == {1}]
        axes = sorted(self.r.sample(ones, self.r.randint(1, len(ones))))
        shapes = [tuple(d for j, d in enumerate(s) if j not in axes) for s in x.shapes]
        vals = [x.values[a].reshape(shapes[a]) for a in range(self.na)] if x.values else None
        axes_in = [a - x.rank if self.r.random() < 0.3 else a for a in axes]
        return self.node("Squeeze", [x, self.const(np.array(axes_in, np.int64))], x.kind, shapes,
                         values=vals, exact=x.exact)

    def op_reduce(self):
        x = self.pick(FLOAT, min_rank=1)
        r = x.rank
        op = self.r.choice(["ReduceSum", "ReduceMean", "ReduceMax"])
        keep = self.r.choice([0, 1])
        if self.r.random() < 0.15:
            axes = None
            red = list(range(r))
        else:
            red = sorted(self.r.sample(range(r), self.r.randint(1, r)))
            axes = [a - r if self.r.random() < 0.3 else a for a in red]
        shapes = [tuple((1 if keep else None) if j in red else d for j, d in enumerate(s))
                  for s in x.shapes]
        shapes = [tuple(d for d in s if d is not None) for s in shapes]
        attrs = {"keepdims": keep}
        ins = [x]
        if axes is not None:
            if op == "ReduceSum" or self.opset >= 18:
                ins.append(self.const(np.array(axes, np.int64)))
            else:
                attrs["axes"] = axes
        return self.node(op, ins, FLOAT, shapes, exact=x.exact and op != "ReduceMean", **attrs)

    def op_softmax(self):
        x = self.pick(FLOAT, min_rank=1)
        axis = self.r.randrange(-x.rank, x.rank)
        return self.node("Softmax", [x], FLOAT, x.shapes, axis=axis)

    def op_matmul(self):
        a = self.pick(FLOAT, min_rank=1, max_rank=4)
        c = self.r.random()
        if c < 0.3:
            if a.rank == 1:
                b = a
            else:
                perm = list(range(a.rank))
                perm[-1], perm[-2] = perm[-2], perm[-1]
                b = self.node("Transpose", [a], FLOAT,
                              [tuple(s[p] for p in perm) for s in a.shapes], perm=perm)
        elif c < 0.5:
            cands = [u for u in self.pool(FLOAT, min_rank=1) if
                     all(matmul_shape(p, q) is not None for p, q in zip(a.shapes, u.shapes))]
            if not cands:
                raise Reject("no matmul partner")
            b = self.r.choice(cands)
        else:
            k = a.sym[-1]
            if k is None:
                raise Reject("unknown k")
            n = self.r.choice(self.syms + [1, 2, 3])
            if a.rank <= 2 or self.r.random() < 0.3:
                sym = [k, n] if self.r.random() < 0.9 else [k]
            else:
                fake = Tensor("", FLOAT, [s[:-2] for s in a.shapes], a.sym[:-2])
                sym = self.derive_sym(fake, extra=False) + [k, n]
            if self.r.random() < 0.3 and len(sym) >= 2:
                # a transposed input (the transpose may be fused into the product)
                perm = list(range(len(sym)))
                while perm == list(range(len(sym))):
                    self.r.shuffle(perm)
                inv = [perm.index(j) for j in range(len(sym))]
                bt = self.new_float_input([sym[p] for p in perm])
                b = self.node("Transpose", [bt], FLOAT,
                              [tuple(sh[p] for p in inv) for sh in bt.shapes], perm=inv)
            else:
                b = self.new_float_input(sym)
        if self.r.random() < 0.25 and b.rank >= 2 and a.rank > 2:
            # b broadcast to a's batch dimensions by an Expand (fusable)
            head = self.node("Shape", [a], INT, [(a.rank - 2,)] * self.na,
                             values=[np.array(sh[:-2], np.int64) for sh in a.shapes], end=-2)
            tail = self.node("Shape", [b], INT, [(2,)] * self.na,
                             values=[np.array(sh[-2:], np.int64) for sh in b.shapes], start=-2)
            target = self.concat_vec([head, tail])
            b = self.node("Expand", [b, target], FLOAT,
                          [bshape(sh, tuple(v)) for sh, v in zip(b.shapes, target.values)])
        ins = [a, b] if self.r.random() < 0.85 or c >= 0.3 else [b, a]
        shapes = [matmul_shape(p, q) for p, q in zip(ins[0].shapes, ins[1].shapes)]
        return self.node("MatMul", ins, FLOAT, shapes)

    def op_shape(self):
        x = self.r.choice(self.pool())
        c = self.r.random()
        if c < 0.3:
            return self.node("Size", [x], INT, [()] * self.na,
                             values=[np.array(numel(s), np.int64) for s in x.shapes])
        if c < 0.5 and x.rank >= 2:
            start = self.r.randint(-x.rank, x.rank - 1)
            vals = [np.array(s[start:], np.int64) for s in x.shapes]
            return self.node("Shape", [x], INT, [v.shape for v in vals], values=vals, start=start)
        if c < 0.8 and x.rank >= 1:
            s = self.dim_scalar(x, self.r.randrange(x.rank))
            if self.r.random() < 0.6:
                other = self.dim_scalar(x, self.r.randrange(x.rank)) if self.r.random() < 0.6 \
                    else self.const(np.array(self.r.choice([1, 2, 3]), np.int64))
                op = self.r.choice(["Add", "Mul", "Sub"])
                f = {"Add": np.add, "Mul": np.multiply, "Sub": np.subtract}[op]
                vals = [f(p, q) for p, q in zip(s.values, other.values)]
                s = self.node(op, [s, other], INT, [()] * self.na, values=vals)
            return s
        return self.shape_of(x)

    def op_range(self):
        x = self.pick(FLOAT, min_rank=1)
        ax = self.r.randrange(x.rank)
        n = self.dim_scalar(x, ax)
        if self.r.random() < 0.3:
            nf = self.node("Cast", [n], FLOAT, n.shapes, to=TensorProto.FLOAT)
            rg = self.node("Range", [self.const(np.array(0.0, np.float32)), nf,
                                     self.const(np.array(1.0, np.float32))],
                           FLOAT, [(int(v),) for v in n.values], exact=True)
        else:
            start = self.r.choice([0, 0, 1])
            vals = [np.arange(start, int(v), 1, dtype=np.int64) for v in n.values]
            if any(v.size == 0 for v in vals):
                start = 0
                vals = [np.arange(0, int(v), 1, dtype=np.int64) for v in n.values]
            rg = self.node("Range", [self.const(np.array(start, np.int64)), n,
                                     self.const(np.array(1, np.int64))],
                           INT, [v.shape for v in vals], values=vals)
            if ax != x.rank - 1 or start != 0 or self.r.random() < 0.3:
                return rg
            rg = self.node("Cast", [rg], FLOAT, rg.shapes, to=TensorProto.FLOAT, exact=True)
        if ax == x.rank - 1 and rg.shapes == [(s[-1],) for s in x.shapes]:
            return self.node("Add", [x, rg], FLOAT, x.shapes, exact=x.exact)
        return rg

    def op_trilu(self):
        x = self.pick(FLOAT, min_rank=2)
        ins = [x]
        if self.r.random() < 0.6:
            ins.append(self.const(np.array(self.r.choice([-1, 0, 1, 2]), np.int64)))
        return self.node("Trilu", ins, FLOAT, x.shapes, exact=x.exact,
                         upper=self.r.choice([0, 1]))

    def op_cumsum(self):
        x = self.pick(FLOAT, min_rank=1)
        axis = self.r.randrange(-x.rank, x.rank)
        dt = np.int64 if self.r.random() < 0.7 else np.int32
        return self.node("CumSum", [x, self.const(np.array(axis, dt))], FLOAT, x.shapes,
                         exact=x.exact, exclusive=self.r.choice([0, 1]),
                         reverse=self.r.choice([0, 1]))

    def op_constant_of_shape(self):
        u = self.r.choice(self.pool(min_rank=1) or [self.pick(FLOAT, min_rank=1)])
        s = self.shape_of(u)
        value = numpy_helper.from_array(np.array([self.r.choice([0.5, 1.0, -2.0])], np.float32))
        t = self.node("ConstantOfShape", [s], FLOAT, u.shapes, exact=True, value=value)
        y = self.float_partner(t)
        return self.node(self.r.choice(["Add", "Mul"]), [t, y], FLOAT,
                         [bshape(p, q) for p, q in zip(t.shapes, y.shapes)], exact=y.exact)

    OPS = [("binary", 14), ("int_binary", 2), ("unary", 6), ("compare", 2), ("where", 3), ("cast", 3),
           ("identity", 2), ("reshape_const", 5), ("reshape_computed", 6), ("expand", 5),
           ("slice", 5), ("gather", 5), ("gather_elements", 2), ("gather_nd", 3),
           ("concat", 4), ("transpose", 4), ("unsqueeze", 3), ("squeeze", 2), ("reduce", 5),
           ("softmax", 2), ("matmul", 4), ("shape", 3), ("range", 2), ("trilu", 1),
           ("cumsum", 2), ("constant_of_shape", 1)]

    def alias(self, t):
        c = self.r.random()
        if c < 0.35:
            return self.node("Identity", [t], t.kind, t.shapes, values=t.values)
        if c < 0.6:
            return self.node("Cast", [t], t.kind, t.shapes, values=t.values, to=ONNX_TYPE[t.kind])
        if c < 0.75:
            target = self.shape_of(t)
        elif c < 0.82:
            target = self.const(np.zeros(t.rank, np.int64))
        elif c < 0.88:
            # a view of another shape
            return self.node("Reshape", [t, self.const(np.array([-1], np.int64))], t.kind,
                             [(numel(sh),) for sh in t.shapes])
        elif c < 0.94:
            return self.node("Unsqueeze", [t, self.const(np.array([0], np.int64))], t.kind,
                             [(1,) + tuple(sh) for sh in t.shapes])
        else:
            return self.node("Expand", [t, self.shape_of(t)], t.kind, t.shapes)
        return self.node("Reshape", [t, target], t.kind, t.shapes, values=t.values)

    def build(self):
        nin = self.r.randint(1, 3)
        for _ in range(nin):
            self.new_float_input(self.random_sym(self.r.randint(1, 4)))
        names = [n for n, _ in self.OPS]
        weights = [w for _, w in self.OPS]
        nops = self.r.randint(3, 14)
        done = tries = 0
        while done < nops and tries < 60:
            tries += 1
            op = self.r.choices(names, weights)[0]
            saved = (len(self.nodes), len(self.inits), len(self.inputs), len(self.tensors),
                     set(self.consumed), dict(self.shape_cache))
            try:
                getattr(self, "op_" + op)()
                done += 1
            except Reject:
                n, i, p, t, consumed, cache = saved
                del self.nodes[n:], self.inits[i:], self.inputs[p:], self.tensors[t:]
                self.consumed, self.shape_cache = consumed, cache
        produced = [t for t in self.tensors if not t.is_input and not t.const]
        leaves = [t for t in produced if t.name not in self.consumed]
        if not leaves:
            raise Reject("no outputs")
        self.r.shuffle(leaves)
        outs = leaves[:4]
        inner = [t for t in produced if t.name in self.consumed]
        if inner and self.r.random() < 0.3:
            outs.append(self.r.choice(inner))
        if self.r.random() < 0.1:
            t = self.r.choice([t for t, _ in self.inputs if not t.const])
            outs.append(self.node("Identity", [t], t.kind, t.shapes))
        if self.r.random() < 0.35:
            for t in list(outs):
                if self.r.random() < 0.5 or t is outs[0]:
                    outs.append(self.alias(t))
        self.outputs = outs
        return self.model()

    def model(self):
        inputs = []
        unnamed = self.r.random() < 0.15
        for t, spec in self.inputs:
            # now and then a dynamic dimension without a name (no link to others)
            sym = [None if unnamed and isinstance(d, str) and self.r.random() < 0.4 else d
                   for d in t.sym]
            elem = TensorProto.INT32 if spec[0] == "index" and spec[2] == np.int32 \
                else ONNX_TYPE[t.kind]
            inputs.append(helper.make_tensor_value_info(t.name, elem, sym))
        outputs = [helper.make_tensor_value_info(t.name, ONNX_TYPE[t.kind], None)
                   for t in self.outputs]
        graph = helper.make_graph(self.nodes, f"difftest{self.seed}", inputs, outputs,
                                  initializer=self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", self.opset)],
                                  producer_name="difftest")
        model.ir_version = 8
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True, data_prop=True)
        types = {v.name: v for v in list(inferred.graph.value_info) + list(inferred.graph.output)}
        rank_only = self.r.random() < 0.2
        del model.graph.output[:]
        for t in self.outputs:
            v = types.get(t.name)
            if v is None or not v.type.tensor_type.HasField("shape") or rank_only:
                v = helper.make_tensor_value_info(t.name, ONNX_TYPE[t.kind], [None] * t.rank)
            model.graph.output.append(v)
        if self.r.random() < 0.4:
            model.graph.value_info.extend(v for v in inferred.graph.value_info
                                          if v.name not in {t.name for t in self.outputs})
        return model

    def feeds(self):
        out = []
        for a in range(self.na):
            feed = {}
            for t, spec in self.inputs:
                shape = t.shapes[a]
                if spec[0] == "values":
                    feed[t.name] = np.asarray(spec[1][a], np.int64)
                    continue
                if spec[0] == "index":
                    m = np.broadcast_to(np.asarray(spec[1][a]), shape) if shape else \
                        np.asarray(spec[1][a])
                    v = np.floor(self.rng.random(shape) * 2 * m).astype(np.int64) - m
                    feed[t.name] = np.asarray(v, spec[2]).reshape(shape)
                elif t.kind == BOOL:
                    feed[t.name] = np.asarray(self.rng.random(shape) < 0.5, np.bool_)
                elif t.exact:
                    feed[t.name] = np.asarray(self.rng.integers(-3, 4, shape), np.float32)
                else:
                    feed[t.name] = np.asarray(self.rng.standard_normal(shape), np.float32)
            out.append(feed)
        return out


GEN_STATS = collections.Counter()


def generate(seed):
    """(model, feeds and onnxruntime's outputs per assignment); retried with
    derived seeds until the generator, ONNX's shape inference and
    onnxruntime accept the graph. Assignments onnxruntime rejects are
    dropped (at least two are kept)."""
    for attempt in range(20):
        g = Generator(seed * 31 + attempt if attempt else seed)
        try:
            model = g.build()
        except Reject:
            GEN_STATS["generator gave up"] += 1
            continue
        except (onnx.shape_inference.InferenceError, onnx.checker.ValidationError) as e:
            GEN_STATS["shape inference: " + str(e).splitlines()[0][:100]] += 1
            continue
        feeds = g.feeds()
        expected, err = reference(model, feeds)
        if expected is None:
            GEN_STATS["onnxruntime rejects the graph: " + err.splitlines()[0][:100]] += 1
            continue
        keep = [k for k, e in enumerate(expected) if e is not None]
        GEN_STATS["assignments onnxruntime rejects"] += len(expected) - len(keep)
        if len(keep) < 2:
            continue
        return model, [feeds[k] for k in keep], [expected[k] for k in keep]
    raise RuntimeError(f"could not generate a graph for seed {seed}")


# --------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------

def session(model):
    """The reference: onnxruntime without its graph rewrites, as
    test/lib/qopt_check.reference_session (one thread: cheaper here)."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), options,
                                providers=["CPUExecutionProvider"])


def reference(model, feeds_list):
    """onnxruntime's outputs per assignment (None where it refuses)."""
    try:
        sess = session(model)
    except Exception as e:  # noqa: BLE001
        return None, str(e)
    out = []
    for feeds in feeds_list:
        try:
            out.append(sess.run(None, feeds))
        except Exception:  # noqa: BLE001
            out.append(None)
    return out, None


def first_error_line(text):
    lines = [l.strip() for l in text.strip().splitlines() if l.strip()]
    for l in lines:
        if "error:" in l:
            return l.split("error:", 1)[1].strip()
    return lines[0] if lines else "?"


def compile_qoptc(model, workdir):
    """Returns (library, None) or (None, (status, message))."""
    path = os.path.join(workdir, "model.onnx")
    onnx.save(model, path)
    out = os.path.join(workdir, "model.so")
    cmd = [os.path.join(os.environ["QOPT_BIN"], "qoptc"), path, "-o", out]
    for attempt in range(5):
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        except subprocess.TimeoutExpired:
            return None, ("CRASH", "qoptc timed out")
        except OSError:
            # another agent may be rebuilding the tools
            time.sleep(30)
            continue
        break
    else:
        raise RuntimeError("qoptc not found")
    if r.returncode == 0:
        return out, None
    err = r.stderr
    if r.returncode < 0 or any(k in err for k in ("PLEASE submit", "Assertion", "LLVM ERROR",
                                                   "Stack dump", "UNREACHABLE")):
        line = next((l for l in err.splitlines() if "Assertion" in l or "LLVM ERROR" in l
                     or "UNREACHABLE" in l), None)
        return None, ("CRASH", f"qoptc rc={r.returncode}: " + (line or first_error_line(err)))
    return None, ("refused", first_error_line(err))


def _child(conn, library, feeds_list):
    try:
        import qopt
        m = qopt.load(library)
    except Exception as e:  # noqa: BLE001
        conn.send(("load", -1, f"{type(e).__name__}: {e}"))
        conn.close()
        return
    for k, feeds in enumerate(feeds_list):
        try:
            outs = m.run(**feeds)
            conn.send(("ok", k, [np.asarray(o) for o in outs]))
        except Exception as e:  # noqa: BLE001
            conn.send(("err", k, f"{type(e).__name__}: {e}"))
    conn.send(("done", -1, None))
    conn.close()


def run_library(library, feeds_list):
    """Runs the library in a child process at each assignment. Returns a list
    of ('ok', outputs) / ('err', message) / ('crash', message), one per
    assignment (None after a crash)."""
    ctx = multiprocessing.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)
    p = ctx.Process(target=_child, args=(child, library, feeds_list))
    p.start()
    child.close()
    results = [None] * len(feeds_list)
    crashed = None
    deadline = time.time() + RUN_TIMEOUT
    while True:
        left = deadline - time.time()
        if left <= 0:
            crashed = "timed out"
            p.kill()
            break
        if parent.poll(min(left, 1.0)):
            try:
                kind, k, payload = parent.recv()
            except EOFError:
                p.join(5)
                crashed = f"the child died (exit code {p.exitcode})"
                break
            if kind == "done":
                break
            if kind == "load":
                crashed = "load failed: " + payload
                break
            results[k] = (kind, payload)
        elif not p.is_alive() and not parent.poll(0):
            p.join(5)
            crashed = f"the child died (exit code {p.exitcode})"
            break
    p.join(5)
    if p.is_alive():
        p.kill()
        p.join()
    if crashed:
        k = next((i for i, r in enumerate(results) if r is None), None)
        if k is not None:
            results[k] = ("crash", crashed)
    return results


def compare(expected, got):
    if len(expected) != len(got):
        return f"{len(got)} outputs, expected {len(expected)}"
    for i, (e, g) in enumerate(zip(expected, got)):
        e, g = np.asarray(e), np.asarray(g)
        if e.shape != g.shape:
            return f"output {i}: shape {g.shape}, expected {e.shape}"
        if e.dtype == np.bool_ or np.issubdtype(e.dtype, np.integer):
            if g.dtype.kind != e.dtype.kind and not (e.dtype == np.bool_ and g.dtype.kind in "iub"):
                return f"output {i}: dtype {g.dtype}, expected {e.dtype}"
            if not np.array_equal(e.astype(np.int64), g.astype(np.int64)):
                bad = int(np.sum(e.astype(np.int64) != g.astype(np.int64)))
                return f"output {i}: {bad}/{e.size} values differ (exact)"
        else:
            if g.dtype.kind != "f":
                return f"output {i}: dtype {g.dtype}, expected {e.dtype}"
            scale = max(1.0, float(np.max(np.abs(e[np.isfinite(e)])))) if np.any(np.isfinite(e)) \
                else 1.0
            g64, e64 = g.astype(np.float64), e.astype(np.float64)
            if not np.allclose(g64, e64, rtol=RTOL, atol=ATOL * scale, equal_nan=True):
                with np.errstate(invalid="ignore"):
                    err = np.nanmax(np.abs(g64 - e64) / (np.abs(e64) + ATOL * scale))
                bad = int(np.sum(~np.isclose(g64, e64, rtol=RTOL, atol=ATOL * scale,
                                             equal_nan=True)))
                return f"output {i}: {bad}/{e.size} values differ, max relative error {err:.3g}"
    return None


def evaluate(model, feeds_list, workdir, expected=None):
    """Classifies one graph: ('ok'|'refused'|'MISMATCH'|'RUN-ERROR'|'CRASH'|
    'invalid', message, details) where details lists (assignment, status,
    message) for the assignments that failed."""
    err = None
    if expected is None:
        expected, err = reference(model, feeds_list)
    if expected is None:
        return "invalid", "onnxruntime: " + err.splitlines()[0], []
    valid = [k for k, e in enumerate(expected) if e is not None]
    if not valid:
        return "invalid", "onnxruntime rejects every assignment", []
    library, refusal = compile_qoptc(model, workdir)
    if refusal:
        return refusal[0], refusal[1], []
    results = run_library(library, [feeds_list[k] for k in valid])
    details = []
    for k, res in zip(valid, results):
        if res is None:
            continue
        kind, payload = res
        if kind == "crash":
            details.append((k, "CRASH", payload))
        elif kind == "err":
            details.append((k, "RUN-ERROR", payload))
        else:
            msg = compare(expected[k], payload)
            if msg:
                details.append((k, "MISMATCH", msg))
    if not details:
        return "ok", "", []
    order = {"CRASH": 0, "RUN-ERROR": 1, "MISMATCH": 2}
    worst = min(details, key=lambda d: order[d[1]])
    return worst[1], worst[2], details


def shapes_text(model, feeds):
    return " ".join(f"{i.name}:{'x'.join(map(str, feeds[i.name].shape)) or 'scalar'}"
                    for i in model.graph.input)


def op_summary(model):
    return ",".join(sorted({n.op_type for n in model.graph.node if n.op_type != "Constant"}))


def graph_seed(seed, i):
    return seed * 100003 + i


def keep_failure(folder, i, model, feeds_list, status, message, details, gseed):
    d = os.path.join(folder, f"graph{i}")
    os.makedirs(d, exist_ok=True)
    onnx.save(model, os.path.join(d, "model.onnx"))
    for k, _, _ in details:
        for name, arr in feeds_list[k].items():
            np.save(os.path.join(d, f"case{k}.{name}.npy"), arr)
    with open(os.path.join(d, "README"), "w") as f:
        f.write(f"graph {i} (generator seed {gseed}): {status}: {message}\n")
        for k, st, msg in details:
            f.write(f"  case{k} [{shapes_text(model, feeds_list[k])}]: {st}: {msg}\n")


# --------------------------------------------------------------------------
# Minimizing
# --------------------------------------------------------------------------

def normalise(status, message):
    if status == "MISMATCH":
        return status, "shape" if "shape" in message else ("dtype" if "dtype" in message
                                                            else "values")
    m = re.sub(r"'[^']*'", "''", message)
    m = re.sub(r"\d+", "N", m)
    return status, m[:60]


def prune(model):
    """Drops nodes, initializers and inputs nothing needed reads."""
    g = model.graph
    needed = {o.name for o in g.output}
    keep = []
    for n in reversed(list(g.node)):
        if any(o in needed for o in n.output):
            keep.append(n)
            needed.update(i for i in n.input if i)
    keep.reverse()
    del g.node[:]
    g.node.extend(keep)
    inits = [t for t in g.initializer if t.name in needed]
    del g.initializer[:]
    g.initializer.extend(inits)
    ins = [i for i in g.input if i.name in needed]
    del g.input[:]
    g.input.extend(ins)
    vi = [v for v in g.value_info if v.name in needed]
    del g.value_info[:]
    g.value_info.extend(vi)
    return model


def retype_outputs(model):
    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True, data_prop=True)
    except Exception:  # noqa: BLE001
        return None
    types = {v.name: v for v in list(inferred.graph.value_info) + list(inferred.graph.output)
             + list(inferred.graph.input)}
    outs = []
    for o in model.graph.output:
        if o.type.tensor_type.elem_type and o.type.tensor_type.HasField("shape"):
            w = onnx.ValueInfoProto()
            w.CopyFrom(o)
            outs.append(w)
            continue
        v = types.get(o.name)
        if v is None or not v.type.tensor_type.HasField("shape"):
            return None
        w = onnx.ValueInfoProto()
        w.CopyFrom(v)
        w.name = o.name
        outs.append(w)
    del model.graph.output[:]
    model.graph.output.extend(outs)
    return model


def minimize(model, feeds_list, workdir, verbose=False):
    status, message, details = evaluate(model, feeds_list, workdir)
    target = normalise(status, message)
    if status not in ("MISMATCH", "RUN-ERROR", "CRASH"):
        return None
    failing = sorted({k for k, st, msg in details if normalise(st, msg) == target})
    state = {"model": model, "feeds": [feeds_list[k] for k in failing]}

    def size(m):
        dynamic = sum(1 for i in m.graph.input for d in i.type.tensor_type.shape.dim
                      if not d.HasField("dim_value"))
        return (len([n for n in m.graph.node if n.op_type != "Constant"]) + len(m.graph.output)
                + dynamic + len(m.graph.input))

    def still_fails(m, feeds, allow_equal=False):
        m = prune(m)
        m = retype_outputs(m)
        if m is None or not m.graph.node:
            return False
        if size(m) > size(state["model"]) or (size(m) == size(state["model"])
                                               and not allow_equal):
            return False
        try:
            onnx.checker.check_model(m)
        except Exception:  # noqa: BLE001
            return False
        feeds = [{i.name: f[i.name] for i in m.graph.input} for f in feeds]
        st, msg, det = evaluate(m, feeds, workdir)
        if det and any(normalise(s, x) == target for _, s, x in det):
            ks = [k for k, s, x in det if normalise(s, x) == target]
            state["model"], state["feeds"] = m, [feeds[k] for k in ks[:1]] if len(ks) else feeds
            if verbose:
                print(f"  {len(m.graph.node)} nodes: {msg}", flush=True)
            return True
        return False

    # One failing assignment.
    for k in range(len(state["feeds"])):
        if still_fails(clone(state["model"]), [state["feeds"][k]], allow_equal=True):
            break
    changed = True
    while changed:
        changed = False
        # One output.
        m = state["model"]
        if len(m.graph.output) > 1:
            for o in list(m.graph.output):
                c = clone(m)
                del c.graph.output[:]
                c.graph.output.append(o)
                if still_fails(c, state["feeds"]):
                    changed = True
                    break
        # An intermediate as the only output.
        m = state["model"]
        for n in list(m.graph.node):
            if n.op_type == "Constant":
                continue
            c = clone(m)
            del c.graph.output[:]
            c.graph.output.append(helper.make_tensor_value_info(n.output[0], 0, None))
            if len(prune(clone(c)).graph.node) >= len(m.graph.node):
                continue
            if still_fails(c, state["feeds"]):
                changed = True
                break
        # Bypass a node: its output replaced by one of its inputs.
        m = state["model"]
        for idx, n in enumerate(list(m.graph.node)):
            if n.op_type == "Constant":
                continue
            done = False
            for src in n.input:
                if not src:
                    continue
                c = clone(m)
                out = n.output[0]
                del c.graph.node[idx]
                for other in c.graph.node:
                    for j, name in enumerate(other.input):
                        if name == out:
                            other.input[j] = src
                for o in c.graph.output:
                    if o.name == out:
                        # keep the output name: an Identity of src
                        c.graph.node.append(helper.make_node("Identity", [src], [out]))
                if still_fails(c, state["feeds"]):
                    changed = done = True
                    break
            if done:
                break
        # A dynamic input dimension made static (its size in the case).
        m = state["model"]
        for ii, inp in enumerate(m.graph.input):
            for j, d in enumerate(inp.type.tensor_type.shape.dim):
                if d.HasField("dim_value"):
                    continue
                c = clone(m)
                size_j = state["feeds"][0][inp.name].shape[j]
                c.graph.input[ii].type.tensor_type.shape.dim[j].dim_value = size_j
                if len(state["feeds"]) == 1 and still_fails(c, state["feeds"]):
                    changed = True
                    break
            if changed:
                break
        # An intermediate computed by onnxruntime becomes a graph input.
        m = state["model"]
        for idx, n in enumerate(list(m.graph.node)):
            if n.op_type == "Constant" or all(
                    i in {x.name for x in m.graph.input} or not i for i in n.input):
                continue
            for src in n.input:
                if not src or src in {x.name for x in m.graph.input}:
                    continue
                if src in {x.name for x in m.graph.initializer}:
                    continue
                c = as_input(m, src, state["feeds"])
                if c is None:
                    continue
                cm, cf = c
                if still_fails(cm, cf):
                    changed = True
                    break
            if changed:
                break
    # Output types inferred afresh (the kept ones may name symbols no input has now).
    c = clone(state["model"])
    for o in c.graph.output:
        o.type.tensor_type.elem_type = 0
        o.type.tensor_type.ClearField("shape")
    still_fails(c, state["feeds"], allow_equal=True)
    return state["model"], state["feeds"]


def clone(m):
    c = onnx.ModelProto()
    c.CopyFrom(m)
    return c


def as_input(model, name, feeds_list):
    """model with tensor `name` (an intermediate) turned into a graph input
    fed with onnxruntime's values; its type: ONNX's inferred one."""
    probe = clone(model)
    probe.graph.output.append(helper.make_tensor_value_info(name, 0, None))
    probe = retype_outputs(probe)
    if probe is None:
        return None
    vtype = probe.graph.output[-1]
    try:
        sess = session(probe)
        values = [sess.run([name], f)[0] for f in feeds_list]
    except Exception:  # noqa: BLE001
        return None
    c = clone(model)
    keep = [n for n in c.graph.node if name not in n.output]
    del c.graph.node[:]
    c.graph.node.extend(keep)
    v = onnx.ValueInfoProto()
    v.CopyFrom(vtype)
    # dims ONNX could not name become fresh symbols
    for j, d in enumerate(v.type.tensor_type.shape.dim):
        if not d.HasField("dim_param") and not d.HasField("dim_value"):
            d.dim_param = f"{name}_{j}"
    c.graph.input.append(v)
    feeds = [dict(f, **{name: val}) for f, val in zip(feeds_list, values)]
    return c, feeds


def save_reproducer(folder, name, model, feeds_list):
    os.makedirs(folder, exist_ok=True)
    onnx.save(model, os.path.join(folder, name + ".onnx"))
    expected, _ = reference(model, feeds_list)
    arrays = {}
    for k, (feeds, exp) in enumerate(zip(feeds_list, expected)):
        for n, a in feeds.items():
            arrays[f"case{k}.{n}"] = a
        for o, a in zip(model.graph.output, exp or []):
            arrays[f"case{k}.{o.name}"] = a
    np.savez(os.path.join(folder, name + ".npz"), **arrays)


# --------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--count", type=int, default=200)
    ap.add_argument("--only-graph", type=int, action="append", default=None,
                    help="run only graph I of the campaign (repeatable)")
    ap.add_argument("--keep-failures", metavar="DIR")
    ap.add_argument("--minimize", metavar="DIR",
                    help="minimize each failing graph, write DIR/graph<seed>.onnx/.npz")
    ap.add_argument("--refusals", type=int, default=15,
                    help="how many refusal messages to list (0: none)")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args()
    if not os.environ.get("QOPT_BIN"):
        sys.exit("set QOPT_BIN to the folder with qoptc")
    try:
        import qopt  # noqa: F401  (loaded here once, used in the forked children)
    except ImportError as e:
        sys.exit(f"the qopt Python binding is not on PYTHONPATH: {e}")

    indices = args.only_graph if args.only_graph is not None else range(args.count)
    counts = collections.Counter()
    refusals = collections.Counter()
    start = time.time()
    with tempfile.TemporaryDirectory(prefix="difftest") as tmp:
        for i in indices:
            gseed = graph_seed(args.seed, i)
            model, feeds_list, expected = generate(gseed)
            workdir = os.path.join(tmp, f"g{i}")
            os.makedirs(workdir)
            status, message, details = evaluate(model, feeds_list, workdir, expected)
            if status == "refused":
                refusals[re.sub(r"'n_t\d+_", "'n_", message)] += 1
                counts["refused"] += 1
                if args.verbose:
                    print(f"graph {i}: refused: {message}", flush=True)
            elif status == "ok":
                counts["ok"] += 1
                if args.verbose:
                    print(f"graph {i}: ok ({len(model.graph.node)} nodes, "
                          f"{len(feeds_list)} shapes; {op_summary(model)})", flush=True)
            else:
                counts["failed"] += 1
                k = details[0][0] if details else 0
                print(f"graph {i} (seed {gseed}): {status}: {message} "
                      f"[case{k} {shapes_text(model, feeds_list[k])}; "
                      f"{len(model.graph.node)} nodes: {op_summary(model)}]", flush=True)
                if args.verbose:
                    for kk, st, msg in details[1:]:
                        print(f"    case{kk} [{shapes_text(model, feeds_list[kk])}]: {st}: {msg}")
                if args.keep_failures:
                    keep_failure(args.keep_failures, i, model, feeds_list, status, message,
                                 details, gseed)
                if args.minimize:
                    res = minimize(model, feeds_list, workdir, args.verbose)
                    if res:
                        mm, mf = res
                        save_reproducer(args.minimize, f"graph{gseed}", mm, mf)
                        print(f"    minimized: {len(mm.graph.node)} nodes "
                              f"({op_summary(mm)}) -> {args.minimize}/graph{gseed}.onnx")
            shutil.rmtree(workdir, ignore_errors=True)
    n = len(indices)
    if args.refusals and refusals:
        print("refused, by message:")
        for msg, c in refusals.most_common(args.refusals):
            print(f"  {c:5d}  {msg}")
    if args.verbose:
        for msg, c in GEN_STATS.most_common():
            print(f"generator: {c:5d}  {msg}")
        print(f"({time.time() - start:.1f} s)")
    print(f"difftest: {n} graphs, {counts['ok']} ok, {counts['refused']} refused, "
          f"{counts['failed']} failed")
    return 1 if counts["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
