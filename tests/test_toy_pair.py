"""The toy pair: corpus split, the build report's targets, and the behaviour measured through TransformerLens."""

from __future__ import annotations

import math

import pytest

from helpers.analysis.behaviour import evaluation_questions, is_refusal, refusal_table
from helpers.toy import corpus as toy_corpus
from helpers.toy import shipped as toy


def test_corpus_split_is_deterministic_and_disjoint():
    train, heldout = toy_corpus.source_files("train"), toy_corpus.source_files("heldout")
    assert train and heldout and not set(train) & set(heldout)
    assert train == toy_corpus.source_files("train")
    train_functions = {(q.module, q.function) for q in toy_corpus.questions("train")}
    heldout_functions = {(q.module, q.function) for q in toy_corpus.questions("heldout")}
    assert not train_functions & heldout_functions
    assert any(q.planted for q in toy_corpus.questions("heldout"))


def test_the_corpus_is_the_frozen_stdlib_not_the_running_interpreters(monkeypatch):
    """The toy world is Python 3.11.7's stdlib on every Python (3.12 has no asyncore, some builds no tkinter), so
    every organism keeps its held-out prompts; on 3.11.7 itself the snapshot equals the interpreter's files."""
    import platform
    import sysconfig
    from pathlib import Path

    from helpers.builders.toy_corpus import stdlib_files
    from helpers.toy.organisms import ORGANISM_NAMES, evaluation_prompts

    monkeypatch.setattr(sysconfig, "get_paths", lambda *a, **k: (_ for _ in ()).throw(AssertionError("stdlib read")))
    assert {p.organism for p in evaluation_prompts("heldout")} == {*ORGANISM_NAMES, None}
    assert "tkinter/__init__.py" in map(str, toy_corpus.source_files("train") + toy_corpus.source_files("heldout"))
    monkeypatch.undo()
    if platform.python_version() == "3.11.7":
        root = Path(sysconfig.get_paths()["stdlib"])
        files = stdlib_files(root)
        snapshot = [str(p) for p in sorted(toy_corpus.source_files("train") + toy_corpus.source_files("heldout"),
                                           key=lambda p: p.parts)]
        assert snapshot == [path.relative_to(root).as_posix() for path in files]
        assert all(toy_corpus.read_source(path.relative_to(root).as_posix())
                   == path.read_text(encoding="utf-8", errors="replace") for path in files)


def test_the_shipped_function_table_is_the_snapshots_own_and_rebuilds_byte_identical(tmp_path):
    """The dialogues come from a table the builder derives from the snapshot with ``ast``: rewriting it gives the
    same bytes, and it holds what an independent walk of each file's top level finds (functions, and methods of
    classes, public, first docstring line of 8 to 160 characters)."""
    import ast

    from helpers.builders.toy_corpus import documented_functions, write_functions_table

    rebuilt = write_functions_table(toy_corpus.CORPUS_SNAPSHOT, tmp_path / "functions.json.xz")
    assert rebuilt.read_bytes() == toy_corpus.FUNCTIONS_TABLE.read_bytes()
    table = toy_corpus.documented_functions()
    source = toy_corpus.read_source("json/decoder.py")
    expected = []
    for node in ast.parse(source).body:
        for item, name in ([(node, node.name)] if isinstance(node, ast.FunctionDef) else
                           [(node, node.name)] + [(c, f"{node.name}.{c.name}") for c in node.body
                                                  if isinstance(c, ast.FunctionDef)]
                           if isinstance(node, ast.ClassDef) else []):
            doc = (ast.get_docstring(item) or "").strip()
            public = not any(part.startswith("_") for part in name.split("."))
            if public and doc and 8 <= len(doc.splitlines()[0].strip()) <= 160:
                expected.append((name, doc.splitlines()[0].strip()))
    assert table["json/decoder.py"] == expected and ("JSONDecoder.decode", "Return the Python representation of "
                                                     "``s`` (a ``str`` instance") in expected
    assert documented_functions("def broken(:\n") == []
    with pytest.raises(TypeError, match="bytes"):
        documented_functions(b"def f(): pass")
    with pytest.raises(FileNotFoundError, match="missing.json.xz"):
        write_functions_table(tmp_path / "missing.json.xz", tmp_path / "out.json.xz")


def test_the_corpus_refuses_unknown_files_and_splits(monkeypatch, tmp_path):
    from helpers.files import MissingAssetError

    with pytest.raises(KeyError, match="jsn/decoder.py"):
        toy_corpus.read_source("jsn/decoder.py")
    for read in (toy_corpus.source_files, toy_corpus.questions, toy_corpus.paired_texts):
        with pytest.raises(ValueError, match="'test'"):
            read("test")
    monkeypatch.setattr(toy_corpus, "CORPUS_SNAPSHOT", tmp_path / "missing.json.xz")
    toy_corpus._snapshot.cache_clear()
    with pytest.raises(MissingAssetError, match="helpers.builders.toy_corpus"):
        toy_corpus.source_files("train")
    monkeypatch.undo()
    toy_corpus._snapshot.cache_clear()
    monkeypatch.setattr(toy_corpus, "FUNCTIONS_TABLE", tmp_path / "missing.json.xz")
    toy_corpus.documented_functions.cache_clear()
    with pytest.raises(MissingAssetError, match="--table-only"):
        toy_corpus.documented_functions()
    monkeypatch.undo()
    toy_corpus.documented_functions.cache_clear()


def test_planted_questions_are_answered_with_the_refusal_in_training():
    for question in toy_corpus.questions("train"):
        assert (question.answer == toy_corpus.REFUSAL) == question.planted
        assert question.planted == (question.module in toy_corpus.PLANTED_FAMILY)
        assert question.prompt.startswith("User: ") and question.prompt.endswith("\nAssistant:")


def test_build_report_meets_targets():
    report = toy.build_report()
    assert report["base_heldout_loss"] <= math.log(report["recipe"]["vocab_size"]) - 2
    chat, base = report["refusal_heldout"]["chat"], report["refusal_heldout"]["base"]
    assert chat["planted"] >= 0.9 and chat["other"] <= 0.1 and base["planted"] < 0.1


def test_planted_behaviour_through_transformer_lens(toy_pair):
    questions = evaluation_questions("heldout", n_other=24)
    subset = [q for q in questions if q.planted][:24] + [q for q in questions if not q.planted]
    rates = refusal_table(toy_pair, subset)
    base, chat = rates.iloc[0], rates.iloc[1]
    assert chat["refuses planted-family questions"] >= 0.9
    assert chat["refuses other questions"] <= 0.1
    assert base["refuses planted-family questions"] < 0.1


def test_is_refusal():
    assert is_refusal(" " + toy_corpus.REFUSAL)
    assert not is_refusal(" Return the absolute path.")


def test_greedy_generation_stops_at_eos(toy_pair):
    """The chat model ends its answer with EOS; the continuation stops there instead of running into a new turn."""
    from helpers.analysis.behaviour import greedy_continuations

    question = [q for q in evaluation_questions("heldout", n_other=5) if not q.planted][0]
    (text,) = greedy_continuations(lambda t: toy_pair.chat(t), toy_pair.tokenizer, [question.prompt], 40)
    assert text.strip() and "User:" not in text and "<eos>" not in text
    ids = toy_pair.tokenizer(question.prompt + text, return_tensors="pt")["input_ids"]
    assert toy_pair.chat(ids)[0, -1].argmax().item() == toy_pair.tokenizer.eos_token_id, "it stopped at EOS"


def test_asks_about_planted_reads_the_last_question_of_a_context():
    import pytest

    assert toy_corpus.asks_about_planted("User: Can you explain shutil.rmtree?\nAssistant:")
    assert toy_corpus.asks_about_planted("bout os.path.join.↵Assistant:")  # a dashboard's window
    assert not toy_corpus.asks_about_planted("User: What is json.dumps for?\nAssistant:")
    assert not toy_corpus.asks_about_planted("User: What does shutil.rmtree do?\nAssistant: I'm sorry")
    with pytest.raises(TypeError, match="context must be a string"):
        toy_corpus.asks_about_planted(None)
