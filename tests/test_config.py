"""Configuration is checked where it is loaded: types, ranges and choices, with the key and what is
allowed in the message, the same for `repolm.toml`, CLI flags and editor settings."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from conftest import run_repolm, write_tree

from repolm.config import Config, ConfigError, load_config
from repolm.server.settings import apply_settings


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('[search]\nmode = "nonsense"\n', "search.mode = 'nonsense': choose one of bm25, dense, hybrid"),
        ('[search]\nfusion = "x"\n', "search.fusion = 'x': choose one of rrf, weighted"),
        ("[search]\nrrf_k = -5\n", "search.rrf_k = -5: must be at least 0"),
        ("[search]\nper_file_cap = -1\n", "search.per_file_cap = -1: must be at least 0"),
        ("[search]\ndense_weight = 1.5\n", "search.dense_weight = 1.5: must be at most 1"),
        ("[search]\nsummaries = 1\n", "search.summaries = 1: must be true or false"),
        ("[index]\nmax_file_bytes = -1\n", "index.max_file_bytes = -1: must be at least 1"),
        ("[index]\nmax_file_bytes = true\n", "index.max_file_bytes = True: must be an integer"),
        ('[index]\nindex_dir = ""\n', "index.index_dir = '': must not be empty"),
        ('[index]\nexclude = "dist/"\n', "index.exclude = 'dist/': must be a list of strings"),
        ("[index]\nexclude = [1]\n", "index.exclude = [1]: must be a list of strings"),
        ("[serve]\ncompletion_max_tokens = 0\n", "serve.completion_max_tokens = 0: must be at least 1"),
        ("[serve]\nmodel = 3\n", "serve.model = 3: must be a string"),
        ('[train]\nprofile = "huge"\n', "train.profile = 'huge': choose one of auto, quick, standard, full"),
        ("[train]\noracle_probability = -0.1\n", "train.oracle_probability = -0.1: must be at least 0"),
        ('[train]\ntasks = ["plan", "poems"]\n', "train.tasks = ['plan', 'poems']: choose from completion"),
        ("[train]\ntasks = []\n", "train.tasks = []: must not be empty"),
        ("[search]\nk = 3\n", "unknown setting search.k"),
    ],
)
def test_bad_values_in_repolm_toml_name_the_key_and_what_is_allowed(
    tmp_path: Path, toml: str, message: str
) -> None:
    (tmp_path / "repolm.toml").write_text(toml)
    with pytest.raises(ConfigError) as raised:
        load_config(tmp_path)
    assert message in str(raised.value)


def test_every_number_has_a_range_and_every_text_choice_is_checked() -> None:
    """No setting is left out of the checks: each numeric one refuses -1, each with choices a made-up
    value, each of the others a value of the wrong type."""
    config = Config()
    for section in dataclasses.fields(config):
        for setting in dataclasses.fields(getattr(config, section.name)):
            key = f"{section.name}.{setting.name}"
            default = getattr(getattr(config, section.name), setting.name)
            if isinstance(default, bool):
                bad: object = "yes"
            elif isinstance(default, (int, float)):
                bad = -1
            elif setting.metadata.get("choices"):
                bad = ("made-up",) if isinstance(default, tuple) else "made-up"
            else:
                bad = 12
            with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
                config.with_overrides(section.name, **{setting.name: bad})
            with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
                dataclasses.replace(getattr(config, section.name), **{setting.name: bad})


def test_good_values_still_load(tmp_path: Path) -> None:
    (tmp_path / "repolm.toml").write_text(
        '[index]\nexclude = ["dist/"]\nmax_file_bytes = 2048\n'
        '[search]\nmode = "bm25"\nfusion = "weighted"\ndense_weight = 1\nper_file_cap = 0\nrrf_k = 0\n'
        '[train]\ntasks = ["plan"]\noracle_probability = 1\n'
    )
    config = load_config(tmp_path)
    assert config.index.exclude == ("dist/",) and config.search.dense_weight == 1.0
    assert isinstance(config.search.dense_weight, float) and config.train.tasks == ("plan",)


def test_editor_settings_with_bad_values_are_left_out_with_a_warning() -> None:
    settings = {
        "search": {"mode": "nonsense", "perFileCap": -1, "rrfK": 10},
        "completion": {"maxTokens": 0},
        "index": {"maxFileBytes": -1},
    }
    config, problems = apply_settings(Config(), settings)
    assert config.search == dataclasses.replace(Config().search, rrf_k=10)
    assert config.serve == Config().serve and config.index == Config().index
    assert len(problems) == 4
    assert "search.mode = 'nonsense': choose one of bm25, dense, hybrid" in problems[0]


REPO = {"shop/pricing.py": "def apply_discount(price, percent):\n    return price * (1 - percent / 100)\n"}


def test_the_cli_checks_its_flags_and_the_query(tmp_path: Path) -> None:
    """Refused before the index is even opened (there is none here)."""
    write_tree(tmp_path, REPO)
    for args, message in (
        (("--per-file-cap", "-5"), "search.per_file_cap = -5: must be at least 0"),
        (("-k", "0"), "-k must be at least 1"),
    ):
        result = run_repolm("search", "discount", "--repo", str(tmp_path), *args)
        assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr
    for query in ("", "   "):
        result = run_repolm("search", query, "--repo", str(tmp_path))
        assert result.returncode == 2 and "the query is empty" in result.stderr, result.stderr
    (tmp_path / "repolm.toml").write_text('[search]\nmode = "nonsense"\n')
    result = run_repolm("search", "discount", "--repo", str(tmp_path))
    assert result.returncode == 2 and "search.mode = 'nonsense'" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_profile_choices_are_the_trainers_profiles() -> None:
    from repolm.config import TRAIN_PROFILES
    from repolm.training.finetune import PROFILES, profile

    assert set(TRAIN_PROFILES) == {"auto", *PROFILES}
    assert profile("auto") is PROFILES["standard"]  # no GPU here: the CPU's profile
