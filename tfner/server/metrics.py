"""Counters and gauges of tfner.serve, rendered in Prometheus text format.

Served on the REST port at the path a `--monitoring_config_file` names
(TF Serving's default: /monitoring/prometheus/metrics). Whether requests are
being merged shows as

    tfner_serving_model_call_requests_total / tfner_serving_model_calls_total

(requests answered per model call; 1.0 without batching), and as the gauge
`tfner_serving_max_requests_per_call`.
"""

import threading

# name -> (type, help)
METRICS = {
    "tfner_serving_requests_total": (
        "counter", "Requests handled, by API, method, model and gRPC status code."),
    "tfner_serving_in_flight_requests": (
        "gauge", "Predict requests being handled now."),
    "tfner_serving_model_calls_total": (
        "counter", "Signature calls run (one per batch when batching)."),
    "tfner_serving_model_call_requests_total": (
        "counter", "Requests answered by those calls."),
    "tfner_serving_model_call_texts_total": (
        "counter", "Rows (texts) sent to the model, padding excluded."),
    "tfner_serving_model_call_padded_texts_total": (
        "counter", "Rows sent to the model, padding to allowed_batch_sizes included."),
    "tfner_serving_model_call_seconds_total": (
        "counter", "Time spent in signature calls."),
    "tfner_serving_max_requests_per_call": (
        "gauge", "Most requests merged into one model call so far."),
    "tfner_serving_deadline_exceeded_total": (
        "counter", "Requests answered DEADLINE_EXCEEDED without running the model."),
    "tfner_serving_loaded_versions": (
        "gauge", "Versions loaded, by model."),
}


def _escape(value):
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class Metrics:
    """A thread-safe table of (metric name, labels) -> value."""

    def __init__(self):
        self._lock = threading.Lock()
        self._values = {}

    @staticmethod
    def _key(name, labels):
        if name not in METRICS:
            raise KeyError(f"unknown metric {name!r}; declare it in METRICS")
        return name, tuple(sorted(labels.items()))

    def inc(self, name, value=1.0, **labels):
        key = self._key(name, labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + value

    def set(self, name, value, **labels):
        key = self._key(name, labels)
        with self._lock:
            self._values[key] = float(value)

    def set_max(self, name, value, **labels):
        key = self._key(name, labels)
        with self._lock:
            self._values[key] = max(self._values.get(key, 0.0), float(value))

    def get(self, name, **labels):
        with self._lock:
            return self._values.get(self._key(name, labels), 0.0)

    def render(self):
        """The Prometheus text exposition of every metric with a value."""
        with self._lock:
            items = sorted(self._values.items())
        lines, declared = [], set()
        for (name, labels), value in items:
            if name not in declared:
                kind, text = METRICS[name]
                lines += [f"# HELP {name} {text}", f"# TYPE {name} {kind}"]
                declared.add(name)
            label_text = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
            lines.append(f"{name}{{{label_text}}} {value!r}" if label_text else f"{name} {value!r}")
        return "\n".join(lines) + "\n"
