"""``HLinear``: a linear layer whose weight is an H-matrix, and ``replace_linear``.

Two ways to run it:

* inference (``eval()`` + ``torch.no_grad()``, CPU, float32/float64 input): ``y = H @ x`` through
  the products of :class:`hmat.HMatrix` (numba kernels; BLAS GEMMs for batches of 4 or more
  inputs); the H-matrix is rebuilt from the parameters only when they have changed;
* differentiable (training, or any autograd / ``torch.func`` use): plain torch on the block
  factors, which are ``nn.Parameter``s. Blocks of equal shape are grouped, so one group is two
  batched products (``bmm``) instead of a Python loop over hundreds of tiny blocks. Ranks inside
  a group are padded to the group's largest rank; the padding is masked to zero, so it never
  changes the function nor receives a gradient, and ``to_hmatrix`` drops it.

Row/column permutations of the H-matrix are folded into the gather/scatter indices, so the layer
works in the original neuron order like the ``nn.Linear`` it replaces.

Storage precision (``precision=``, or an H-matrix built with ``compress(..., precision=...)``):
inference runs the quantized H-matrix (:class:`hmat.QuantizedHMatrix`); the parameters are the
decoded factors in float32, so training is unchanged, and once they change the precision is
applied again at export (``to_hmatrix``, and the inference path).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import hmat
from hmat import HMatrix, QuantizedHMatrix

__all__ = ["HLinear", "replace_linear"]

_MODES = ("auto", "factored", "assemble")


def _is_functorch(x: torch.Tensor) -> bool:
    try:
        return bool(torch._C._functorch.is_functorch_wrapped_tensor(x))
    except AttributeError:  # pragma: no cover - older torch
        return False


class HLinear(nn.Module):
    """``y = H x + b`` with an H-matrix ``H`` of shape (out_features, in_features).

    Parameters
    ----------
    H : HMatrix
        The weight (float32 or float64; the parameters take its dtype).
    bias : tensor or array of shape (out_features,), optional
    forward_mode : "auto", "factored" or "assemble"
        How the differentiable forward runs: "factored" multiplies the block factors with the
        input (cost ~ batch x stored entries); "assemble" forms the dense weight from the factors
        (cost ~ sum of m n k over blocks, independent of the batch) and runs one GEMM; "auto"
        picks the cheaper by a flop count. Both are the same function with the same parameters.
    precision : None, "bfloat16", "float16", "int8" or "adaptive"
        Store ``H`` in this precision for inference (:meth:`QuantizedHMatrix.from_hmatrix`;
        "adaptive" with ``tol``: each block within ``tol`` of its own norm). None keeps ``H``
        as it is (already quantized or not).
    tol : float, optional
        The rounding budget of ``precision="adaptive"``; for an ``H`` built adaptive, also
        the budget used when trained factors are stored again (default ``H.info["tol"]``).
    """

    def __init__(self, H: HMatrix, bias=None, *, forward_mode: str = "auto",
                 precision: str | None = None, tol: float | None = None):
        super().__init__()
        if not isinstance(H, HMatrix):
            raise TypeError(f"H must be an hmat.HMatrix, got {type(H).__name__}")
        if precision is not None:
            if isinstance(H, QuantizedHMatrix):
                raise ValueError(f"precision={precision!r}: H is already stored in "
                                 f"{H.precision!r}; give a float H-matrix or precision=None")
            H = QuantizedHMatrix.from_hmatrix(H, precision, tol)
        self._precision = None
        if isinstance(H, QuantizedHMatrix):
            self._precision = (H.precision, tol if tol is not None else H.info.get("tol"))
        if H.dtype not in (np.float32, np.float64):
            raise TypeError(f"H must be float32 or float64, got {H.dtype}")
        if forward_mode not in _MODES:
            raise ValueError(f"forward_mode must be one of {_MODES}, got {forward_mode!r}")
        self.forward_mode = forward_mode
        self.out_features, self.in_features = H.shape
        self._lr_desc = H.lr_desc.copy()
        self._d_desc = H.d_desc.copy()
        self._row_perm = None if H.row_perm is None else H.row_perm.copy()
        self._col_perm = None if H.col_perm is None else H.col_perm.copy()
        self._info = dict(H.info)
        self._n_entries = H.n_entries
        self._h_nbytes = H.nbytes
        dtype = torch.float32 if H.dtype == np.float32 else torch.float64
        rp = np.arange(H.shape[0]) if H.row_perm is None else H.row_perm
        cp = np.arange(H.shape[1]) if H.col_perm is None else H.col_perm
        n_in = self.in_features

        self.U = nn.ParameterList()
        self.Vt = nn.ParameterList()
        self.D = nn.ParameterList()
        self._lr_groups: list[dict] = []  # per group: block ids, sizes, buffer names
        self._d_groups: list[dict] = []
        flat_pos = np.full(H.shape[0] * H.shape[1], -1, dtype=np.int64)  # assemble gather
        offset = 0  # position in the concatenated assembled blocks

        # ---- low-rank groups (same m, n); blocks of rank 0 contribute nothing and are skipped
        lr = self._lr_desc
        keys = sorted({(int(m), int(n)) for _, m, _, n, k, _ in lr if k > 0})
        for gi, (m, n) in enumerate(keys):
            ids = np.flatnonzero((lr[:, 1] == m) & (lr[:, 3] == n) & (lr[:, 4] > 0))
            ks = lr[ids, 4]
            kmax = int(ks.max())
            g = len(ids)
            u = np.zeros((g, m, kmax), dtype=H.dtype)
            vt = np.zeros((g, kmax, n), dtype=H.dtype)
            for i, b in enumerate(ids):
                ub, vb = H.lowrank_factors(int(b))
                u[i, :, : ks[i]] = ub
                vt[i, : ks[i], :] = vb
            self.U.append(nn.Parameter(torch.from_numpy(u)))
            self.Vt.append(nn.Parameter(torch.from_numpy(vt)))
            mask = (np.arange(kmax)[None, :] < ks[:, None]).astype(H.dtype)  # (g, kmax)
            padded = bool((ks < kmax).any())
            rows = rp[lr[ids, 0][:, None] + np.arange(m)[None, :]]  # (g, m) original rows
            cols = cp[lr[ids, 2][:, None] + np.arange(n)[None, :]]  # (g, n) original cols
            self.register_buffer(f"_lr_rows{gi}", torch.from_numpy(rows.reshape(-1).copy()))
            self.register_buffer(f"_lr_cols{gi}", torch.from_numpy(cols.reshape(-1).copy()))
            if padded:
                self.register_buffer(f"_lr_mask{gi}", torch.from_numpy(mask).to(dtype))
            self._lr_groups.append(dict(ids=ids, ks=ks, m=m, n=n, kmax=kmax, padded=padded))
            pos = rows[:, :, None] * n_in + cols[:, None, :]  # (g, m, n)
            flat_pos[pos.reshape(-1)] = offset + np.arange(g * m * n)
            offset += g * m * n

        # ---- dense groups
        dd = self._d_desc
        keys = sorted({(int(m), int(n)) for _, m, _, n, _ in dd})
        for gi, (m, n) in enumerate(keys):
            ids = np.flatnonzero((dd[:, 1] == m) & (dd[:, 3] == n))
            d = np.stack([H.dense_block(int(b)) for b in ids]).astype(H.dtype)
            self.D.append(nn.Parameter(torch.from_numpy(d)))
            rows = rp[dd[ids, 0][:, None] + np.arange(m)[None, :]]
            cols = cp[dd[ids, 2][:, None] + np.arange(n)[None, :]]
            self.register_buffer(f"_d_rows{gi}", torch.from_numpy(rows.reshape(-1).copy()))
            self.register_buffer(f"_d_cols{gi}", torch.from_numpy(cols.reshape(-1).copy()))
            self._d_groups.append(dict(ids=ids, m=m, n=n))
            pos = rows[:, :, None] * n_in + cols[:, None, :]
            flat_pos[pos.reshape(-1)] = offset + np.arange(len(ids) * m * n)
            offset += len(ids) * m * n

        # entries covered by rank-0 blocks are exactly zero: point them at one extra zero
        flat_pos[flat_pos < 0] = offset
        self._n_assembled = offset
        self.register_buffer("_assemble_idx", torch.from_numpy(flat_pos))
        if bias is not None:
            b = torch.as_tensor(np.asarray(bias.detach().cpu() if torch.is_tensor(bias) else bias))
            if b.shape != (self.out_features,):
                raise ValueError(f"bias must have shape ({self.out_features},), got "
                                 f"{tuple(b.shape)}")
            self.bias = nn.Parameter(b.to(dtype).clone())
        else:
            self.register_parameter("bias", None)
        self._cache_key = None
        self._cache_h = None
        # flop counts (per input row for factored; one-off for assemble) decide "auto"
        self._flops_factored = int(H.n_entries)
        self._flops_assemble = int(sum(g["m"] * g["n"] * g["kmax"] * len(g["ids"])
                                       for g in self._lr_groups))
        self._stored = None  # the quantized H-matrix while the parameters are unchanged
        if self._precision is not None:
            self._stored = (self._key(self._plist()), H)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_linear(cls, linear: nn.Linear, rank: int | None = None, tol: float | None = None,
                    *, adaptive: bool = False, method="svd", forward_mode: str = "auto",
                    **compress_kwargs) -> HLinear:
        """Compress ``linear.weight`` by :func:`hmat.compress` (same keywords); keep the bias."""
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"linear must be a torch.nn.Linear, got {type(linear).__name__}")
        w = linear.weight.detach().cpu().numpy()
        H = hmat.compress(w, rank=rank, tol=tol, adaptive=adaptive, method=method,
                          **compress_kwargs)
        return cls(H, linear.bias, forward_mode=forward_mode)

    # ------------------------------------------------------------------ bookkeeping
    @property
    def info(self) -> dict:
        """The build information of the H-matrix (``HMatrix.info``: method, rank, tol, ...)."""
        return dict(self._info)

    @property
    def n_blocks(self) -> int:
        return len(self._lr_desc) + len(self._d_desc)

    @property
    def n_params(self) -> int:
        """Stored numbers: factor entries of every block (no padding), dense blocks, bias."""
        return int(self._n_entries + (0 if self.bias is None else self.bias.numel()))

    @property
    def nbytes(self) -> int:
        """Bytes stored: the H-matrix (factors, descriptors, permutations) plus the bias."""
        bias = 0 if self.bias is None else self.bias.numel() * self.bias.element_size()
        return int(self._h_nbytes + bias)

    @property
    def dense_nbytes(self) -> int:
        """Bytes of the equivalent ``nn.Linear`` (weight and bias) in the same dtype."""
        item = self._dtype().itemsize
        return (self.out_features * self.in_features
                + (0 if self.bias is None else self.out_features)) * item

    def _dtype(self) -> np.dtype:
        p = next(iter(self.parameters()), None)
        if p is None:
            return np.dtype(np.float32)
        return np.dtype(np.float32) if p.dtype == torch.float32 else np.dtype(np.float64)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"blocks={len(self._lr_desc)}+{len(self._d_desc)}, "
                f"storage={100 * self.nbytes / self.dense_nbytes:.1f}% of dense, "
                f"bias={self.bias is not None}")

    # ------------------------------------------------------------------ pieces of the forward
    def _factors(self, gi):
        g = self._lr_groups[gi]
        u, vt = self.U[gi], self.Vt[gi]
        if g["padded"]:
            mask = getattr(self, f"_lr_mask{gi}")
            u = u * mask[:, None, :]
            vt = vt * mask[:, :, None]
        return u, vt

    def dense_weight(self) -> torch.Tensor:
        """The dense weight (out, in) as a differentiable function of the factors."""
        parts = []
        for gi in range(len(self._lr_groups)):
            u, vt = self._factors(gi)
            parts.append(torch.bmm(u, vt).reshape(-1))
        parts += [d.reshape(-1) for d in self.D]
        parts.append(parts[0].new_zeros(1) if parts else
                     torch.zeros(1, dtype=self.bias.dtype if self.bias is not None
                                 else torch.float32))
        flat = torch.cat(parts)
        return flat[self._assemble_idx].reshape(self.out_features, self.in_features)

    def _forward_factored(self, x2: torch.Tensor) -> torch.Tensor:
        batch = x2.shape[0]
        outs, rows = [], []
        for gi, g in enumerate(self._lr_groups):
            u, vt = self._factors(gi)
            xg = x2[:, getattr(self, f"_lr_cols{gi}")].reshape(batch, -1, g["n"]).transpose(0, 1)
            t = torch.bmm(xg, vt.transpose(1, 2))  # (g, batch, k)
            yg = torch.bmm(t, u.transpose(1, 2))  # (g, batch, m)
            outs.append(yg.transpose(0, 1).reshape(batch, -1))
            rows.append(getattr(self, f"_lr_rows{gi}"))
        for gi, g in enumerate(self._d_groups):
            d = self.D[gi]
            xg = x2[:, getattr(self, f"_d_cols{gi}")].reshape(batch, -1, g["n"]).transpose(0, 1)
            yg = torch.bmm(xg, d.transpose(1, 2))
            outs.append(yg.transpose(0, 1).reshape(batch, -1))
            rows.append(getattr(self, f"_d_rows{gi}"))
        y = x2.new_zeros(batch, self.out_features)
        if outs:
            y = y.index_add(1, torch.cat(rows), torch.cat(outs, dim=1))
        return y

    def _kernel_params(self, x: torch.Tensor):
        """The parameter list when the numba kernels may run (inference on CPU), else None."""
        if (self.training or torch.is_grad_enabled() or x.device.type != "cpu"
                or x.dtype not in (torch.float32, torch.float64) or x.requires_grad
                or _is_functorch(x)):
            return None
        plist = self._plist()
        if any(p.requires_grad and _is_functorch(p) for p in plist):
            return None
        return plist

    def _plist(self) -> list:
        """Every parameter, read straight from the containers (cheaper than .parameters())."""
        out = [*self.U._parameters.values(), *self.Vt._parameters.values(),
               *self.D._parameters.values()]
        return out if self.bias is None else [*out, self.bias]

    @staticmethod
    def _key(plist) -> tuple:
        return tuple((id(p), p._version, p.data_ptr(), p.dtype) for p in plist)

    @property
    def precision(self) -> str | None:
        """The storage precision of the inference H-matrix (None: float factors)."""
        return None if self._precision is None else self._precision[0]

    def hmatrix(self, plist=None) -> HMatrix:
        """The current H-matrix (cached; rebuilt only when a parameter has changed)."""
        plist = self._plist() if plist is None else plist
        key = self._key(plist)
        if self._cache_key != key:
            self._cache_h = self.to_hmatrix()
            self._cache_key = key
        return self._cache_h

    # ------------------------------------------------------------------ forward
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.in_features:
            raise ValueError(f"input has {x.shape[-1]} features in its last dimension, the "
                             f"layer needs {self.in_features}")
        lead = x.shape[:-1]
        x2 = x.reshape(-1, self.in_features)
        plist = self._kernel_params(x)
        if plist is not None:
            h = self.hmatrix(plist)
            xn = x2.numpy()
            y = h @ xn[0] if xn.shape[0] == 1 else (h @ xn.T).T  # (B, out), strided view
            y = torch.from_numpy(y.reshape(-1, self.out_features))
            if y.dtype != x.dtype:
                y = y.to(x.dtype)
            if self.bias is not None:
                y = y + (self.bias if self.bias.dtype == x.dtype else self.bias.to(x.dtype))
            return y.reshape(*lead, self.out_features)
        mode = self.forward_mode
        if mode == "auto":
            factored = x2.shape[0] * self._flops_factored
            assemble = self._flops_assemble + x2.shape[0] * self.in_features * self.out_features
            # a GEMM runs several times faster per flop than gathers + small bmm's
            mode = "factored" if 3 * factored < assemble else "assemble"
        if mode == "assemble":
            y = F.linear(x2, self.dense_weight(), self.bias)
        else:
            y = self._forward_factored(x2)
            if self.bias is not None:
                y = y + self.bias
        return y.reshape(*lead, self.out_features)

    # ------------------------------------------------------------------ back to an HMatrix
    def to_hmatrix(self) -> HMatrix:
        """Pack the current (e.g. trained) factors into an :class:`hmat.HMatrix`, stored in the
        layer's precision if it has one (the original quantized H-matrix while the factors are
        unchanged)."""
        if self._stored is not None and self._stored[0] == self._key(self._plist()):
            return self._stored[1]
        lowrank, dense = [], []
        with torch.no_grad():
            for gi, g in enumerate(self._lr_groups):
                u = self.U[gi].detach().cpu().numpy()
                vt = self.Vt[gi].detach().cpu().numpy()
                for i, b in enumerate(g["ids"]):
                    r0, _, c0, _, k, _ = self._lr_desc[b]
                    lowrank.append((r0, c0, u[i, :, :k], vt[i, :k, :]))
            for b in np.flatnonzero(self._lr_desc[:, 4] == 0):  # rank-0 blocks: no parameters
                r0, m, c0, n, _, _ = self._lr_desc[b]
                lowrank.append((r0, c0, np.zeros((m, 0)), np.zeros((0, n))))
            for gi, g in enumerate(self._d_groups):
                d = self.D[gi].detach().cpu().numpy()
                for i, b in enumerate(g["ids"]):
                    r0, _, c0, _, _ = self._d_desc[b]
                    dense.append((r0, c0, d[i]))
        info = dict(self._info)
        info["from"] = "HLinear.to_hmatrix"
        H = HMatrix.from_blocks((self.out_features, self.in_features), lowrank, dense,
                                row_perm=self._row_perm, col_perm=self._col_perm, info=info,
                                dtype=self._dtype())
        if self._precision is None:
            return H
        return QuantizedHMatrix.from_hmatrix(H, *self._precision)


def replace_linear(model: nn.Module, predicate: Callable[[str, nn.Linear], bool] | None = None,
                   *, names=None, factory: Callable[[nn.Linear], nn.Module] | None = None,
                   **compress_kwargs) -> dict[str, tuple[nn.Linear, nn.Module]]:
    """Swap ``nn.Linear`` layers of ``model`` in place; returns ``{name: (old, new)}``.

    A layer is replaced when its qualified name is in ``names`` (if given) and
    ``predicate(name, layer)`` is true (if given). The replacement is ``factory(layer)`` or, by
    default, ``HLinear.from_linear(layer, **compress_kwargs)``.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if predicate is not None and not callable(predicate):
        raise TypeError("predicate must be a callable (name, layer) -> bool")
    if names is not None:
        names = {names} if isinstance(names, str) else set(names)
        known = {n for n, mod in model.named_modules() if isinstance(mod, nn.Linear)}
        unknown = names - known
        if unknown:
            raise ValueError(f"names {sorted(unknown)} are not nn.Linear layers of the model; "
                             f"the linear layers are {sorted(known)}")
    if factory is None:
        def factory(layer):
            return HLinear.from_linear(layer, **compress_kwargs)
    elif compress_kwargs:
        raise ValueError("give either factory= or compression keywords, not both")
    targets = []
    for name, mod in model.named_modules():
        if isinstance(mod, nn.Linear) and not isinstance(mod, HLinear):
            if names is not None and name not in names:
                continue
            if predicate is not None and not predicate(name, mod):
                continue
            targets.append(name)
    replaced = {}
    for name in targets:
        old = model.get_submodule(name)
        new = factory(old)
        model.set_submodule(name, new)
        replaced[name] = (old, new)
    return replaced
