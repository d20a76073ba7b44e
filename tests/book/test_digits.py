"""hmatbook.digits: the small CNN on scikit-learn's digits trains and compresses."""

from __future__ import annotations

import pytest
import torch

from hmat.nn import compress_network
from hmatbook import digits as D

torch.set_num_threads(1)


def test_digits_cnn_trains_and_compresses():
    data = D.load_digits_data(seed=0)
    assert data.X_train.shape[1:] == (1, 8, 8) and len(data.y_test) == 540
    cnn = D.SmallCNN(64, seed=0)
    D.train_cnn(cnn, data, epochs=2, progress=False)
    acc = D.accuracy(cnn, data.X_test, data.y_test)
    assert acc > 50
    comp, infos = compress_network(cnn, "svd", 0.5, D.is_compressed_layer)
    assert set(infos) == {"fc1", "fc2"}
    assert 0 <= D.accuracy(comp, data.X_test, data.y_test) <= 100
    with pytest.raises(ValueError):
        D.load_digits_data(test_fraction=1.5)
