"""hmatbook.transformer: standard-library text, a causal character-level transformer whose
attention projections and MLP are nn.Linear layers, its training and evaluation."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from hmatbook import transformer as T  # noqa: E402

torch.set_num_threads(1)


def test_load_text_split_and_vocab():
    d = T.load_text(("bisect.py",), val_fraction=0.2)
    assert len(d.train) + len(d.val) == d.n_chars
    assert len(d.val) == round(0.2 * d.n_chars)
    assert int(max(d.train.max(), d.val.max())) < len(d.vocab)
    assert "".join(d.vocab[i] for i in d.train[:6].tolist()) in open(
        __import__("bisect").__file__, encoding="utf-8").read()
    with pytest.raises(ValueError, match="val_fraction"):
        T.load_text(("bisect.py",), val_fraction=1.0)
    with pytest.raises(FileNotFoundError, match="files"):
        T.load_text(("no_such_module.py",))


def test_transformer_is_causal_and_exposes_linears():
    m = T.TinyTransformer(30, d=32, depth=2, heads=4, context=16).eval()
    x = torch.randint(0, 30, (2, 16))
    y = x.clone()
    y[:, 10:] = (y[:, 10:] + 1) % 30  # change the future only
    with torch.no_grad():
        a, b = m(x), m(y)
    assert a.shape == (2, 16, 30)
    torch.testing.assert_close(a[:, :10], b[:, :10])
    assert not torch.allclose(a[:, 10:], b[:, 10:])
    names = [n for n, mod in m.named_modules()
             if isinstance(mod, nn.Linear) and T.is_compressed_layer(n, mod)]
    assert len(names) == 8 and "head" not in names
    with pytest.raises(ValueError, match="multiple"):
        T.TinyTransformer(30, d=30, heads=4)
    with pytest.raises(ValueError, match="depth"):
        T.TinyTransformer(30, depth=0)


def test_train_and_evaluate():
    d = T.load_text(("bisect.py",))
    m = T.TinyTransformer(len(d.vocab), d=32, depth=1, heads=2, context=32, seed=0)
    before = T.evaluate_lm(m, d)
    res = T.train_lm(m, d, steps=30, batch=8, lr=3e-3, seed=0, progress=False)
    after = T.evaluate_lm(m, d)
    assert len(res["losses"]) == 30
    assert after["val_loss"] < before["val_loss"]
    n = (len(d.val) - 1) // 32 * 32
    assert after["wrong"].shape == (n,)
    assert after["error"] == pytest.approx(100 * after["wrong"].mean())
    with pytest.raises(ValueError, match="steps"):
        T.train_lm(m, d, steps=-1)
