"""The OpenAPI document says what the server does (review: msgpack bodies, 405/408/413/503
answers and ``wait=none`` were missing, so a client generated from it could not send the
fastest form or expect the answers it gets)."""

from __future__ import annotations

from node.openapi import OPENAPI


def operations() -> list[tuple[str, str, dict]]:
    return [(path, method, op) for path, item in OPENAPI["paths"].items()
            for method, op in item.items()]


def test_every_operation_declares_the_answers_any_route_can_give() -> None:
    for path, method, op in operations():
        for code in ("400", "405", "503"):
            assert code in op["responses"], (path, method, code)


def test_operations_with_a_body_declare_its_size_and_time_limits_and_msgpack() -> None:
    posts = [(path, op) for path, method, op in operations() if method == "post"]
    assert {path for path, _ in posts} == {"/v1/txs", "/v1/txs/batch"}
    for path, op in posts:
        assert {"408", "413"} <= set(op["responses"]), path
        assert set(op["requestBody"]["content"]) == {"application/json", "application/msgpack"}


def test_submit_declares_both_wait_values_it_accepts() -> None:
    params = {p["name"]: p for p in OPENAPI["paths"]["/v1/txs"]["post"]["parameters"]}
    assert params["wait"]["schema"]["enum"] == ["commit", "none"]
