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


# ---- the parsers, help and paths the tables generate -------------------------------------------


def _actions(command: str) -> dict:
    from kodcode_async.cli import build_parser

    sub = build_parser()._subparsers._group_actions[0].choices[command]
    groups = {a.dest: g.title for g in sub._action_groups for a in g._group_actions}
    return {a.dest: (a, groups[a.dest]) for a in sub._actions if a.dest != "help"}


@pytest.mark.parametrize(("command", "table"), [("run", options.RUN), ("verify", options.VERIFY),
                                               ("serve", options.SERVE)])
def test_each_commands_flags_are_generated_from_its_table(command, table):
    actions = _actions(command)
    for o in table:
        action, group = actions[o.key]
        assert action.help == o.help_text()
        assert group == (o.group or ("positional arguments" if o.positional else "options")), o.key
        if o.positional:
            assert action.option_strings == [] and action.required
            continue
        assert action.option_strings == ([o.short] if o.short else []) + [o.flag]
        assert action.required == o.required
        assert action.default == (None if command == "run" else o.default), o.key  # run: a config file fills in
        if o.kind is bool:
            assert action.const is True and action.nargs == 0, o.key  # a switch
        else:
            assert action.type is (None if o.kind is str else o.kind), o.key
            assert action.choices == (o.choices or None) and action.metavar == o.metavar, o.key


def test_the_generated_parsers_parse_what_users_type():
    from kodcode_async.cli import build_parser

    parser = build_parser()
    args = parser.parse_args(["verify", "in.jsonl", "-o", "out.jsonl", "--workers", "3", "--timeout", "2.5",
                              "--strict-compare", "--isolation", "none"])
    assert (args.input, args.output, args.workers, args.timeout, args.strict_compare, args.isolation,
            args.memory_mb, args.flaky_reruns, args.no_coverage) == \
        ("in.jsonl", "out.jsonl", 3, 2.5, True, "none", 2048, 0, False)
    args = parser.parse_args(["run", "--out", "r", "--attempts", "4", "--style", "--start-at", "sft"])
    assert (args.out, args.attempts, args.style, args.start_at, args.workers, args.quiet) == \
        ("r", 4, True, "sft", None, None)
    args = parser.parse_args(["serve", "--port", "0"])
    assert (args.port, args.host, args.max_queue, args.workers, args.token_env) == (0, "127.0.0.1", 64, None, "")
    for wrong in (["run", "--attempts", "x"], ["run", "--start-at", "nope"], ["verify", "in.jsonl"]):
        with pytest.raises(SystemExit):
            parser.parse_args(wrong)


def test_help_states_the_default_in_words_where_the_value_would_mislead():
    Option = options.Option
    assert Option("a", "x y", "h").help_text() == "h (default: 'x y')"
    assert Option("a", "a,b", "h").help_text() == "h (default: 'a,b')"
    assert Option("a", "plain", "h").help_text() == "h (default: plain)"
    assert Option("a", True, "h").help_text() == "h (default: true)"
    assert Option("a", 0, "h").help_text() == "h (default: 0)"
    assert Option("a", 2.5, "h").help_text() == "h (default: 2.5)"
    for unset in ("", False, None):
        assert Option("a", unset, "h").help_text() == "h"
    assert Option("a", None, "h", shown="one per core").help_text() == "h (default: one per core)"
    assert Option("a", "", "h", shown="the backend's name").help_text() == "h (default: the backend's name)"
    assert Option("a", "x", "h", required=True).help_text() == "h"
    assert Option("a", "x", "h", positional=True).help_text() == "h"
    assert Option("a", None, "h").kind is int and Option("a", "", "h").kind is str
    assert Option("max_queue", 1, "h").flag == "--max-queue" and Option("input", "", "h", positional=True).flag == "input"


def test_a_port_is_0_to_65535():
    port = [o for o in options.SERVE if o.key == "port"]
    for good in (0, 8080, 65535):
        assert range_problem({"port": good}, port) == ""
    for bad in (-1, 65536):
        assert range_problem({"port": bad}, port) == f"error: --port must be 0-65535, got {bad}"


def test_an_unknown_config_key_lists_the_known_ones(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("wokers = 3\n")
    with pytest.raises(ConfigError) as e:
        load_config(str(cfg))
    assert str(e.value) == f"{cfg}: unknown key 'wokers'; known: " + ", ".join(sorted(options.DEFAULTS))


def test_urls_absolute_paths_and_bundled_names_in_a_config_file_stay_as_written(tmp_path):
    cfg = tmp_path / "x.toml"
    cfg.write_text('input = "s3://bucket/q.jsonl"\nout = "/abs/run"\nrecorded = ""\n'
                   'seeds = "leetcode=gs://b/lc.jsonl,docs=d.json"\nbenchmarks = "humaneval,b.json,c.toml,bench"\n'
                   'prefill-template = "llama3"\n')
    got = load_config(str(cfg))
    assert got == {"input": "s3://bucket/q.jsonl", "out": "/abs/run", "recorded": "",
                   "seeds": f"leetcode=gs://b/lc.jsonl,docs={tmp_path}/d.json",
                   "benchmarks": f"humaneval,{tmp_path}/b.json,{tmp_path}/c.toml,bench", "prefill_template": "llama3"}


# ---- configure: option values -> a run --------------------------------------------------------------

QUESTIONS = str(ROOT / "examples" / "questions.jsonl")


def test_flags_win_over_the_config_file_which_wins_over_the_defaults(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("attempts = 5\nseed = 4\n")
    o = run_values(str(cfg), {"seed": 9, "style": None})
    assert (o.attempts, o.seed, o.style, o.workers) == (5, 9, False, 128)


def test_a_run_makes_questions_only_with_subsets_and_when_it_starts_there():
    from kodcode_async.configure import makes_questions

    for subsets, start, want in (("leetcode", "", True), ("leetcode", "questions", True),
                                 ("leetcode", "solutions", False), ("", "", False), ("", "questions", False)):
        assert makes_questions(run_values(None, {"subsets": subsets, "start_at": start})) is want


def test_each_way_a_run_cannot_start_is_one_line(tmp_path):
    def problem(**flags):
        return run_problem(run_values(None, {"out": str(tmp_path / "out"), "input": QUESTIONS, **flags}))

    assert problem() == ""
    assert problem(seeds="x") == ("error: --seeds only takes effect with --subsets (question synthesis); add "
                                  "--subsets, or leave them out")
    assert problem(seeds="x", counts="a=1").startswith("error: --seeds, --counts only take effect with --subsets")
    assert problem(subsets="leetcode") == (
        "error: --input and --subsets both given: with --subsets the questions are made from --seeds; to solve a "
        "questions file, leave out --subsets (or add --start-at solutions)")
    assert problem(subsets="leetcode", start_at="solutions") == ""  # solving a questions file of a synthesis run
    assert problem(out="") == ("error: run needs --out RUN_DIR, and --input QUESTIONS.jsonl or --subsets LIST (with "
                               "--seeds) to make the questions")
    assert problem(input="").startswith("error: run needs --out")
    assert problem(input=str(tmp_path)) == f"error: the input {tmp_path} is a directory; give a JSONL file"
    assert problem(input=str(tmp_path / "no.jsonl")) == f"error: input file not found: {tmp_path / 'no.jsonl'}"
    assert problem(input="s3://b/q.jsonl") == ("error: --input and --out at URLs are for --executor ray; the local "
                                               "executor takes paths")
    assert problem(out="s3://b/run").startswith("error: --input and --out at URLs are for --executor ray")
    assert problem(input="s3://b/q.jsonl", executor="ray") == ""  # the runners read it
    assert problem(input=str(tmp_path / "no.jsonl"), executor="ray").startswith("error: input file not found")
    (tmp_path / "file").write_text("x")
    assert problem(out=str(tmp_path / "file")) == f"error: the run directory {tmp_path / 'file'} exists and is a file"
    assert problem(sandbox_workers=10 ** 6).startswith("error: --sandbox-workers 1000000 is more sandbox workers")


def test_sandbox_workers_beyond_what_the_machine_holds_are_refused_and_many_per_core_warned(monkeypatch, capsys):
    import sandbox.pool
    from kodcode_async.configure import check_sandbox_workers

    monkeypatch.setattr(sandbox.pool, "max_sandbox_workers", lambda: (12, "3.0 GB available"))
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    assert check_sandbox_workers("--workers", None) == "" and check_sandbox_workers("--workers", 0) == ""
    assert check_sandbox_workers("--workers", 8) == "" and capsys.readouterr().err == ""  # 4 per core: quiet
    assert check_sandbox_workers("--workers", 9) == ""
    assert capsys.readouterr().err == ("warning: --workers 9 sandbox workers on 2 cores: jobs will mostly wait for "
                                       "a core\n")
    assert check_sandbox_workers("--workers", 12) == ""
    assert check_sandbox_workers("--x", 13) == ("error: --x 13 is more sandbox workers than this machine can hold "
                                                "(3.0 GB available: at most 12); each is a warm interpreter running "
                                                "one job at a time")


def test_the_sandbox_config_of_the_shared_options(monkeypatch):
    from kodcode_async.configure import sandbox_config

    monkeypatch.setattr("os.cpu_count", lambda: 3)
    o = run_values(None, {"isolation": "none", "block_imports": " scipy, ,sympy", "flaky_reruns": 2,
                          "strict_compare": True})
    config = sandbox_config(o, None)
    assert (config.workers, config.isolation, config.blocked_imports, config.flaky_reruns, config.strict_compare) == \
        (3, "none", ("scipy", "sympy"), 2, True)
    assert sandbox_config(o, 5).workers == 5
    monkeypatch.setattr("os.cpu_count", lambda: None)
    assert sandbox_config(o, 0).workers == 1


def test_run_setup_builds_the_config_and_the_backends_specs(tmp_path):
    o = run_values(None, {"input": QUESTIONS, "out": str(tmp_path / "r"), "backend": "openai", "model": "m",
                          "base_url": "http://h/v1", "api_key_env": "MY_KEY", "recorded": "rec.jsonl", "workers": 7,
                          "request_timeout": 9.0, "max_retries": 2, "seed": 3, "sft_n": 2, "sft_backend": "recorded",
                          "sft_model": "r", "limit": 2, "tag": "quality", "timeout": 4.0, "memory_mb": 512,
                          "start_at": "tags", "stop_after": "solutions"})
    setup = run_setup(o, {"MY_KEY": "k3y"})
    assert setup.backend == {"kind": "openai", "model": "m", "base_url": "http://h/v1", "api_key": "k3y",
                             "recorded_path": "rec.jsonl", "workers": 7, "timeout_s": 9.0, "max_retries": 2}
    assert setup.sft_backend == {**setup.backend, "kind": "recorded", "model": "r", "base_url": "http://h/v1",
                                 "recorded_path": "rec.jsonl"}
    c = setup.config
    assert (c.input_path, c.out_dir, c.workers, c.limit, c.tags, c.start_at, c.stop_after, c.sft_model_name) == \
        (QUESTIONS, str(tmp_path / "r"), 7, 2, ("quality",), "tags", "solutions", "r")
    assert (c.solve.model_name, c.solve.seed, c.solve.limits.wall_s, c.solve.limits.memory_mb) == ("m", 3, 4.0, 512)
    assert (c.sft.n, c.sft.seed, c.sft.limits) == (2, 3, c.solve.limits)
    plain = run_setup(run_values(None, {"input": QUESTIONS, "out": "r", "api_key_env": "", "sft_backend": "openai"}),
                      {"": "never"})
    assert plain.backend["api_key"] is None and plain.sft_backend is None  # no SFT stage: no SFT backend
    assert (plain.config.limit, plain.config.start_at, plain.config.solve.model_name, plain.config.sft_model_name) == \
        (None, None, "recorded", "recorded")


def test_a_run_starts_no_more_sandbox_workers_than_its_first_attempts_can_use(tmp_path):
    one = tmp_path / "one.jsonl"
    one.write_text('{"question": "a"}\n')

    def workers(**flags):
        o = run_values(None, {"out": "r", "sandbox_workers": 8, **flags})
        return run_setup(o, {}).config.sandbox.workers

    assert workers(input=str(one), attempts=1, max_attempts=1) == 1
    assert workers(input=str(one), attempts=3) == 3
    assert workers(input=str(one), attempts=1, max_attempts=1, sft_n=5) == 5
    assert workers(input=QUESTIONS, attempts=1, max_attempts=1) == 5  # five questions
    assert workers(input=QUESTIONS, attempts=1, max_attempts=1, limit=2) == 2
    assert workers(input=QUESTIONS, attempts=3) == 8  # as asked: 15 could run at once
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert workers(input=str(empty), attempts=1, max_attempts=1) == 1
    synth = run_values(None, {"out": "r", "sandbox_workers": 8, "subsets": "prefill"})
    assert run_setup(synth, {}).config.sandbox.workers == 8  # questions made here: not known yet


def test_name_value_pairs_are_read_strictly():
    from kodcode_async.configure import names, pairs

    assert pairs(" a=1, b = 2 ,", "--x") == [("a", "1"), ("b", "2")]
    assert pairs("a=b=c", "--x") == [("a", "b=c")]
    for bad in ("a", "=1", "a=", " = "):
        with pytest.raises(ValueError, match=f"^--x: expected NAME=VALUE pairs separated by commas, got '{bad.strip()}'"):
            pairs(bad, "--x")
    assert names(None) == () and names(" a,,b ") == ("a", "b")


def test_synthesis_options_take_seed_fields_counts_prefixes_and_a_template_file(tmp_path):
    from kodcode_async.configure import synth_options
    from kodcode_async.prompts import load_prompts

    lc = f"{SYNTH}/leetcode.jsonl"

    def synth(**flags):
        o = run_values(None, {"out": "r", "subsets": "leetcode,prefill", "seeds": f"leetcode={lc}", **flags})
        return synth_options(o, load_prompts())

    s, prompts = synth(seed_fields="leetcode.text=content,leetcode.id=slug,leetcode.package=lib", counts="leetcode=4",
                       shots="leetcode=2", prefill_prefix=" Write a | Implement |", seed=6)
    assert s.seeds[0].subset == "leetcode" and s.seeds[0].path == lc
    assert (s.seeds[0].text, s.seeds[0].id, s.seeds[0].package) == ("content", "slug", "lib")
    assert (s.counts, s.shots, s.prefill_prefixes, s.seed) == ({"leetcode": 4}, {"leetcode": 2},
                                                                ("Write a", "Implement"), 6)
    assert prompts == load_prompts()
    for flags, message in (({"seed_fields": "leetcode.title=x"}, "--seed-fields: expected SUBSET.text|id|package=FIELD, "
                                                                  "got leetcode.title=x"),
                           ({"seed_fields": "leetcode=x"}, "--seed-fields: expected SUBSET.text|id|package"),
                           ({"seed_fields": "docs.text=t,apps.id=i"}, "--seed-fields names apps, docs, which has no "
                                                                       "--seeds file"),
                           ({"counts": "leetcode=many"}, "--counts: leetcode=many is not a whole number"),
                           ({"shots": "leetcode=1.5"}, "--shots: leetcode=1.5 is not a whole number"),
                           ({"seeds": "leetcode"}, "--seeds: expected NAME=VALUE pairs")):
        with pytest.raises(ValueError) as e:
            synth(**flags)
        assert str(e.value).startswith(message), (flags, str(e.value))
    template = tmp_path / "mine.toml"
    template.write_text((ROOT / "kodcode_async" / "prompts" / "prefill" / "llama3.toml").read_text())
    s, prompts = synth(prefill_template=str(template))
    mine, llama = prompts.prefill["mine"], prompts.prefill["llama3"]
    assert s.prefill_template == "mine" and (mine.prompt, mine.stop) == (llama.prompt, llama.stop)
    assert set(prompts.prefill) == set(load_prompts().prefill) | {"mine"}


def test_full_toml_values_read_back_as_written_quotes_and_backslashes_too():
    import tomllib

    for value in ('say "hi"', "C:\\dir\\x", "plain", "", True, False, 0, 2.5):
        assert tomllib.loads(f"k = {options._toml_value(value)}\n")["k"] == value, value
