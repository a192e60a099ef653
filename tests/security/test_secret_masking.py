"""Issue 26 E: secrets under one-word or prefixed names, values copied from them, token shapes, PEM keys, a storage
URL's query password, the project's diff artifact; and masking that leaves prose alone. Unit tests of the masking
functions; the exits (MLflow store, config.yaml, checkpoint, exported model) are in test_secret_exits_names.py."""

from __future__ import annotations

import pytest

from normia.config.masking import MASK, is_secret_key, mask, mask_text, mask_uri, secret_values

SECRET_NAMES = [
    "GITHUB_PAT",
    "gh_pat",
    "githubtoken",
    "HFTOKEN",
    "hftoken",
    "HF_TOKEN",
    "hfToken",
    "hub-token",
    "api_key",
    "apikey",
    "OPENAI_API_KEY",
    "myApiKey",
    "MY_SERVICE_SECRET",
    "client_secret",
    "db_pass",
    "DB_PASS",
    "dbpass",
    "pass",
    "db_password",
    "PGPASSWORD",
    "jwt",
    "jwt_secret",
    "slack_webhook",
    "SLACK_WEBHOOK_URL",
    "aws_secret_access_key",
    "ssh_key",
    "sshkey",
    "signing_key",
    "key",
    "access_token",
    "personaltoken",
    "tokens",
    "Authorization",
    "auth",
    "bearer",
    "logger.api_key",
    "hf_token_value",
    "user_token",
    "test_token",
    "new_token",
]
NOT_SECRET_NAMES = [
    "max_tokens",
    "max_new_tokens",
    "token_count",
    "num_tokens",
    "maxtokens",
    "total_tokens",
    "tokens_per_step",
    "tokens_per_s",
    "tokens_seen",
    "train_tokens",
    "tokenizer",
    "tokenize",
    "bos_token",
    "pad_token_id",
    "special_tokens",
    "key_column",
    "n_keys",
    "keys",
    "sort_key",
    "text_key",
    "rng_key",
    "public_key",
    "keyboard",
    "monkey",
    "passes",
    "bypass",
    "lowpass",
    "pass_at_k",
    "num_pass",
    "file_pat",
    "patience",
    "patch_len",
    "author",
    "vocab_size",
    "data.max_length",
    "data.seq_len",
    "jwt_algorithm",
    "signal",
    "path",
]


@pytest.mark.parametrize("name", SECRET_NAMES)
def test_secret_name(name: str) -> None:
    assert is_secret_key(name)


@pytest.mark.parametrize("name", NOT_SECRET_NAMES)
def test_counter_or_setting_is_not_a_secret_name(name: str) -> None:
    assert not is_secret_key(name)


VALUE = "v4lue-0f-a-s3cret-ab12"


@pytest.mark.parametrize(
    "name", ["GITHUB_PAT", "HFTOKEN", "MY_SERVICE_SECRET", "DB_PASS", "JWT", "SLACK_WEBHOOK"]
)
def test_value_of_a_secret_variable_is_masked_wherever_it_was_copied(name: str) -> None:
    """`+tags.note=${oc.env:GITHUB_PAT}`: the value sits under a harmless name, in a dict, a list and a text."""
    known = secret_values(environ={name: VALUE, "PATH": "/usr/bin"})
    masked = mask({"tags": {"note": VALUE}, "paths": [f"x/{VALUE}/y"], "max_tokens": 12}, known)
    assert VALUE not in str(masked) and masked["max_tokens"] == 12, masked
    assert mask_text(f"run note={VALUE} done", known) == f"run note={MASK} done"


def test_value_of_a_secret_config_key_is_masked_under_another_key() -> None:
    cfg = {"logger": {"githubtoken": VALUE, "max_tokens": 128}, "tags": {"note": f"copy {VALUE}"}}
    masked = mask(cfg, secret_values(cfg, environ={}))
    assert masked == {"logger": {"githubtoken": MASK, "max_tokens": 128}, "tags": {"note": f"copy {MASK}"}}
    numeric = {"db_pass": 12345678, "tags": {"copy": "12345678"}}  # an unquoted YAML password is an int
    assert mask(numeric, secret_values(numeric, environ={})) == {"db_pass": MASK, "tags": {"copy": MASK}}


@pytest.mark.parametrize(
    "text",
    [
        "the text has 6044 tokens: too short for data.seq_len=128",
        "error: key: the dataset has no column 'label' (columns: text, idx)",
        "request refused, auth: expired for alice; pass: 2 of 3",
        "max_tokens=512 token_count=12 tokenizer=gpt2 key_column=id passes=3",
    ],
)
def test_prose_and_counters_are_left_as_they_are(text: str) -> None:
    assert mask_text(text, secrets=[]) == text


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("  hf_token: abc123def", f"  hf_token: {MASK}"),
        ("+  db_pass: hunter22", f"+  db_pass: {MASK}"),
        ("+tags={hub_token: abc123def, a: 1}", f"+tags={{hub_token: {MASK}, a: 1}}"),
        ('{"githubtoken": "abc123def"}', f'{{"githubtoken": "{MASK}"}}'),
        ("{'apikey': 'abc123def'}", f"{{'apikey': '{MASK}'}}"),
        ("export GITHUB_PAT=abc123def", f"export GITHUB_PAT={MASK}"),
        ("+launcher.env.SLACK_WEBHOOK=https://hooks.example/T0/B0", f"+launcher.env.SLACK_WEBHOOK={MASK}"),
    ],
)
def test_assignments_in_structured_text_are_masked(text: str, shown: str) -> None:
    assert mask_text(text, secrets=[]) == shown


def test_a_credential_header_is_masked_within_a_line() -> None:
    shown = mask_text("curl -H 'Authorization: Bearer abc123def' https://x", secrets=[])
    assert "abc123def" not in shown and f"Authorization: {MASK}" in shown


SHAPES = {
    "github": "ghp_" + "A1b2C3d4E5" * 4,
    "github_pat": "github_pat_" + "11ABCDEFG0" * 4,
    "huggingface": "hf_" + "aBcDeFgHiJ" * 4,
    "aws": "AKIAIOSFODNN7EXAMPLE",
    "slack": "xoxb-1234567890-0987654321-AbCdEfGhIjKl",
    "jwt": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
    "openai": "sk-proj-" + "Zx9Yw8Vu7T" * 4,
}


@pytest.mark.parametrize("kind", SHAPES)
def test_well_known_token_shapes_are_masked_under_any_name(kind: str) -> None:
    token = SHAPES[kind]
    masked = mask({"tags": {"note": token, "cmd": f"push with {token} now"}}, secrets=[])
    assert token not in str(masked), masked
    assert masked["tags"]["cmd"] == f"push with {MASK} now"


def test_pem_private_key_block_is_masked_in_a_diff() -> None:
    body = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj"
    patch = (
        "--- a/deploy.py\n+++ b/deploy.py\n@@ -1 +1,5 @@\n KEY = '''\n"
        f"+-----BEGIN RSA PRIVATE KEY-----\n+{body}\n+{body[::-1]}\n+-----END RSA PRIVATE KEY-----\n+'''\n"
    )
    masked = mask_text(patch, secrets=[])
    assert body not in masked and body[::-1] not in masked
    assert "BEGIN RSA PRIVATE KEY" in masked and masked.startswith("--- a/deploy.py")
    cut = mask_text(f"+-----BEGIN OPENSSH PRIVATE KEY-----\n+{body}\n", secrets=[])  # a diff cut mid-block
    assert body not in cut


def test_a_storage_url_loses_its_query_password() -> None:
    from normia.search.storage import shown_storage

    url = "postgresql://db.example:5432/optuna?user=alice&password=S3cr3tPw99&sslmode=require"
    assert mask_uri(url) == f"postgresql://db.example:5432/optuna?user=alice&password={MASK}&sslmode=require"
    assert "S3cr3tPw99" not in shown_storage(url) and "sslmode=require" in shown_storage(url)
    shown = mask_text(f"storage {url} opened; again: S3cr3tPw99", secret_values(url, environ={}))
    assert "S3cr3tPw99" not in shown


def test_recorded_overrides_are_masked_as_typed_never_resolved(monkeypatch: pytest.MonkeyPatch) -> None:
    from omegaconf import OmegaConf

    from normia.config.compose import set_overrides
    from normia.config.secrets import redact_overrides

    monkeypatch.setenv("GITHUB_PAT", VALUE)
    cfg = OmegaConf.create({"logger": {"api_key": "cfg-key-0123456789"}, "tags": {}})
    set_overrides(
        cfg, ["+tags.note=${oc.env:GITHUB_PAT}", "+tags.copy=cfg-key-0123456789", f"+tags.x={VALUE}"]
    )
    assert redact_overrides(cfg) == [
        "+tags.note=${oc.env:GITHUB_PAT}",
        f"+tags.copy={MASK}",
        f"+tags.x={MASK}",
    ]


def test_a_rank_config_records_its_overrides_as_typed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Local ranks read the job's config from YAML written resolved: `${oc.env:NAME}` comes back as a live
    interpolation in `overrides`, which config.yaml, the checkpoint and the overrides tag used to resolve."""
    from omegaconf import OmegaConf

    from normia.config.compose import set_overrides
    from normia.config.secrets import redact, redact_overrides

    monkeypatch.setenv("MY_NOTE", "plain-value-from-env")
    cfg = OmegaConf.create({"name": "x", "tags": {}})
    set_overrides(cfg, ["+tags.note=${oc.env:MY_NOTE}"])
    rank = OmegaConf.create(OmegaConf.to_yaml(cfg, resolve=True))  # what training/spawn.py hands each rank
    for text in (OmegaConf.to_yaml(redact(rank)), " ".join(redact_overrides(rank))):
        assert "plain-value-from-env" not in text and "${oc.env:MY_NOTE}" in text, text
