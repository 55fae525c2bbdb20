"""The rubric verifier: rule criteria, per-item rubrics, a real tiny local judge checked against a plain forward pass,
an HTTP judge served by a local http.server (retries, timeout), judge identities and the monitor's checks."""

import json
import math
import pickle
import re
import shutil
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import torch

from monitor_streams import observe, open_step
from rlvr.monitor import Monitor, signals_from_verifiers
from verifiers import SignalSpec, get_verifier, list_verifiers
from rlvr.monitor.monitor import same_model
from verifiers.rubric import DEFAULT_NUMBER_TEMPLATE, DEFAULT_TEMPLATE, EndpointJudge, LocalJudge


def _word_fraction(completion, prompt, reference):
    """A graded predicate for the import-path test: the fraction of the reference's words found in the completion."""
    words = reference.split()
    return sum(w in completion for w in words) / len(words)


# ------------------------------------------------------------------------------------------- rules


def test_registered_and_declared_signal():
    assert "rubric" in list_verifiers()
    rules = get_verifier("rubric", criteria=[{"regex": "x"}])
    assert rules.signal == SignalSpec("graded", True, "external", "cheap")
    endpoint = get_verifier("rubric", criteria=[{"judge": "ok?"}], judge={"base_url": "http://127.0.0.1:9/v1"})
    assert endpoint.signal == SignalSpec("graded", False, "judge", "expensive")
    assert type(get_verifier("rubric")).signal == SignalSpec("graded", True, "external", "cheap")  # class default


def test_rule_criteria_weighted_mean():
    crit = [
        {"name": "cites", "weight": 3, "regex": r"\[\d+\]"},
        {"name": "polite", "weight": 1, "contains": "please", "ignore_case": True},
        {"name": "no_sorry", "weight": 2, "contains": "sorry", "negate": True},
        {"name": "short", "weight": 0.5, "predicate": lambda c, p, r: len(c) <= 20},
        {"name": "ignored", "weight": 0, "regex": "."},
    ]
    v = get_verifier("rubric", criteria=crit)
    cases = {
        # cites, polite, no_sorry, short -> hand-computed weighted mean over weights 3, 1, 2, 0.5 (+0)
        "See [1]. Please.": (3 + 1 + 2 + 0.5) / 6.5,
        "sorry, see [12] PLEASE read it all": (3 + 1 + 0 + 0) / 6.5,
        "sorry": (0 + 0 + 0 + 0.5) / 6.5,
        "nothing here to cite at all": (0 + 0 + 2 + 0) / 6.5,
    }
    for completion, expected in cases.items():
        out = v.verify(completion, None)
        assert out.error is None and out.passed is None
        assert out.score == pytest.approx(expected, abs=1e-12)
    detail = v.verify("See [1]. Please.", None).detail
    assert detail["rubric"] == "constructor"
    assert [(c["name"], c["kind"], c["weight"], c["score"]) for c in detail["criteria"]] == [
        ("cites", "regex", 3.0, 1.0), ("polite", "contains", 1.0, 1.0), ("no_sorry", "contains", 2.0, 1.0),
        ("short", "predicate", 0.5, 1.0), ("ignored", "regex", 0.0, 1.0)]
    # case matters without ignore_case; the batch path (quick, in-thread) agrees with verify
    assert v.verify("PLEASE [1]", None).detail["criteria"][1]["score"] == 1.0
    assert get_verifier("rubric", criteria=[{"contains": "please"}]).verify("PLEASE", None).score == 0.0
    batch = get_verifier("rubric", criteria=crit, max_workers=2).verify_batch([(c, None) for c in cases])
    assert [b.score for b in batch] == [v.verify(c, None).score for c in cases]
    # rules-only rubrics pickle (the verifier is shipped to worker processes)
    assert pickle.loads(pickle.dumps(get_verifier("rubric", criteria=crit[:3]))).verify("[2]", None).score == 5 / 6


def test_predicate_by_import_path_and_its_return_values():
    v = get_verifier("rubric", criteria=[
        {"name": "words", "weight": 2, "predicate": "tests.test_verifiers_rubric:_word_fraction"},
        {"name": "dot", "weight": 1, "contains": "."}])
    out = v.verify("alpha gamma.", "alpha beta gamma delta")
    assert out.score == pytest.approx((2 * 2 / 4 + 1) / 3) and out.detail["criteria"][0]["score"] == 0.5
    bad = get_verifier("rubric", criteria=[{"name": "loud", "predicate": lambda c, p, r: 1.5}]).verify("x", None)
    assert bad.score == 0.0 and "'loud'" in bad.error and "predicate returned 1.5" in bad.error
    assert get_verifier("rubric", criteria=[{"regex": "x"}]).verify(None, None).error.startswith("TypeError")


def test_per_item_rubric_and_precedence():
    v = get_verifier("rubric", criteria=[{"name": "A", "contains": "alpha", "weight": 1},
                                         {"name": "B", "contains": "beta", "weight": 2}])
    text = "alpha beta"
    assert v.verify(text, "some gold answer").score == 1.0  # plain text: the constructor's rubric only
    item = {"criteria": [{"name": "B", "contains": "zzz", "weight": 2}, {"name": "C", "regex": "^alpha", "weight": 1}]}
    for ref in (item, json.dumps(item), item["criteria"], json.dumps(item["criteria"])):
        out = v.verify(text, ref)
        # A (1, hit) + B replaced by the reference's (2, miss) + C appended (1, hit)
        assert out.score == pytest.approx((1 + 0 + 1) / 4) and out.detail["rubric"] == "merged"
        assert [c["name"] for c in out.detail["criteria"]] == ["A", "B", "C"]
    alone = get_verifier("rubric").verify(text, item)
    assert alone.score == pytest.approx((0 + 1) / 3) and alone.detail["rubric"] == "reference"
    # a JSON-looking answer that is not a rubric stays a plain reference
    assert v.verify(text, "[1, 2]").detail["rubric"] == "constructor"
    # what a reference may not do becomes an error verdict naming the criterion and field
    pred = get_verifier("rubric").verify(text, [{"name": "p", "predicate": "os:getcwd"}])
    assert pred.score == 0.0 and "reference[0] 'p'" in pred.error and "'predicate'" in pred.error
    neg = v.verify(text, [{"name": "bad", "contains": "x", "weight": -1}])
    assert "reference[0] 'bad'" in neg.error and "'weight'" in neg.error
    assert "needs a judge" in get_verifier("rubric").verify(text, [{"judge": "ok?"}]).error
    assert "no criteria" in get_verifier("rubric").verify(text, "gold").error
    assert "does not parse" in v.verify(text, '{"criteria": [').error


@pytest.mark.parametrize("criteria, judge, match", [
    ("regex", None, r"criteria must be a list"),
    ([{"name": "a", "regex": "x"}, {"name": "tone", "contains": "y", "weight": -1}], None,
     r"criteria\[1\] 'tone': field 'weight' must be a finite number >= 0, got -1"),
    ([{"name": "tone", "contains": "y", "weight": "heavy"}], None, r"'tone': field 'weight'"),
    ([{"name": "tone", "contains": "y", "weight": float("nan")}], None, r"'tone': field 'weight'"),
    ([{"name": "a", "regex": "x", "weight": 0}, {"contains": "y", "weight": 0}], None, r"weight > 0"),
    ([{"name": "two", "regex": "x", "contains": "y"}], None, r"'two': needs exactly one of"),
    ([{"name": "none", "weight": 1}], None, r"'none': needs exactly one of"),
    ([{"name": "typo", "regex": "x", "wieght": 2}], None, r"'typo': unknown field\(s\) \['wieght'\]"),
    ([{"name": "re", "regex": "(unclosed"}], None, r"'re': field 'regex' does not compile"),
    ([{"name": "pr", "predicate": "no_such_module_xyz:f"}], None, r"'pr': field 'predicate'"),
    ([{"name": "pr", "predicate": "os.path"}], None, r"'pr': field 'predicate'.*package.module:function"),
    ([{"name": "d", "regex": "x"}, {"name": "d", "regex": "y"}], None, r"duplicate criterion name 'd'"),
    ([{"name": "j", "judge": "ok?"}], None, r"'j': field 'judge' needs a judge"),
    ([{"name": "j", "judge": "ok?", "scale": [5, 1]}], {"base_url": "http://127.0.0.1:9/v1"}, r"'j': field 'scale'"),
    ([{"name": "s", "regex": "x", "scale": [1, 5]}], None, r"'s': field 'scale' only applies to judge"),
    ([{"name": "j", "judge": "ok?"}], {"base_url": "http://127.0.0.1:9/v1", "tmeout_s": 3}, r"unknown field.*tmeout_s"),
    ([{"name": "j", "judge": "ok?"}], {"url": "http://x"}, r"needs 'base_url'.*or 'model'"),
    ([{"name": "j", "judge": "ok?"}], {"base_url": "http://x/v1", "template": "{nope}"}, r"field 'template'"),
    ([{"name": "j", "judge": "ok?"}], {"base_url": "ftp://x"}, r"field 'base_url'"),
])
def test_bad_config_names_the_field(criteria, judge, match):
    with pytest.raises(ValueError, match=match):
        get_verifier("rubric", criteria=criteria, judge=judge)


# ------------------------------------------------------------------------------------------- local judge


@pytest.fixture(scope="module")
def plain(tiny_model_dir):
    """The judge's model and tokenizer loaded independently, for expected values."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    return model, tok


def _ids(tok, text):
    chat = tok.apply_chat_template([{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True)
    return tok(chat, add_special_tokens=False)["input_ids"]


def _expected_yes_no(model, tok, text):
    with torch.no_grad():
        probs = torch.softmax(model(torch.tensor([_ids(tok, text)])).logits[0, -1].double(), -1)
    single = lambda words: {e[0] for w in words if len(e := tok.encode(w, add_special_tokens=False)) == 1}
    yes, no = single(["Yes", " Yes", "yes", " yes"]), single(["No", " No", "no", " no"])
    assert yes and no
    p_yes, p_no = float(sum(probs[i] for i in yes)), float(sum(probs[i] for i in no))
    return p_yes / (p_yes + p_no), p_yes, p_no


def test_local_judge_yes_no_is_the_next_token_probability_ratio(tiny_model_dir, plain):
    model, tok = plain
    v = get_verifier("rubric", judge={"model": tiny_model_dir, "device": "cpu"},
                     criteria=[{"name": "polite", "weight": 2, "judge": "Is the response polite?"},
                               {"name": "thanks", "weight": 1, "contains": "thanks"}])
    assert v.signal == SignalSpec("graded", True, "judge", "expensive")
    jm = v.judge._model
    assert not jm.training and not any(p.requires_grad for p in jm.parameters())
    scores = []
    for completion, thanks in (("Sure, thanks for asking!", 1.0), ("No.", 0.0)):
        out = v.verify(completion, None, prompt="Can you help me?")
        assert out.error is None
        text = DEFAULT_TEMPLATE.format(prompt="Can you help me?", completion=completion,
                                       criterion="Is the response polite?", reference="")
        s, p_yes, p_no = _expected_yes_no(model, tok, text)
        judged = out.detail["criteria"][0]
        assert judged["kind"] == "judge" and judged["score"] == pytest.approx(s, abs=1e-5)
        assert judged["p_yes"] == pytest.approx(p_yes, rel=1e-4) and judged["p_no"] == pytest.approx(p_no, rel=1e-4)
        assert out.score == pytest.approx((2 * s + thanks) / 3, abs=1e-5)
        scores.append(s)
    assert scores[0] != scores[1]  # the judge reads the completion
    # a number on a scale: greedy decoding, first number mapped from [1, 10] to [0, 1] (or an error without one)
    num = get_verifier("rubric", judge=v.judge, criteria=[{"name": "clear", "judge": "Clear?", "scale": [1, 10]}])
    out = num.verify("It is 4.", None, prompt="What is 2+2?")
    ids = _ids(tok, DEFAULT_NUMBER_TEMPLATE.format(prompt="What is 2+2?", completion="It is 4.", criterion="Clear?",
                                                   reference="", low=1, high=10))
    with torch.no_grad():
        gen = model.generate(torch.tensor([ids]), do_sample=False, max_new_tokens=8, pad_token_id=tok.pad_token_id,
                             attention_mask=torch.ones(1, len(ids), dtype=torch.long))
    reply = tok.decode(gen[0, len(ids):], skip_special_tokens=True)
    m = re.search(r"[-+]?\d+(?:\.\d+)?", reply)
    if m is None:
        assert out.score == 0.0 and "no number" in out.error
    else:
        assert out.detail["criteria"][0]["reply"] == reply
        assert out.score == pytest.approx(min(1.0, max(0.0, (float(m.group()) - 1) / 9)))


def test_local_judge_identity_follows_the_weights(tiny_model_dir, tmp_path):
    a = LocalJudge(tiny_model_dir, device="cpu")
    again = LocalJudge(tiny_model_dir, device="cpu")
    same = tmp_path / "same"
    shutil.copytree(tiny_model_dir, same)
    from transformers import AutoModelForCausalLM

    m = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    with torch.no_grad():
        m.model.norm.weight[0] += 1e-3
    changed = tmp_path / "changed"
    shutil.copytree(tiny_model_dir, changed)
    m.save_pretrained(changed)
    copy, other = LocalJudge(str(same), device="cpu"), LocalJudge(str(changed), device="cpu")
    assert a.identity() == again.identity() == f"hf:{tiny_model_dir}@sha256:{a.weights_sha256}"
    assert len(a.weights_sha256) == 64
    assert copy.weights_sha256 == a.weights_sha256 and copy.identity() != a.identity()  # same weights, other path
    assert other.weights_sha256 != a.weights_sha256

    # the monitor: a judge loaded from the policy's path is the policy (also spelled with a trailing slash)
    def preflight(judge, policy):
        v = get_verifier("rubric", criteria=[{"name": "ok", "judge": "Is it correct?"}], judge=judge)
        mon = Monitor(None, signals_from_verifiers([("rubric", v, 1.0)]), policy_identity=policy)
        return mon, v, [(x.name, x.rule, x.severity) for x in mon.start()]

    closed = [("CLOSED_LOOP", "judge_is_policy:rubric", "critical")]
    assert preflight(a, tiny_model_dir)[2] == closed
    assert preflight(a, tiny_model_dir + "/")[2] == closed
    assert preflight(other, tiny_model_dir)[2] == []
    rv = get_verifier("rubric", criteria=[{"judge": "ok?"}], judge=a)
    ident = rv.identity()
    assert type(ident) is str and "@sha256:" in ident and str(changed) not in ident
    assert [same_model(m, tiny_model_dir) for m in rv.judge_models()] == [True]

    # swapping the judge's weights during the run is SIGNAL_DRIFT
    mon, v, _ = preflight(a, str(tmp_path / "policy"))
    assert [e.name for e in observe(mon, 1, open_step(1))[1] if e.name == "SIGNAL_DRIFT"] == []
    v.judge = LocalJudge(str(changed), device="cpu")
    drift = [e for e in observe(mon, 2, open_step(2))[1] if e.name == "SIGNAL_DRIFT"]
    assert [(e.rule, e.event) for e in drift] == [("identity:rubric", "fired")]


# ------------------------------------------------------------------------------------------- endpoint judge


class _FakeServer:
    """A local OpenAI-compatible server: fails the first ``fail_first`` chat requests with ``fail_status``,
    answers ``reply`` (content, top logprobs) afterwards, or never answers when ``hang``."""

    def __init__(self, *, model="judge-7b", fail_first=0, fail_status=503, hang=False,
                 content="Yes", top=(("Yes", 0.6), (" No", 0.3), ("Maybe", 0.1))):
        self.model, self.fail_first, self.fail_status, self.hang = model, fail_first, fail_status, hang
        self.content, self.top = content, top
        self.chat_requests, self.times, self.release = [], [], threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _send(self, status, obj):
                body = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                self._send(200, {"object": "list", "data": [{"id": outer.model, "object": "model"}]})

            def do_POST(self):
                payload = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.chat_requests.append(payload)
                outer.times.append(time.monotonic())
                if outer.hang:
                    outer.release.wait(10)
                    return
                if len(outer.chat_requests) <= outer.fail_first:
                    return self._send(outer.fail_status, {"error": {"message": "busy"}})
                choice = {"index": 0, "message": {"role": "assistant", "content": outer.content}}
                if payload.get("logprobs") and outer.top:
                    choice["logprobs"] = {"content": [{"token": outer.top[0][0], "logprob": math.log(outer.top[0][1]),
                                                       "top_logprobs": [{"token": t, "logprob": math.log(p)}
                                                                        for t, p in outer.top]}]}
                self._send(200, {"id": "x", "object": "chat.completion", "model": outer.model, "choices": [choice]})

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self):
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture()
def server_factory():
    made = []

    def make(**kw):
        made.append(_FakeServer(**kw))
        return made[-1]

    yield make
    for s in made:
        s.close()


def _endpoint_rubric(url, **judge):
    return get_verifier("rubric", judge={"base_url": url, "model": "judge-7b", "backoff_s": 0.05, **judge},
                        criteria=[{"name": "correct", "weight": 3, "judge": "Is the final answer 42?"},
                                  {"name": "boxed", "weight": 1, "regex": r"\\boxed"}])


def test_endpoint_judge_retries_then_scores_from_logprobs(server_factory):
    srv = server_factory(fail_first=2)
    v = _endpoint_rubric(srv.url, retries=2)
    out = v.verify("so \\boxed{42}", None, prompt="What is 6*7?")
    assert out.error is None
    assert out.score == pytest.approx((3 * 0.6 / (0.6 + 0.3) + 1) / 4)
    assert out.detail["criteria"][0]["method"] == "logprobs"
    assert len(srv.chat_requests) == 3
    gaps = [b - a for a, b in zip(srv.times, srv.times[1:])]
    assert gaps[0] >= 0.05 and gaps[1] >= 0.1  # exponential back-off
    sent = srv.chat_requests[-1]
    assert sent["model"] == "judge-7b" and sent["max_tokens"] == 1 and sent["logprobs"] is True
    assert "Is the final answer 42?" in sent["messages"][0]["content"]
    assert "so \\boxed{42}" in sent["messages"][0]["content"] and "What is 6*7?" in sent["messages"][0]["content"]
    assert v.identity() == f"rubric:config={v._config_digest};judge=openai:{srv.url}#model=judge-7b"


def test_endpoint_judge_gives_up_with_a_clear_error(server_factory):
    srv = server_factory(fail_first=10)
    v = _endpoint_rubric(srv.url, retries=1)
    out = v.verify("\\boxed{42}", None)
    assert out.score == 0.0 and out.passed is False and v.stats["errors"] == 1
    assert out.error.startswith("JudgeError") and "failed after 2 attempt(s)" in out.error and "HTTP 503" in out.error
    assert srv.url in out.error and len(srv.chat_requests) == 2
    # a client error is not retried
    bad = server_factory(fail_first=10, fail_status=400)
    out = _endpoint_rubric(bad.url, retries=3).verify("x", None)
    assert "HTTP 400" in out.error and len(bad.chat_requests) == 1


def test_endpoint_judge_timeout(server_factory):
    srv = server_factory(hang=True)
    v = _endpoint_rubric(srv.url, retries=1, timeout_s=0.3)
    start = time.monotonic()
    out = v.verify("\\boxed{42}", None)
    took = time.monotonic() - start
    assert out.score == 0.0 and "timed out" in out.error and "failed after 2 attempt(s)" in out.error
    assert len(srv.chat_requests) == 2 and 0.6 <= took < 5


def test_endpoint_judge_number_and_text_replies(server_factory):
    srv = server_factory(content="7", top=())
    v = get_verifier("rubric", judge={"base_url": srv.url},
                     criteria=[{"name": "clear", "judge": "How clear?", "scale": [1, 10]}])
    out = v.verify("text", None)
    assert out.score == pytest.approx((7 - 1) / 9) and out.detail["criteria"][0]["value"] == 7.0
    assert srv.chat_requests[-1]["model"] == "judge-7b"  # no model configured: the server's first listed model
    no = server_factory(content="No, it is not.", top=())
    out = get_verifier("rubric", judge={"base_url": no.url}, criteria=[{"judge": "ok?"}]).verify("text", None)
    assert out.score == 0.0 and out.error is None and out.detail["criteria"][0]["method"] == "text"
    odd = server_factory(content="Perhaps", top=())
    assert "neither yes nor no" in get_verifier("rubric", judge={"base_url": odd.url},
                                                criteria=[{"judge": "ok?"}]).verify("t", None).error


def test_endpoint_judge_serving_the_policy_is_a_closed_loop(server_factory, tmp_path):
    policy = str(tmp_path / "policy")
    srv = server_factory(model=policy)
    v = get_verifier("rubric", judge={"base_url": srv.url}, criteria=[{"judge": "ok?"}])
    mon = Monitor(None, signals_from_verifiers([("rubric", v, 1.0)]), policy_identity=policy)
    assert [(a.name, a.rule) for a in mon.start()] == [("CLOSED_LOOP", "judge_is_policy:rubric")]
    other = server_factory(model="another-model")
    v2 = get_verifier("rubric", judge={"base_url": other.url}, criteria=[{"judge": "ok?"}])
    assert Monitor(None, signals_from_verifiers([("rubric", v2, 1.0)]), policy_identity=policy).start() == []


def test_injected_transport():
    calls = []

    def transport(method, url, body, headers, timeout_s):
        calls.append((method, url))
        if len(calls) == 1:
            raise ConnectionRefusedError("refused")
        return 200, json.dumps({"model": "m", "choices": [{"message": {"content": "yes"}}]}).encode()

    judge = EndpointJudge("http://judge.invalid/v1", model="m", retries=1, backoff_s=0, transport=transport)
    out = get_verifier("rubric", judge=judge, criteria=[{"judge": "ok?"}]).verify("t", None)
    assert out.score == 1.0 and calls == [("POST", "http://judge.invalid/v1/chat/completions")] * 2
