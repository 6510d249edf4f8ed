"""A Python gRPC PredictionService that answers every Predict with one recorded response.

    python benchmarks/grpc_floor_server.py RESPONSE_FILE [--max_workers N]

No model, no validation, no batching: what is left is what any Python gRPC
server pays a request (gRPC's C core, its Python server loop, the thread pool
hand-off, parsing the request and writing the response). serve_load.py runs
it on the server's CPUs, beside tfner.serve, to measure that floor on the
machine at hand. The server is built as tfner.serve builds its own
(`grpc.server` over a ThreadPoolExecutor, the same message limits), so the
difference between the two is tfner's own work. It prints
`grpc_floor_server ready: grpc_port=N` and serves on 127.0.0.1 until killed.
"""

import argparse
from concurrent import futures

import grpc
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc

MAX_MESSAGE_BYTES = 64 * 1024 * 1024  # tfner.server.model_server's, without importing TensorFlow.


class RecordedPredictions(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, response):
        self.response = response

    def Predict(self, request, context):  # noqa: N802 (proto naming)
        return self.response


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("response_file", help="A serialized tensorflow.serving.PredictResponse.")
    p.add_argument("--max_workers", type=int, default=32, help="Thread pool size (tfner.serve's --grpc_max_workers).")
    args = p.parse_args(argv)
    with open(args.response_file, "rb") as f:
        response = predict_pb2.PredictResponse.FromString(f.read())
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=args.max_workers),
        options=[("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                 ("grpc.max_send_message_length", MAX_MESSAGE_BYTES)],
    )
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(RecordedPredictions(response), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(f"grpc_floor_server ready: grpc_port={port}", flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    main()
