"""Seed files: JSON and JSONL, field mappings, the real KodCode seed files, and bad rows kept with a reason."""

import gzip
import json
from pathlib import Path

import pytest

from kodcode_async.seeds import SeedError, SeedSource, load_seeds
from kodcode_async.subsets import SynthOptions, prompt_rows

DATA = Path(__file__).parent / "data"


def test_the_real_kodcode_snippet_files_load_without_a_mapping() -> None:
    algo, bad = load_seeds(SeedSource("algorithm", str(DATA / "algorithm_seeds.json.gz")), "snippet")
    assert len(algo) == 1118 and bad == []
    assert algo[0].id == "0" and "def " in algo[0].text and algo[0].title
    ds, bad = load_seeds(SeedSource("data_structure", str(DATA / "data_structure_seeds.json.gz")), "snippet")
    assert len(ds) == 352 and bad == []
    assert len({s.id for s in algo}) == len(algo)


def test_jsonl_with_a_dotted_field_mapping(tmp_path: Path) -> None:
    path = tmp_path / "lc.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in [
        {"meta": {"slug": "two-sum"}, "body": {"text": "Find two numbers that add up to a target."}},
        {"meta": {"slug": "three-sum"}, "body": {"text": "Find all triples that sum to zero."}},
    ]) + "\n")
    seeds, bad = load_seeds(SeedSource("leetcode", str(path), text="body.text", id="meta.slug"), "fewshot")
    assert [(s.id, s.text) for s in seeds] == [("two-sum", "Find two numbers that add up to a target."),
                                              ("three-sum", "Find all triples that sum to zero.")]
    assert bad == []


def test_a_json_object_holding_one_list_and_docs_packages(tmp_path: Path) -> None:
    path = tmp_path / "docs.json"
    path.write_text(json.dumps({"pages": [{"library": "heapq", "markdown": "heapq.heappush(heap, item) ..."}]}))
    seeds, _ = load_seeds(SeedSource("docs", str(path)), "docs")
    assert seeds[0].package == "heapq" and seeds[0].text.startswith("heapq.heappush")


def test_bad_rows_are_returned_with_their_reason_and_good_ones_kept(tmp_path: Path) -> None:
    path = tmp_path / "mixed.jsonl.gz"
    with gzip.open(path, "wt") as f:
        f.write('{"question": "Reverse the words of a sentence, keeping single spaces."}\n')
        f.write("{not json\n")
        f.write("[1, 2]\n")
        f.write('{"question": ""}\n')
        f.write('{"title": "no text field"}\n')
        f.write('{"id": 7, "question": "Count the vowels of a string, ignoring case."}\n')
    seeds, bad = load_seeds(SeedSource("evol", str(path)), "fewshot")
    assert [s.id for s in seeds] == ["0", "7"]
    assert [(b["where"], b["reason"].split(":")[0]) for b in bad] == [
        ("line 2", "invalid JSON"), ("line 3", "not a JSON object (list)"), ("line 4", "no text"),
        ("line 5", "no text")]
    assert all(b["file"] == str(path) and b["subset"] == "evol" for b in bad)


@pytest.mark.parametrize(("content", "message"), [
    (None, "seed file not found"), ("", "no usable seed"), ("hello\n", "neither JSON nor JSONL"),
    ('[{"question": 1}', "invalid JSON"), ('{"question": ""}\n{"x": 1}\n', "no usable seed"),
], ids=["missing", "empty", "text", "broken-json", "no-text"])
def test_unusable_seed_files_are_refused_with_the_reason(tmp_path: Path, content: str | None, message: str) -> None:
    path = tmp_path / "seeds.jsonl"
    if content is not None:
        path.write_text(content)
    with pytest.raises(SeedError, match=message):
        load_seeds(SeedSource("leetcode", str(path)), "fewshot")


def test_prompts_interleave_subsets_and_sample_the_same_seeds_in_every_rerun() -> None:
    seeds = {"leetcode": load_seeds(SeedSource("leetcode", "examples/synth/leetcode.jsonl"), "fewshot")[0],
             "algorithm": load_seeds(SeedSource("algorithm", str(DATA / "algorithm_seeds.json.gz")), "snippet")[0]}
    options = SynthOptions(("leetcode", "algorithm", "prefill"),
                           (SeedSource("leetcode", "x"), SeedSource("algorithm", "y")),
                           counts={"leetcode": 4, "algorithm": 3}, prefill_requests=2, seed=5)
    rows = list(prompt_rows(options, seeds))
    assert [r["prompt_id"] for r in rows] == [
        "leetcode/000000", "algorithm/000000", "prefill/000000", "leetcode/000001", "algorithm/000001",
        "prefill/000001", "leetcode/000002", "algorithm/000002", "leetcode/000003"]
    assert all(len(r["seeds"]) == 3 for r in rows if r["subset"] == "leetcode")  # LeetCode: 3 shots
    assert all(len({s["id"] for s in r["seeds"]}) == 3 for r in rows if r["subset"] == "leetcode")
    assert [r["seeds"][0]["id"] for r in rows if r["subset"] == "algorithm"] == ["0", "1", "2"]
    assert rows == list(prompt_rows(options, seeds))  # seeded: the same prompts in a rerun
    other = SynthOptions(options.subsets, options.seeds, counts=options.counts, prefill_requests=2, seed=6)
    assert [r["seeds"] for r in prompt_rows(other, seeds)] != [r["seeds"] for r in rows]


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"subsets": ("leetcod",)}, "unknown subset"),
    ({"subsets": ("leetcode",)}, "no seed file for leetcode"),
    ({"subsets": ("prefill",), "filter_keep": ("poetry",)}, "unknown categories"),
    ({"subsets": ("prefill",), "dedup_threshold": 1.5}, "--dedup-threshold: a cosine similarity in"),
    ({"subsets": ("prefill",), "prefill_prefixes": ()}, "--prefill-prefix: give at least one"),
    ({"subsets": ("prefill",), "seeds": (SeedSource("leetcode", "x"),)}, "not in --subsets"),
    ({"subsets": ()}, "at least one subset"),
], ids=["unknown", "no-seeds", "category", "threshold", "prefix", "stray-seeds", "none"])
def test_synthesis_options_are_checked(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SynthOptions(**kwargs)


def test_a_one_row_jsonl_file_whose_row_holds_a_list_is_a_row_not_a_container(tmp_path: Path) -> None:
    path = tmp_path / "one.jsonl"
    path.write_text(json.dumps({"id": "a", "question": "Sum a list of numbers, skipping None values.",
                                "examples": [{"in": [1, None], "out": 1}]}) + "\n")
    seeds, bad = load_seeds(SeedSource("evol", str(path)), "fewshot")
    assert [s.id for s in seeds] == ["a"] and bad == []
    container = tmp_path / "one-line-container.json"
    container.write_text(json.dumps({"rows": [{"question": "Reverse a string without slicing it."}]}))
    assert [s.text for s in load_seeds(SeedSource("evol", str(container)), "fewshot")[0]] == [
        "Reverse a string without slicing it."]


def test_html_question_text_becomes_plain_text_and_code_snippets_stay_as_written(tmp_path: Path) -> None:
    html_row = {"titleSlug": "two-sum", "content": "<p>Given an array <code>nums</code> and an integer "
                "<code>target</code>, return <em>indices</em>.</p>\n<ul><li><code>2 &lt;= nums.length &lt;= "
                "10<sup>4</sup></code></li></ul><pre>Input: nums = [2,7]\nOutput: [0,1]</pre>"}
    path = tmp_path / "lc.jsonl"
    path.write_text(json.dumps(html_row) + "\n")
    seed = load_seeds(SeedSource("leetcode", str(path), id="titleSlug"), "fewshot")[0][0]
    assert seed.id == "two-sum"
    assert seed.text == ("Given an array nums and an integer target, return indices.\n\n- 2 <= nums.length <= "
                         "10^4\n\nInput: nums = [2,7]\nOutput: [0,1]")
    code = tmp_path / "algo.json"
    code.write_text(json.dumps([{"id": 1, "codes": "def f(a):\n    return '<p>' + a + '</p>'\n"}]))
    assert "'<p>'" in load_seeds(SeedSource("algorithm", str(code)), "snippet")[0][0].text
    plain = tmp_path / "plain.jsonl"
    plain.write_text(json.dumps({"question": "Count pairs with a <b and b> c in a list of triples."}) + "\n")
    assert load_seeds(SeedSource("evol", str(plain)), "fewshot")[0][0].text == \
        "Count pairs with a <b and b> c in a list of triples."


def test_fields_ids_titles_and_packages_as_a_seed_file_gives_them(tmp_path: Path) -> None:
    from kodcode_async.seeds import Seed

    rows = [
        {"id": "", "question": "Sort a list of numbers in increasing order.", "title": "sorting",
         "package": "heapq"},  # an empty id: the row number
        {"id": "x", "question": "", "content": "Find the maximum depth of a binary tree, recursively."},
        {"id": "x", "question": "Merge two sorted lists into one.", "file_name": "merge.py", "title": "t"},
        {"question": "<p>Reverse a string&nbsp;without <em>slicing</em>.</p>", "library": "str", "package": ""},
        {"meta": {"note": 1}, "question": "Count words separated by whitespace in text."},
    ]
    path = tmp_path / "s.json"
    path.write_text(json.dumps(rows))
    seeds, bad = load_seeds(SeedSource("evol", str(path)), "fewshot")
    assert seeds == [Seed("0", "Sort a list of numbers in increasing order.", "heapq", "sorting"),
                     Seed("x", "Find the maximum depth of a binary tree, recursively."),
                     Seed("x#2", "Merge two sorted lists into one.", "", "merge.py"),
                     Seed("3", "Reverse a string without slicing.", "str"),
                     Seed("4", "Count words separated by whitespace in text.")]
    assert bad == []
    # A named field is the only one read (dotted into nested objects); a path through a non-object is no value.
    path2 = tmp_path / "n.jsonl"
    path2.write_text(json.dumps({"a": {"b": "Write a function that adds two numbers."}, "pkg": "math"}) + "\n"
                     + json.dumps({"a": "Write a function that adds two numbers."}) + "\n")
    seeds, bad = load_seeds(SeedSource("docs", str(path2), text="a.b", package="pkg"), "docs")
    assert [(s.id, s.package) for s in seeds] == [("0", "math")]
    assert [b["reason"] for b in bad] == ["no text: field a.b is missing or empty (name the field that holds it "
                                         "with --seed-fields docs.text=FIELD)"]


def test_snippet_lists_join_and_code_keeps_its_markup(tmp_path: Path) -> None:
    path = tmp_path / "snip.jsonl"
    path.write_text(json.dumps({"codes": ["def a():\n    return 1 < 2", "def b(): pass"]}) + "\n"
                    + json.dumps({"codes": ["x = 1", 2]}) + "\n")
    seeds, bad = load_seeds(SeedSource("algorithm", str(path)), "snippet")
    assert [s.text for s in seeds] == ["def a():\n    return 1 < 2\n\ndef b(): pass"]
    assert bad[0]["reason"] == ("no text: field codes / code / content / source / text is missing or empty (name "
                                "the field that holds it with --seed-fields algorithm.text=FIELD)")


def test_file_shapes_and_unreadable_files(tmp_path: Path) -> None:
    one = tmp_path / "one.jsonl"
    one.write_text('  \n{"question": "Write a function that returns the square of x.", "tags": ["a", "b"]}\n')
    seeds, _ = load_seeds(SeedSource("evol", str(one)), "fewshot")
    assert [s.id for s in seeds] == ["0"]
    lone = tmp_path / "lone.jsonl"
    lone.write_text('{"title": "a row without its text"}\n')
    with pytest.raises(SeedError, match=r"no usable seed for subset evol; first problem: line 1: no text"):
        load_seeds(SeedSource("evol", str(lone)), "fewshot")
    assert seeds[0].text == "Write a function that returns the square of x."
    junk = tmp_path / "junk.json"
    junk.write_text("\n\n  hello there, this is not json at all\n")
    with pytest.raises(SeedError, match=r"neither JSON nor JSONL \(it starts with b'hello there, this is'\)"):
        load_seeds(SeedSource("evol", str(junk)), "fewshot")
    with pytest.raises(SeedError, match=r"is a directory; give a JSON or JSONL file"):
        load_seeds(SeedSource("evol", str(tmp_path)), "fewshot")
    bad_gz = tmp_path / "bad.json.gz"
    bad_gz.write_bytes(b"not gzip at all")
    with pytest.raises(SeedError, match=r"cannot read seed file .*bad.json.gz: "):
        load_seeds(SeedSource("evol", str(bad_gz)), "fewshot")
    gz = tmp_path / "ok.json.gz"
    gz.write_bytes(gzip.compress(json.dumps([{"question": "Write a function that doubles a number."}]).encode()))
    assert load_seeds(SeedSource("evol", str(gz)), "fewshot")[0][0].text == "Write a function that doubles a number."


def test_named_fields_empty_files_and_indented_code(tmp_path: Path) -> None:
    one = tmp_path / "one.json"  # one object that is a row itself, by its named text field
    one.write_text(json.dumps({"body": "Write a function that merges two dicts.", "items": [{"x": 1}]}))
    seeds, _ = load_seeds(SeedSource("evol", str(one), text="body"), "fewshot")
    assert [s.text for s in seeds] == ["Write a function that merges two dicts."]
    ids = tmp_path / "ids.jsonl"
    ids.write_text(json.dumps({"slug": "", "question": "Write a function that merges two dicts."}) + "\n")
    assert load_seeds(SeedSource("evol", str(ids), id="slug"), "fewshot")[0][0].id == "0"
    code = tmp_path / "code.jsonl"
    code.write_text(json.dumps({"code": "\n    return x  # inside a block\n"}) + "\n")
    assert load_seeds(SeedSource("algorithm", str(code)), "snippet")[0][0].text == "    return x  # inside a block"
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n  \n")
    with pytest.raises(SeedError) as e:
        load_seeds(SeedSource("evol", str(empty)), "fewshot")
    assert str(e.value) == f"{empty}: no usable seed for subset evol"
    broken = tmp_path / "broken.json"
    broken.write_text('[{"question": "Write a function."}, ')
    with pytest.raises(SeedError, match=r"invalid JSON \(a file that starts with '\[' must be one JSON list\)"):
        load_seeds(SeedSource("evol", str(broken)), "fewshot")
