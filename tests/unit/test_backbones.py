"""The pair readers' backbone plumbing on tiny random BERT and MPNet models: adapters land on each
family's own linear maps, and running the layers in two slices (the bottom cached, as training
does) gives what the whole model gives."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from empathic_agent.encode import text_model as tm  # noqa: E402
from empathic_agent.evals.pair_model import pad  # noqa: E402


def _tiny(kind: str):
    common = dict(vocab_size=60, hidden_size=16, num_hidden_layers=4, num_attention_heads=2, intermediate_size=32,
                  max_position_embeddings=64)
    torch.manual_seed(0)
    if kind == "bert":
        return transformers.BertModel(transformers.BertConfig(**common)).eval()
    return transformers.MPNetModel(transformers.MPNetConfig(**common)).eval()


@pytest.mark.parametrize("kind", ["bert", "mpnet"])
def test_adapters_wrap_the_family_s_own_maps(kind):
    model = _tiny(kind)
    loras, params = tm.lora_for_training(model, top_layers=2, rank=2, alpha=4.0)
    assert len(loras) == 2 * 6
    assert all(name.startswith(("encoder.layer.2.", "encoder.layer.3.")) for name in loras)
    assert {name.split(".", 3)[3] for name in loras} == set(tm.LORA_TARGETS_BY_TYPE[kind])
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert trainable and trainable <= {id(p) for p in params}


def test_an_unknown_family_is_refused():
    model = _tiny("bert")
    model.config.model_type = "gpt2"
    with pytest.raises(ValueError, match="no LoRA targets"):
        tm.lora_targets(model)


@pytest.mark.parametrize("kind", ["bert", "mpnet"])
def test_two_slices_give_the_whole_model(kind):
    model = _tiny(kind)
    items = [{"ids": [0, 5, 6, 7, 2, 9, 2], "types": [0, 0, 0, 0, 0, 1, 1]},
             {"ids": [0, 8, 2, 11, 2], "types": [0, 0, 0, 1, 1]}]
    pad_id = 1 if kind == "mpnet" else 0
    ids, types, mask = pad(items, pad_id)
    assert ids[1, -1] == pad_id and mask[1].tolist() == [1, 1, 1, 1, 1, 0, 0]
    with torch.inference_mode():
        kinds = {"token_type_ids": types} if kind == "bert" else {}
        whole = model(input_ids=ids, attention_mask=mask, **kinds).last_hidden_state
        h = tm.run_layers(model, model.encoder.layer[:3], tm.embed(model, ids, types), mask)
        h = tm.run_layers(model, model.encoder.layer[3:], h, mask)
    real = mask.bool()
    assert torch.allclose(whole[real], h[real], atol=1e-5)
