"""livestock properties: random action sequences never reach an undefined state, and the
trace/recall walks over stored edges agree with a brute-force walk over every record."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_livestock import PASSED, setup_ledger

from consensus import canonical
from contracts.livestock.identifiers import compute_kst_day, format_day, format_yymmdd
from contracts.livestock.scenario import with_check_digit
from contracts.livestock.states import STATES

from contract_harness import DAY_MS, T0

ANIMALS = [with_check_digit(f"3000000{i}") for i in range(4)]
FARMS = ["farm-a", "farm-b"]
SHOPS = ["shop", "shop-2"]
LOTS = [f"L0{format_yymmdd(compute_kst_day(T0))}4521{i:03d}" for i in range(1, 31)]
FAILED = {"passed": False, "residue": "positive", "bse": "negative"}

animal = st.integers(0, len(ANIMALS) - 1)
farm = st.integers(0, 1)
lot = st.integers(0, len(LOTS) - 1)
weight = st.sampled_from([1, 40_000, 90_000, 150_000, 400_000])
OPS = st.one_of(
    st.tuples(st.just("birth"), animal, farm, st.integers(0, 8)),
    st.tuples(st.just("transfer_out"), animal, farm),
    st.tuples(st.just("transfer_in"), animal, farm, st.booleans()),
    st.tuples(st.just("treat"), animal, farm, st.integers(0, 3)),
    st.tuples(st.just("death"), animal, farm),
    st.tuples(st.just("arrival"), animal),
    st.tuples(st.just("slaughter"), animal, st.booleans(), st.sampled_from([200_000, 300_000])),
    st.tuples(st.just("cut"), animal, st.lists(lot, min_size=1, max_size=3, unique=True), weight),
    st.tuples(st.just("bundle"), st.lists(lot, min_size=2, max_size=3, unique=True), lot, weight),
    st.tuples(st.just("receive"), lot, st.integers(0, 1)),
    st.tuples(st.just("sell"), lot, st.integers(0, 1), weight),
    st.tuples(st.just("recall_animal"), animal),
    st.tuples(st.just("recall_lot"), lot),
    st.tuples(st.just("advance"), st.integers(1, 4)),
)


def run(ledger: Any, op: tuple[Any, ...]) -> Any:
    """Apply one random operation; returns its receipt (or None for a clock tick)."""
    name = op[0]
    today = format_day(compute_kst_day(ledger.time_ms + 1000))
    if name == "advance":
        ledger.time_ms += op[1] * DAY_MS
        return None
    if name == "birth":
        born = format_day(compute_kst_day(ledger.time_ms) - op[3])
        return ledger.apply(FARMS[op[2]], "livestock", "register_birth", {
            "id": ANIMALS[op[1]], "species": "cattle", "breed": "Holstein", "sex": "male",
            "birth_date": born})
    if name == "transfer_out":
        return ledger.apply(FARMS[op[2]], "livestock", "transfer_out",
                            {"animal": ANIMALS[op[1]], "to": FARMS[1 - op[2]]})
    if name == "transfer_in":
        return ledger.apply(FARMS[op[2]], "livestock", "transfer_in",
                            {"animal": ANIMALS[op[1]], "accept": op[3]})
    if name == "treat":
        return ledger.apply(FARMS[op[2]], "livestock", "treat",
                            {"animal": ANIMALS[op[1]], "drug": "d", "withdrawal_days": op[3]})
    if name == "death":
        return ledger.apply(FARMS[op[2]], "livestock", "death", {"animal": ANIMALS[op[1]]})
    if name == "arrival":
        return ledger.apply("plant", "livestock", "arrival", {"animal": ANIMALS[op[1]]})
    if name == "slaughter":
        return ledger.apply("plant", "livestock", "slaughter", {
            "species": "cattle", "animal": ANIMALS[op[1]], "carcass": f"C{op[1]}",
            "date": today, "weight_g": op[3], "grade": "2",
            "inspection": PASSED if op[2] else FAILED})
    if name == "cut":
        return ledger.apply("packer", "livestock", "cut", {
            "carcass": f"C{op[1]}", "lots": [{"lot": LOTS[i], "weight_g": op[3]} for i in op[2]]})
    if name == "bundle":
        return ledger.apply("packer", "livestock", "bundle", {
            "inputs": [LOTS[i] for i in op[1]], "lot": LOTS[op[2]], "weight_g": op[3]})
    if name == "receive":
        return ledger.apply(SHOPS[op[2]], "livestock", "receive", {"lot": LOTS[op[1]]})
    if name == "sell":
        return ledger.apply(SHOPS[op[2]], "livestock", "sell",
                            {"lot": LOTS[op[1]], "weight_g": op[3]})
    number = ANIMALS[op[1]] if name == "recall_animal" else LOTS[op[1]]
    return ledger.apply("mafra", "livestock", "recall", {"number": number, "reason": "test"})


def draw_guided(data: Any, ledger: Any) -> tuple[Any, ...]:
    """A plausible next operation, drawn from what exists now (so deep graphs get built)."""
    state = records(ledger)
    alive = [ANIMALS.index(v["id"]) for k, v in state.items()
             if k.startswith("animal/") and v["state"] in ("alive", "arrived")]
    unborn = [i for i, a in enumerate(ANIMALS) if f"animal/{a}" not in state]
    carcasses = [int(v["number"][1:]) for k, v in state.items() if k.startswith("carcass/")]
    packed = [LOTS.index(v["number"]) for k, v in state.items()
              if k.startswith("lot/") and v["state"] == "packed"]
    at_shop = [LOTS.index(v["number"]) for k, v in state.items()
               if k.startswith("lot/") and v["state"] == "at_shop"]
    free = [i for i, n in enumerate(LOTS) if f"lot/{n}" not in state]
    lots = [LOTS.index(k[4:]) for k in state if k.startswith("lot/")]
    choices: list[tuple[Any, ...]] = []
    if unborn:
        choices.append(("birth", data.draw(st.sampled_from(unborn)), 0, 0))
    if alive:
        pick = data.draw(st.sampled_from(alive))
        owner = FARMS.index(state[f"animal/{ANIMALS[pick]}"]["owner"])
        passed = data.draw(st.integers(0, 4)) > 0
        choices += [("slaughter", pick, passed, 300_000),
                    ("transfer_out", pick, owner), ("treat", pick, owner, 0)]
    if carcasses and free:
        chosen = data.draw(st.lists(st.sampled_from(free), min_size=1, max_size=2, unique=True))
        choices.append(("cut", data.draw(st.sampled_from(carcasses)), chosen, 40_000))
    if len(packed) >= 2 and free:
        inputs = data.draw(st.lists(st.sampled_from(packed), min_size=2, max_size=3, unique=True))
        choices.append(("bundle", inputs, data.draw(st.sampled_from(free)), 50_000))
    if packed:
        choices.append(("receive", data.draw(st.sampled_from(packed)), data.draw(farm)))
    if at_shop:
        choices.append(("sell", data.draw(st.sampled_from(at_shop)), data.draw(farm), 10_000))
    if lots:
        choices.append(("recall_lot", data.draw(st.sampled_from(lots))))
    in_transit = [ANIMALS.index(v["id"]) for k, v in state.items()
                  if k.startswith("animal/") and v["state"] == "in_transit"]
    if in_transit:
        pick = data.draw(st.sampled_from(in_transit))
        to = FARMS.index(state[f"animal/{ANIMALS[pick]}"]["pending_to"])
        choices.append(("transfer_in", pick, to, True))
    if not choices:
        return ("advance", 1)
    return data.draw(st.sampled_from(choices))


def records(ledger: Any) -> dict[str, Any]:
    """Every livestock record in committed state, decoded (the brute-force view)."""
    prefix = b"livestock/"
    return {key[len(prefix):].decode(): canonical.decode(value)
            for key, value in ledger.base.data.items() if key.startswith(prefix)}


def check_invariants(ledger: Any) -> None:
    data = records(ledger)
    for key, value in data.items():
        kind = key.split("/", 1)[0]
        if kind in STATES:
            assert value["state"] in STATES[kind], (key, value)
        if kind == "carcass":
            assert 0 <= value["cut_g"] <= value["weight_g"]
            if value["inspection"]["ok"] is False:
                assert not any(k.startswith(f"down/carcass:{value['number']}/") for k in data)
        if kind == "lot":
            assert 0 <= value["sold_g"] <= value["weight_g"]
            assert (value["shop"] is not None) == (value["state"] in ("at_shop", "sold_out")) or (
                value["state"] == "recalled")
            inputs = [data[f"{i.replace(':', '/', 1)}"] for i in value["inputs"]]
            if value["kind"] == "bundle":
                assert value["weight_g"] <= sum(i["weight_g"] for i in inputs)
                assert all(i["state"] in ("bundled", "recalled") for i in inputs)
            if any(i["state"] == "recalled" and i.get("recalled_reason") for i in inputs):
                # Whatever was made from a recalled input was recalled with it.
                assert value["state"] == "recalled"
        if kind == "animal":
            assert (value["state"] == "slaughtered") == (value["carcass"] is not None)
            assert (value["state"] == "in_transit") == (value["pending_to"] is not None)
        if kind == "down":
            _, source, target = key.split("/")
            assert f"up/{target}/{source}" in data
        if kind == "up":
            _, target, source = key.split("/")
            assert f"down/{source}/{target}" in data


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data(), st.integers(0, 40))
def test_random_sequences_never_reach_an_undefined_state(data, steps):
    ledger = setup_ledger()
    for _ in range(steps):
        guided = data.draw(st.integers(0, 9)) < 7
        op = draw_guided(data, ledger) if guided else data.draw(OPS)
        receipt = run(ledger, op)
        if receipt is not None:
            assert receipt.code == "OK" or receipt.code.startswith("E_"), receipt
            assert receipt.code != "E_CONTRACT_FAILURE"
        check_invariants(ledger)


def brute_force_graph(data: dict[str, Any]) -> dict[str, set[str]]:
    """Derived-from edges rebuilt from the records themselves (not from up/down keys)."""
    down: dict[str, set[str]] = {}
    for key, value in data.items():
        kind, _, ident = key.partition("/")
        if kind == "carcass":
            for number in value["animals"]:
                down.setdefault(f"animal:{number}", set()).add(f"carcass:{ident}")
        elif kind == "lot":
            for source in value["inputs"]:
                down.setdefault(source, set()).add(f"lot:{ident}")
            if value["shop"] is not None:
                down.setdefault(f"lot:{ident}", set()).add(f"shop:{value['shop']}")
    return down


def closure(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for nxt in graph.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def as_nodes(grouped: dict[str, list[str]]) -> set[str]:
    kinds = {"animals": "animal", "carcasses": "carcass", "lots": "lot", "shops": "shop"}
    return {f"{kinds[k]}:{i}" for k, ids in grouped.items() if k in kinds for i in ids}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data(), st.integers(0, 40))
def test_trace_and_recall_scope_agree_with_brute_force_walk(data, steps):
    ledger = setup_ledger()
    for _ in range(steps):
        run(ledger, draw_guided(data, ledger))
    data = records(ledger)
    down = brute_force_graph(data)
    up: dict[str, set[str]] = {}
    for source, targets in down.items():
        for target in targets:
            up.setdefault(target, set()).add(source)
    numbers = [(k.partition("/")[0], k.partition("/")[2]) for k in data
               if k.startswith(("animal/", "carcass/", "lot/"))]
    for kind, number in numbers:
        root = f"{kind}:{number}"
        scope = ledger.query("livestock", "recall_scope", {"number": number})
        assert as_nodes(scope) == closure(down, root) | {root}
        traced = ledger.query("livestock", "trace", {"number": number})
        assert as_nodes(traced["downstream"]) == closure(down, root)
        upstream = as_nodes({k: [r.get("number") or r.get("id") for r in v]
                             for k, v in traced["upstream"].items()})
        assert upstream == (closure(up, root) | {root}) - {n for n in upstream
                                                           if n.startswith("shop:")}
