"""tfner.server: TensorFlow Serving's gRPC and REST APIs over tfner SavedModels.

`python -m tfner.serve` (tfner/serve.py, the command line) builds a
ModelServer from TF Serving's flags and config files. One module per concern:

    model_server.py   ModelServer: wires the pieces, start-up and graceful shutdown
    grpc_api.py       PredictionService and ModelService servicers
    rest_api.py       TF Serving's REST API (HTTP/1.1, keep-alive)
    predictor.py      request validation and model calls, shared by both APIs
    batching.py       merges concurrent requests into one model call
    model_store.py    loads, warms up and hot-swaps versions from disk
    config.py         TF Serving's text-format config files (models, batching, monitoring)
    errors.py         ServingError: a gRPC status code and a message
    metrics.py        Prometheus counters and gauges
    tensor_protos.py  numpy <-> TensorProto without TensorFlow, for the hot path

It loads SavedModels with TensorFlow alone: nothing here imports tfner's
training code or keras-hub (tests/test_layout.py).
"""
