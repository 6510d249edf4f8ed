"""TF Serving's REST API of python -m tfner.serve: predict formats, errors, status, metrics, keep-alive."""

import http.client
import json
import os

import pytest

from server_requests import TEXTS, metric, rest

pytestmark = pytest.mark.slow


def test_rest_predict_row_and_columnar(servers, reference):
    server = servers[0]
    want = reference(os.path.join(server.base_path, "1"), TEXTS)

    status, body = rest(server, "/v1/models/ner/labels/stable:predict", {"instances": TEXTS})
    assert status == 200, body
    assert len(body["predictions"]) == len(TEXTS)
    for row, prediction in enumerate(body["predictions"]):
        assert prediction["num_entities"] == want["num_entities"][row]
        n = prediction["num_entities"]
        assert prediction["entity_texts"][:n] == [t.decode() for t in want["entity_texts"][row, :n]]
        assert prediction["entity_starts"][:n] == want["entity_starts"][row, :n].tolist()

    status, body = rest(server, "/v1/models/ner/versions/1:predict",
                        {"inputs": {"text": TEXTS}, "signature_name": "serving_default"})
    assert status == 200, body
    assert body["outputs"]["num_entities"] == want["num_entities"].tolist()
    assert body["outputs"]["tags"] == [[t.decode() for t in row] for row in want["tags"]]

    status, body = rest(server, "/v1/models/ner/versions/1:predict",
                        {"instances": [{"text": t} for t in TEXTS[:2]]})
    assert status == 200 and len(body["predictions"]) == 2


@pytest.mark.parametrize(
    "path, body, status, fragment",
    [
        ("/v1/models/nope:predict", {"instances": ["a"]}, 404, "not served"),
        ("/v1/models/ner/versions/9:predict", {"instances": ["a"]}, 404, "version 9"),
        ("/v1/models/ner:predict", {"rows": ["a"]}, 400, "instances"),
        ("/v1/models/ner:predict", {"instances": [1, 2]}, 400, "expects strings"),
        ("/v1/models/ner:predict", {"instances": ["a"] * 9}, 400, "limit is 8"),
        ("/v1/models/ner:predict", {"inputs": {"text": ["a"], "x": ["b"]}}, 400, "unexpected input"),
    ],
)
def test_rest_errors(servers, path, body, status, fragment):
    got_status, got = rest(servers[0], path, body)
    assert got_status == status
    assert fragment in got["error"]


def test_rest_status_metadata_and_metrics(servers):
    server = servers[0]
    status, body = rest(server, "/v1/models/ner")
    assert status == 200
    assert {s["version"] for s in body["model_version_status"]} == {"1", "2"}
    assert all(s["state"] == "AVAILABLE" for s in body["model_version_status"])
    status, body = rest(server, "/v1/models/ner/labels/canary/metadata")
    assert status == 200
    assert body["model_spec"]["version"] == "2"
    assert "serving_default" in body["metadata"]["signature_def"]["signature_def"]
    # Counted by the calls above (not by other tests, which may not have run).
    assert metric(server, "tfner_serving_requests_total", api="rest", method="GetModelStatus", code="OK") > 0


def test_rest_keeps_the_connection_alive_unless_a_body_was_left_unread(servers):
    connection = http.client.HTTPConnection("127.0.0.1", servers[0].rest_port, timeout=30)
    body = json.dumps({"instances": ["北京欢迎你"]})
    sockets = []
    for _ in range(2):
        connection.request("POST", "/v1/models/ner:predict", body, {"Content-Type": "application/json"})
        sockets.append(connection.sock)
        response = connection.getresponse()
        assert response.status == 200 and response.version == 11
        assert json.loads(response.read())["predictions"][0]["num_entities"] >= 0
    assert sockets[0] is sockets[1]  # One TCP connection for both requests.

    # A reply that leaves the body unread (unknown path) ends the connection;
    # the client reconnects for the next request, which must parse cleanly.
    connection.request("POST", "/v1/models/ner:nonsense", body)
    response = connection.getresponse()
    assert response.status == 404 and response.getheader("Connection") == "close"
    response.read()
    connection.request("POST", "/v1/models/ner:predict", body)
    response = connection.getresponse()
    assert response.status == 200, response.read()
    response.read()
    connection.request("POST", "/v1/models/ner:predict", body, {"Content-Length": "many"})
    response = connection.getresponse()
    assert response.status == 400 and "Content-Length" in json.loads(response.read())["error"]
    connection.close()


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH"])
def test_rest_refusals_of_http_server_itself_are_json(servers, method):
    """A method other than GET/POST is refused by http.server before tfner's handlers: as {"error": ...} too."""
    connection = http.client.HTTPConnection("127.0.0.1", servers[0].rest_port, timeout=30)
    connection.request(method, "/v1/models/ner:predict", json.dumps({"instances": ["北京"]}))
    response = connection.getresponse()
    assert response.status == 501 and response.getheader("Content-Type") == "application/json"
    assert method in json.loads(response.read())["error"]
    connection.close()
