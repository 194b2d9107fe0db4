from pathlib import Path

import pytest

from ponder.config import load_settings
from ponder.errors import ConfigError

CONFIG = """
default_model = "from-file"
port = 9000

[engine]
n_ctx = 1024
n_threads = 3

[models.vllm]
backend = "remote"
base_url = "http://127.0.0.1:8001/v1"
model = "Qwen/Qwen3-8B"
api_key_env = "MY_KEY"

[models.mine]
source = "/models/mine.gguf"
n_ctx = 2048

[aliases]
"gpt-4o" = "mine"

[aliases."muse-spark-1.3"]
model = "vllm"
mode = "contemplating"
effort = "high"
"""


def test_file_then_env_then_flags(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(CONFIG)
    s = load_settings(path, env={"MY_KEY": "secret"})
    assert (s.default_model, s.port, s.engine.n_ctx, s.engine.n_threads) == ("from-file", 9000, 1024, 3)
    vllm = s.models["vllm"]
    assert (vllm.backend, vllm.upstream_model, vllm.api_key) == ("remote", "Qwen/Qwen3-8B", "secret")
    assert (s.models["mine"].source, s.models["mine"].n_ctx) == ("/models/mine.gguf", 2048)
    muse = s.aliases["muse-spark-1.3"]
    assert (muse.model, muse.mode, muse.effort) == ("vllm", "contemplating", "high")
    assert (s.aliases["gpt-4o"].model, s.aliases["gpt-4o"].mode) == ("mine", None)

    env = {"PONDER_MODEL": "from-env", "PONDER_PORT": "9100", "PONDER_N_CTX": "512", "PONDER_HOME": str(tmp_path)}
    s = load_settings(path, env=env)
    assert (s.default_model, s.port, s.engine.n_ctx, s.data_dir) == ("from-env", 9100, 512, tmp_path)

    s = load_settings(path, env=env, port=9200, host=None)
    assert (s.port, s.host) == (9200, "127.0.0.1"), "a flag wins; an unset flag changes nothing"


def test_missing_file_gives_defaults(tmp_path: Path) -> None:
    s = load_settings(tmp_path / "absent.toml", env={})
    assert s.default_model == "qwen2.5-coder-1.5b" and s.models == {}


def test_the_engine_batches_four_sequences_unless_told_otherwise(tmp_path: Path) -> None:
    assert load_settings(tmp_path / "absent.toml", env={}).engine.n_seq_max == 4  # the batched engine
    assert load_settings(tmp_path / "absent.toml", env={"PONDER_N_SEQ": "1"}).engine.n_seq_max == 1  # the simple one
    path = tmp_path / "config.toml"
    path.write_text("[engine]\nn_seq_max = 2\n")
    assert load_settings(path, env={}).engine.n_seq_max == 2
    assert load_settings(path, env={"PONDER_N_SEQ": "8"}).engine.n_seq_max == 8


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("[models.x]\nbackend = 'remote'\n", "needs base_url"),
        ("[engine]\nn_cxt = 5\n", "n_cxt"),
        ("port = ", "config file"),
        ("[aliases.a]\nmode = 'thinking'\n", "the model it stands for"),
        ("[aliases.a]\nmodel = 'x'\nmode = 'dreaming'\n", "unknown mode"),
        ("[aliases.a]\nmodel = 'x'\neffort = 'extreme'\n", "effort"),
        ("[aliases.a]\nmodel = 'x'\ntemperature = 1\n", "unknown keys"),
        # each kind of backend takes its own keys only
        (
            "[models.x]\nbackend = 'remote'\nbase_url = 'http://a/v1'\nmmproj = 'p.gguf'\n",
            "unknown key 'mmproj' for a remote model",
        ),
        ("[models.x]\nsource = 'x.gguf'\nbase_url = 'http://a/v1'\n", "unknown key 'base_url' for an embedded model"),
        ("[models.x]\nbackend = 'scripted'\nsource = 'x'\n", "unknown key 'source' for a scripted model"),
        ("[models.x]\nbackend = 'ollama'\n", "backend: use embedded, remote, scripted"),
    ],
)
def test_bad_config_is_a_clear_error(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "config.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_settings(path, env={})
