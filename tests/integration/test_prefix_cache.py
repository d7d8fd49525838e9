"""The embedded LLM's prefix cache on the real model: a conversation's next prompt prefills only
its new tokens, and the reply is what a cold model gives (greedy decoding).

What "the same" means depends on the weights' precision, and the tests say so rather than depend
on the CPU:

* **float32** — reading a prompt in two pieces (cached prefix, then the rest) or in one gives the
  same greedy reply: the two paths differ by float32 rounding only, far below the logit gaps that
  greedy decoding meets in these prompts.
* **bfloat16** — the two paths' rounding differs by up to ~0.1 logit, enough to flip a near-tie a
  few dozen tokens in (seen on an AMX-BF16 CPU after ~40 characters).  What holds is that every
  token of the cached reply is a greedy choice of the *cold* model up to that tolerance, read on
  the cached reply itself (teacher forcing).  bfloat16 is forced here, so the test runs on every
  CPU (emulated where the CPU lacks bf16: slower, same arithmetic).
"""

from __future__ import annotations

import pytest

from empathic_agent.generate.llm import ChatMessage, GenerationOptions, load_llm
from empathic_agent.settings import Settings

pytestmark = pytest.mark.integration

GREEDY = GenerationOptions(max_new_tokens=32, temperature=0.0)
SYSTEM = ChatMessage("system", "You are a warm, attentive listener. Reply in one to three short sentences.")
FIRST = [SYSTEM, ChatMessage("user", "I had a really rough day at work and I can't stop thinking about it.")]
#: Largest gap (in logits) between the cold model's best token and the cached reply's token, in bf16.
BF16_LOGIT_TOLERANCE = 1.0


async def _two_turns(dtype: str) -> tuple[object, object, list[ChatMessage], str]:
    """A warm model that answered the first turn, a cold one, the second prompt and the warm
    model's reply to it (read from its prefix cache)."""
    settings = Settings.from_env({"EMPATHIC_LLM_DTYPE": dtype})
    warm, cold = load_llm(settings), load_llm(settings)
    reply = await warm.complete(FIRST, GREEDY)
    assert warm.last_prefix["reused"] == 0
    second = FIRST + [ChatMessage("assistant", reply), ChatMessage("system", "Speak in a calm, warm tone."),
                      ChatMessage("user", "My manager criticised me in front of everyone.")]
    again = await warm.complete(second, GREEDY)
    # The whole first prompt and the reply come from the cache; only the new messages are read.
    assert warm.last_prefix["reused"] > len(reply) // 8 + 20
    assert warm.last_prefix["prefilled"] < warm.last_prefix["reused"]
    return warm, cold, second, again


async def test_float32_next_turn_reuses_the_cached_prefix_and_replies_the_same():
    warm, cold, second, again = await _two_turns("float32")
    assert again == await cold.complete(second, GREEDY)
    assert cold.last_prefix["reused"] == 0
    # An unrelated prompt shares too little to reuse.
    await warm.complete([ChatMessage("user", "What is the capital of France?")], GREEDY)
    assert warm.last_prefix["reused"] == 0
    await warm.aclose()
    await cold.aclose()


async def test_bfloat16_cached_reply_is_greedy_under_the_cold_model_within_rounding():
    import torch

    warm, cold, second, again = await _two_turns("bfloat16")
    assert again.strip()
    await cold.load()
    tok, model = cold._tok, cold._model
    assert next(model.parameters()).dtype == torch.bfloat16
    chat = [m.to_dict() for m in second]
    prompt = tok.apply_chat_template(chat, add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"]
    reply_ids = tok(again, add_special_tokens=False)["input_ids"][:24]
    ids = torch.tensor([list(prompt) + list(reply_ids)])
    with torch.inference_mode():
        logits = model(input_ids=ids).logits[0].float()  # one cold pass: no cache at all
    start = len(prompt) - 1
    gaps = []
    for i, token in enumerate(reply_ids):
        row = logits[start + i]
        gaps.append(float(row.max() - row[token]))
    # Re-tokenising the text may split a word differently from generation; such a token is still a
    # likely one, but not necessarily the argmax — so the bound is on the typical and first tokens.
    assert gaps[0] <= BF16_LOGIT_TOLERANCE, gaps
    assert sorted(gaps)[len(gaps) // 2] <= BF16_LOGIT_TOLERANCE, gaps
    assert sum(g <= BF16_LOGIT_TOLERANCE for g in gaps) >= 0.9 * len(gaps), gaps
    await warm.aclose()
    await cold.aclose()
