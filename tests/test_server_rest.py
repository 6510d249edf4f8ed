"""TF Serving's REST API of python -m tfner.serve: predict formats, errors, status, metrics, keep-alive."""

import http.client
import json
import os
import socket

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


def raw_exchange(server, data, half_close=False):
    """Sends raw bytes on one connection; returns [(status, headers, body)] of every reply, until the server closes."""
    with socket.create_connection(("127.0.0.1", server.rest_port), timeout=30) as sock:
        sock.sendall(data)
        if half_close:
            sock.shutdown(socket.SHUT_WR)  # the client sends nothing more
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    replies = []
    while received:
        head, _, rest = received.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = dict(line.split(": ", 1) for line in lines[1:])
        length = int(headers["Content-Length"])
        replies.append((int(lines[0].split()[1]), headers, json.loads(rest[:length])))
        received = rest[length:]
    return replies


BODY = b'{"instances": ["\xe5\x8c\x97\xe4\xba\xac"]}'
POST_HEAD = b"POST /v1/models/ner:predict HTTP/1.1\r\nHost: x\r\n"


@pytest.mark.parametrize(
    "headers, body, fragment",
    [
        (b"", BODY, "with a Content-Length header"),
        (b"Content-Length: \xb2\r\n", BODY, "with a Content-Length header"),  # "²" (latin-1): str.isdigit() takes it
        (b"Transfer-Encoding: chunked\r\n", b"%x\r\n%s\r\n0\r\n\r\n" % (len(BODY), BODY), "chunked"),
    ],
    ids=["no Content-Length", "superscript Content-Length", "chunked"],
)
def test_rest_body_without_a_usable_content_length_is_refused_and_the_connection_closed(servers, headers, body,
                                                                                        fragment):
    # The server must answer and close by itself: the connection is kept open from the client's side.
    (status, reply_headers, reply), = raw_exchange(servers[0], POST_HEAD + headers + b"\r\n" + body)
    assert status == 400 and fragment in reply["error"], reply
    assert reply_headers["Connection"] == "close"


def test_rest_body_shorter_than_its_content_length_is_refused(servers):
    request = POST_HEAD + b"Content-Length: %d\r\n\r\n" % (len(BODY) + 10) + BODY
    (status, headers, reply), = raw_exchange(servers[0], request, half_close=True)
    assert status == 400, reply
    assert f"shorter than its Content-Length of {len(BODY) + 10} bytes (got {len(BODY)} bytes" in reply["error"]
    assert headers["Connection"] == "close"


def test_rest_get_with_a_body_leaves_the_next_request_intact(servers):
    get = b"GET /v1/models/ner HTTP/1.1\r\nHost: x\r\n"
    replies = raw_exchange(servers[0], get + b"Content-Length: 2\r\n\r\n{}" + get + b"Connection: close\r\n\r\n")
    assert [status for status, _, _ in replies] == [200, 200], replies
    assert replies[1][2]["model_version_status"]


def test_rest_paths_are_percent_decoded_as_utf8(servers):
    server = servers[0]
    status, body = rest(server, "/v1/models/%6Eer/labels/%63anary")  # "ner", "canary"
    assert status == 200, body
    assert body["model_version_status"][0]["version"] == "2"
    # Names and labels with non-ASCII characters or spaces reach the model store decoded, percent-encoded or raw.
    status, body = rest(server, "/v1/models/%E5%8C%97%E4%BA%AC%20ner:predict", {"instances": ["a"]})
    assert status == 404 and "model '北京 ner' is not served here" in body["error"], body
    (status, _, body), = raw_exchange(server, "GET /v1/models/ner/labels/金丝雀 HTTP/1.1\r\nConnection: close\r\n\r\n"
                                      .encode("utf-8"))
    assert status == 404 and "no version label '金丝雀'" in body["error"], body
    status, body = rest(server, "/v1/models/n%zzr")
    assert status == 400 and "bad percent-escape '%zz'" in body["error"], body


def test_rest_refuses_duplicate_json_keys(servers):
    body = b'{"instances": ["\xe5\x8c\x97"], "instances": ["\xe4\xba\xac"]}'
    request = POST_HEAD + b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    (status, _, reply), = raw_exchange(servers[0], request)
    assert status == 400 and "the key 'instances' twice" in reply["error"], reply


def test_a_taken_rest_port_is_named_at_start(tmp_path, start_server):
    from conftest import free_port

    port = free_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        server = start_server("--model_base_path", tmp_path / "ner", "--rest_api_port", port)
        assert server.proc.wait(60) == 1
    assert f"cannot listen on 127.0.0.1:{port} for REST (--rest_api_port)" in server.log_text(), server.log_text()
