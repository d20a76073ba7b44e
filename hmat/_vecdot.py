"""Dot products of the rows of a block with one vector, written as LLVM vector IR.

Why: numba's loops read the short rows of an H-matrix (a Vt block is k rows of a few dozen to
a few hundred entries) at 27-71 GB/s on one AVX-512 core because LLVM unrolls each row 4 x 16
wide, then runs a narrower loop and a scalar loop for the rest, and combines eight accumulators
per row pair. Here each row is one accumulator of the machine's vector width, the last partial
vector is a masked load (no scalar loop), and two rows share each load of ``z``: 60-77 GB/s on
the same blocks (``tests/bench/changes.json``). numba offers no vector type, so the loop is
generated with llvmlite in an intrinsic; it is compiled and cached with the numba function that
calls it. numba keys that cache on the caller's file only: after editing this file, touch
``_kernels.py``.
"""

from __future__ import annotations

import llvmlite.binding as llvm
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.core.errors import TypingError
from numba.extending import intrinsic

__all__ = ["rows_dot"]

_I1, _I32, _I64 = ir.IntType(1), ir.IntType(32), ir.IntType(64)
#: rows that share one load of ``z`` (2 measured best on short rows; 4 and 8 only helped rows
#: of 400+ entries, by about 5 %)
ROWS = 2


def vector_bytes(features: dict | None = None) -> int:
    """Bytes of the host's widest float vector: 64 with AVX-512, 32 with AVX, else 16. A wider
    vector than the machine has would still be correct (LLVM splits it), only slower."""
    f = llvm.get_host_cpu_features() if features is None else features
    return 64 if f.get("avx512f") else 32 if f.get("avx") else 16


def _row_group(b, fns, a, z, y, n, first, count, rows, lanes, mask, has_tail):
    """``y[i] = a[i*n:(i+1)*n] . z`` for ``rows`` rows at a time, ``count`` groups from row
    ``first``: ``n // lanes`` full vectors, then the masked rest."""
    fma, reduce_add, masked_load = fns
    vty = fma.function_type.return_type
    zero = ir.Constant(vty, None)
    step = ir.Constant(_I64, lanes)
    nfull = b.udiv(n, step)

    def load(ptr, j):
        return b.load(b.bitcast(b.gep(ptr, [j]), vty.as_pointer()), align=1)

    with cgutils.for_range(b, count) as group:
        i0 = b.add(first, b.mul(group.index, ir.Constant(_I64, rows)))
        starts = [b.mul(b.add(i0, ir.Constant(_I64, r)), n) for r in range(rows)]
        accs = [cgutils.alloca_once_value(b, zero) for _ in range(rows)]
        with cgutils.for_range(b, nfull) as vec:
            j = b.mul(vec.index, step)
            zv = load(z, j)
            for s, acc in zip(starts, accs, strict=True):
                b.store(b.call(fma, [load(a, b.add(s, j)), zv, b.load(acc)]), acc)
        with b.if_then(has_tail, likely=True):
            j = b.mul(nfull, step)
            align = ir.Constant(_I32, 1)

            def masked(ptr, k):
                p = b.bitcast(b.gep(ptr, [k]), vty.as_pointer())
                return b.call(masked_load, [p, align, mask, zero])

            zv = masked(z, j)
            for s, acc in zip(starts, accs, strict=True):
                b.store(b.call(fma, [masked(a, b.add(s, j)), zv, b.load(acc)]), acc)
        for r, acc in enumerate(accs):
            total = b.call(reduce_add, [ir.Constant(vty.element, -0.0), b.load(acc)],
                           fastmath=("reassoc", "nsz"))
            b.store(total, b.gep(y, [b.add(i0, ir.Constant(_I64, r))]))


def _pointer_suffix(sfx: str) -> str:
    """The pointer part of an intrinsic's name: LLVM 17 on has only opaque pointers (``p0``);
    older LLVMs name the pointee type too."""
    return "p0" if llvm.llvm_version_info >= (17,) else f"p0{sfx}"


def _function(module, fty, lanes: int):
    """The module's ``void rows_dot(a*, z*, y*, i64 m, i64 n)`` for element type ``fty``."""
    name_t = "f32" if isinstance(fty, ir.FloatType) else "f64"
    vty = ir.VectorType(fty, lanes)
    pty = fty.as_pointer()
    fn = cgutils.get_or_insert_function(
        module, ir.FunctionType(ir.VoidType(), [pty, pty, pty, _I64, _I64]),
        f"hmat_rows_dot_{name_t}_{lanes}")
    if not fn.is_declaration:
        return fn
    fn.linkage = "internal"
    sfx = f"v{lanes}{name_t}"
    fns = (cgutils.get_or_insert_function(module, ir.FunctionType(vty, [vty, vty, vty]),
                                          f"llvm.fma.{sfx}"),
           cgutils.get_or_insert_function(module, ir.FunctionType(fty, [fty, vty]),
                                          f"llvm.vector.reduce.fadd.{sfx}"),
           cgutils.get_or_insert_function(
               module, ir.FunctionType(vty, [vty.as_pointer(), _I32,
                                             ir.VectorType(_I1, lanes), vty]),
               f"llvm.masked.load.{sfx}.{_pointer_suffix(sfx)}"))
    a, z, y, m, n = fn.args
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    rest = b.urem(n, ir.Constant(_I64, lanes))
    vi64 = ir.VectorType(_I64, lanes)
    splat = b.shuffle_vector(b.insert_element(ir.Constant(vi64, None), rest, ir.Constant(_I32, 0)),
                             ir.Constant(vi64, None), ir.Constant(ir.VectorType(_I32, lanes), None))
    mask = b.icmp_unsigned("<", ir.Constant(vi64, [ir.Constant(_I64, i) for i in range(lanes)]),
                           splat)
    has_tail = b.icmp_unsigned("!=", rest, ir.Constant(_I64, 0))
    groups = b.udiv(m, ir.Constant(_I64, ROWS))
    _row_group(b, fns, a, z, y, n, ir.Constant(_I64, 0), groups, ROWS, lanes, mask, has_tail)
    done = b.mul(groups, ir.Constant(_I64, ROWS))
    _row_group(b, fns, a, z, y, n, done, b.sub(m, done), 1, lanes, mask, has_tail)
    b.ret_void()
    return fn


@intrinsic
def rows_dot(typingctx, a, off, m, n, z, y, r0):
    """``y[r0:r0+m] = A @ z[:n]`` for ``A`` (m x n, row-major) stored at ``a[off:]``. All three
    arrays 1-d, contiguous, float32 or float64 alike; the caller keeps the ranges in bounds."""
    arrays = (a, z, y)
    if not all(isinstance(t, types.Array) and t.ndim == 1 and t.layout == "C" for t in arrays):
        raise TypingError("rows_dot: a, z and y must be 1-d C-contiguous arrays")
    if len({t.dtype for t in arrays}) != 1 or a.dtype not in (types.float32, types.float64):
        raise TypingError("rows_dot: a, z and y must share a dtype, float32 or float64")
    sig = types.void(a, off, m, n, z, y, r0)

    def codegen(context, builder, signature, args):
        aty, offty, mty, nty, zty, yty, r0ty = signature.args
        lanes = vector_bytes() // (4 if aty.dtype == types.float32 else 8)
        fn = _function(builder.module, context.get_value_type(aty.dtype), lanes)

        def data(ty, value):
            return context.make_array(ty)(context, builder, value).data

        def i64(value, ty):
            return context.cast(builder, value, ty, types.int64)

        pa = builder.gep(data(aty, args[0]), [i64(args[1], offty)])
        py = builder.gep(data(yty, args[5]), [i64(args[6], r0ty)])
        builder.call(fn, [pa, data(zty, args[4]), py, i64(args[2], mty), i64(args[3], nty)])
        return context.get_dummy_value()

    return sig, codegen
