from pathlib import Path

import pytest

from empathic_agent.errors import ConfigError
from empathic_agent.settings import LLM_PROFILES, Settings


def test_defaults_are_the_embedded_backend():
    s = Settings.from_env({})
    assert s.llm_backend == "transformers"
    assert s.llm_model == LLM_PROFILES["live"] and s.llm_profile == "live"
    assert s.checkpoint_path == s.memory_dir / "conversations.sqlite"


def test_environment_is_parsed_to_field_types():
    env = {
        "EMPATHIC_LLM_BACKEND": "vllm",
        "EMPATHIC_MAX_NEW_TOKENS": "32",
        "EMPATHIC_TEMPERATURE": "0.2",
        "EMPATHIC_SEED": "7",
        "EMPATHIC_MEMORY_DIR": "/tmp/x",
        "EMPATHIC_OPENAI_EXTRA_BODY": '{"guided_choice": ["a", "b"]}',
    }
    s = Settings.from_env(env)
    assert s.llm_backend == "vllm" and s.uses_remote_llm
    assert s.max_new_tokens == 32 and s.temperature == 0.2 and s.seed == 7
    assert s.memory_dir == Path("/tmp/x")
    assert s.openai_extra_body == {"guided_choice": ["a", "b"]}


def test_the_reply_temperature_defaults_by_backend_and_an_explicit_one_wins():
    from empathic_agent.generate.llm import GenerationOptions
    from empathic_agent.settings import EMBEDDED_TEMPERATURE, SERVED_TEMPERATURE

    embedded = Settings.from_env({})
    assert embedded.temperature is None and embedded.reply_temperature == EMBEDDED_TEMPERATURE == 0.3
    assert GenerationOptions.from_settings(embedded).temperature == EMBEDDED_TEMPERATURE
    # A backend switched at run time (the web UI's settings) gets its own default.
    assert embedded.replace(llm_backend="openai").reply_temperature == SERVED_TEMPERATURE == 0.7
    assert Settings.from_env({"EMPATHIC_TEMPERATURE": "0"}).reply_temperature == 0.0
    with pytest.raises(ConfigError):
        Settings.from_env({"EMPATHIC_TEMPERATURE": "3"})


def test_explicit_overrides_win_over_environment_and_none_is_ignored():
    env = {"EMPATHIC_MAX_NEW_TOKENS": "32", "EMPATHIC_LLM_BACKEND": "openai"}
    s = Settings.from_env(env, max_new_tokens="64", llm_backend=None)
    assert s.max_new_tokens == 64
    assert s.llm_backend == "openai"


@pytest.mark.parametrize("env, needle", [
    ({"EMPATHIC_LLM_BACKEND": "gpt5"}, "llm_backend"),
    ({"EMPATHIC_MAX_NEW_TOKENS": "many"}, "EMPATHIC_MAX_NEW_TOKENS"),
    ({"EMPATHIC_TEMPERATURE": "9"}, "temperature"),
    ({"EMPATHIC_OPENAI_EXTRA_BODY": "[1]"}, "JSON object"),
    ({"EMPATHIC_LLM_TIMEOUT_S": "0"}, "llm_timeout_s"),
])
def test_invalid_values_give_clear_errors(env, needle):
    with pytest.raises(ConfigError, match=needle):
        Settings.from_env(env)


def test_unknown_override_lists_valid_settings():
    with pytest.raises(ConfigError, match="valid settings: .*llm_backend"):
        Settings.from_env({}, llm_backnd="openai")


def test_seed_none_from_env_and_api_key_redacted():
    s = Settings.from_env({"EMPATHIC_SEED": "none", "EMPATHIC_OPENAI_API_KEY": "sk-secret"})
    assert s.seed is None
    assert s.to_dict()["openai_api_key"] == "***"
    assert "sk-secret" not in str(s.to_dict())
