"""The option tables (kodcode_async/options.py) say what each option is; these tests hold them to it:
the range rule, the synthesis-only mark, the file paths and whether an option shapes the rows (the
run's fingerprint) are checked for every option, against the real config builder and fingerprint."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from kodcode_async import options
from kodcode_async.configure import run_problem, run_setup, run_values
from kodcode_async.options import RUN, ConfigError, load_config, range_problem
from kodcode_async.run import fingerprint
from tests.conftest import ROOT

SYNTH = ROOT / "examples" / "synth"
# Every stage on: question synthesis (with a classifying subset), tags, solutions, style and SFT.
BASE = {"subsets": "leetcode,prefill,filter", "seeds": f"leetcode={SYNTH}/leetcode.jsonl", "tag": "quality",
        "style": True, "sft_n": 1, "out": "/nonexistent/out"}
# Where changing a value the generic way (below) would not make another valid run.
PROBES = {"subsets": "leetcode,prefill", "seeds": f"leetcode={SYNTH}/evol.jsonl", "tag": "judge",
          "seed_fields": "leetcode.text=content", "counts": "leetcode=2", "shots": "leetcode=2",
          "prefill_template": "llama3", "filter_keep": "math", "start_at": "solutions", "stop_after": "solutions", "prompts": "PROMPTS"}


def probe(option: options.Option, base: object) -> object:
    """Another valid value for `option`, whose value is `base` now."""
    if option.key in PROBES:
        return PROBES[option.key]
    if isinstance(base, bool):
        return not base
    if isinstance(base, int):
        return base + 1
    if isinstance(base, float):
        return base / 2
    if option.choices:
        return next(c for c in option.choices if c != base)
    return base + "x"


@pytest.fixture(scope="module")
def prompts_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("prompts")
    (folder / "solutions.user.txt").write_text("Solve this, with pytest tests:\n{question}\n")
    return str(folder)


def values(**changes: object) -> argparse.Namespace:
    return run_values(None, {**BASE, **changes})


@pytest.mark.parametrize("option", RUN, ids=lambda o: o.key)
def test_an_option_is_part_of_the_fingerprint_exactly_when_it_is_declared_to_shape_the_rows(option, prompts_dir):
    base = values()
    value = probe(option, getattr(base, option.key))
    if value == "PROMPTS":
        value = prompts_dir
    before = fingerprint(run_setup(base, environ={}).config)
    after = fingerprint(run_setup(values(**{option.key: value}), environ={}).config)
    assert (before != after) == option.rows, (option.key, value)


@pytest.mark.parametrize("option", RUN, ids=lambda o: o.key)
def test_options_marked_for_synthesis_are_refused_without_subsets_and_no_others(option, prompts_dir):
    o = run_values(None, {"input": str(ROOT / "examples" / "questions.jsonl"), "out": "/nonexistent/out"})
    value = probe(option, getattr(o, option.key))
    if option.key in ("subsets", "start_at", "stop_after", "input", "out", "executor", "ray_address", "sandbox_workers"):
        return  # they change what the run is, or where; their own checks are tested in test_cli.py
    setattr(o, option.key, prompts_dir if value == "PROMPTS" else value)
    problem = run_problem(o)
    assert ("only takes effect with --subsets" in problem) == option.synthesis, (option.key, problem)


@pytest.mark.parametrize("option", [o for o in RUN if o.rule], ids=lambda o: o.key)
def test_a_value_outside_its_rule_is_one_line_on_the_command_line_and_in_a_config_file(option, tmp_path):
    bad = {"positive": 0, "non-negative": -1, "port": 70000}[option.rule]
    bad = option.kind(bad)
    problem = run_problem(values(**{option.key: bad}))
    assert problem == f"error: {option.flag} must be {options.RULES[option.rule]}, got {bad}"
    nan = run_problem(values(**{option.key: float("nan")}))
    assert nan.startswith(f"error: {option.flag} must be"), nan
    cfg = tmp_path / "bad.toml"
    cfg.write_text(f"{option.key.replace('_', '-')} = {bad}\n")
    with pytest.raises(ConfigError, match=f"^{cfg}: {option.key.replace('_', '-')} must be {options.RULES[option.rule]}"):
        load_config(str(cfg))
    # the default keeps the rule
    assert range_problem({option.key: option.default}, (option,)) == ""


def test_a_config_file_is_checked_against_each_options_type_and_choices(tmp_path):
    cfg = tmp_path / "c.toml"
    for text, message in (('workers = "many"', "workers must be int, got str"),
                          ("style = 1", "style must be bool, got int"),
                          ("attempts = true", "attempts must be int, got bool"),
                          ('isolation = "auto"', "isolation must be one of bwrap, none, not 'auto'"),
                          ('log-level = "loud"', "log-level must be one of debug, info, warning, error"),
                          ("wokers = 3", "unknown key 'wokers'"),
                          ("workers = ", "is not valid TOML")):
        cfg.write_text(text + "\n")
        with pytest.raises(ConfigError, match=message):
            load_config(str(cfg))
    cfg.write_text("timeout = 5\nlog-level = \"\"\n")
    assert load_config(str(cfg)) == {"timeout": 5.0, "log_level": ""}  # a whole number for a float; "" = unset
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(str(tmp_path / "none.toml"))
    with pytest.raises(ConfigError, match="is a directory"):
        load_config(str(tmp_path))


def test_every_option_that_names_files_is_read_relative_to_the_config_files_folder(tmp_path):
    cfg = tmp_path / "conf" / "x.toml"
    cfg.parent.mkdir()
    lines, want = [], {}
    for o in RUN:
        if not o.path:
            continue
        value = {"file": "sub/f.jsonl", "pairs": "leetcode=sub/f.jsonl", "names": "bundled,sub/f.jsonl"}[o.path]
        lines.append(f'{o.key} = "{value}"')
        want[o.key] = value.replace("sub/", f"{cfg.parent}/sub/")
    cfg.write_text("\n".join(lines) + '\nmodel = "a/b"\n')
    got = load_config(str(cfg))
    assert got == {**want, "model": "a/b"}  # a value that is not a path stays as it is
    assert set(want) >= {"input", "out", "recorded", "sft_recorded", "prompts", "log_file", "seeds", "benchmarks",
                         "prefill_template"}


def test_examples_full_toml_is_the_generated_file_and_sets_only_the_demo_values():
    import tomllib

    text = (ROOT / "examples" / "full.toml").read_text()
    assert text == options.full_toml(), "regenerate: python -m kodcode_async.options > examples/full.toml"
    values = {k.replace("-", "_"): v for k, v in tomllib.loads(text).items()}
    assert set(values) == set(options.DEFAULTS)
    demo = {o.key for o in RUN if o.demo is not None}
    assert demo == {"input", "out", "model", "recorded", "max_attempts", "timeout", "style", "sft_n"}
    for key, value in values.items():
        assert (value != options.DEFAULTS[key]) == (key in demo), key


def test_the_api_takes_its_defaults_from_the_table():
    from kodcode_async.api import Pipeline
    from kodcode_async.backends.openai import OpenAIConfig
    from kodcode_async.run import RunConfig
    from kodcode_async.stages.solutions import SolveOptions
    from kodcode_async.subsets import SynthOptions

    d = options.DEFAULTS
    solve = SolveOptions()
    assert (solve.attempts, solve.max_attempts, solve.temperature, solve.max_tokens, solve.seed) == \
        (d["attempts"], d["max_attempts"], d["temperature"], d["max_tokens"], d["seed"])
    assert (solve.limits.wall_s, solve.limits.memory_mb) == (d["timeout"], d["memory_mb"])
    assert RunConfig("", "").workers == d["workers"] == Pipeline(None).config.workers
    synth = SynthOptions(("prefill",))
    assert synth.filter_keep == ("algorithm implementation", "function generation")
    assert synth.prefill_prefixes == (d["prefill_prefix"],) and synth.benchmarks == (d["benchmarks"],)
    assert (synth.dedup_threshold, synth.decontam_threshold) == (d["dedup_threshold"], d["decontam_threshold"])
    config = OpenAIConfig("http://x", "m")
    assert (config.timeout_s, config.max_retries, config.max_in_flight) == \
        (d["request_timeout"], d["max_retries"], d["workers"])
    # A config built from the defaults is the API's default config.
    setup = run_setup(run_values(None, {"input": str(ROOT / "examples" / "questions.jsonl"), "out": "o"}), environ={})
    assert dataclasses.replace(setup.config.solve, model_name="") == solve


def test_the_stage_and_subset_names_the_options_declare_are_the_engines():
    from kodcode_async import subsets
    from kodcode_async.stages import plans

    assert options.STAGES == tuple(p.name for p in plans())
    assert options.SUBSET_NAMES == tuple(subsets.SUBSETS)
