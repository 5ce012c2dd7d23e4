"""The dense reference: the model's own top-k next-token log-probabilities and tail mass."""

import numpy as np
import pytest
import torch
import zarr

from helpers.supernet_factory import make_run
from tyr.calib import stores
from tyr.model.adapter import load_model

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("reference"), n_layers=2)


def test_dense_topk_matches_the_model(run):
    root = zarr.open_group(str(run["topk"]), mode="r")
    group = root["fitness"]  # one subgroup per scored split present in the tokens
    tokens = stores.read_tokens(run["tokens"], stores.FITNESS)
    model = load_model(run["model"])
    with torch.no_grad():
        logp = model(torch.from_numpy(tokens[:2]).long()).logits.log_softmax(-1)
    top, idx = logp.topk(16, dim=-1)
    assert root.attrs["k"] == 16 and group.attrs["tokens_sha256"] == stores.tokens_digest(tokens)
    assert root.attrs["splits"] == ["fitness", "selection"]
    assert np.allclose(group["logp"][:2], top.numpy(), atol=1e-5)
    assert np.array_equal(group["index"][:2], idx.numpy())
    rest = torch.log1p(-top.exp().sum(-1))  # what the tail bucket must hold
    assert np.allclose(group["logp_rest"][:2], rest.numpy(), atol=1e-4)
