"""Entity spans, and how a PredictResponse turns into them.

The signature's entity outputs are batch-major and padded to the widest row
(export/README.md): row i holds `num_entities[i]` real entities, then padding.
"""

import dataclasses

from tfner_client.errors import MalformedResponseError
from tfner_client.tensors import tensor_to_list

# The outputs the client reads; `tags` stays on the server (output_filter).
ENTITY_OUTPUTS = (
    "num_entities",
    "entity_labels",
    "entity_starts",
    "entity_ends",
    "entity_texts",
    "entity_scores",
)


@dataclasses.dataclass(frozen=True)
class Entity:
    """One entity span of one text.

    Offsets count Unicode code points, which is what Python string indices
    count too: `text[entity.start:entity.end] == entity.text`, emoji and
    combining marks included. (Clients in other languages add offsets in their
    own string units; in Python they would be the same numbers.)

    Args:
        label: str. Entity type, e.g. "LOC".
        start: int. First character (code point) of the span.
        end: int. One past its last character: `text[start:end]`.
        text: str. The span's characters.
        score: float. The model's confidence, in [0, 1].
    """

    label: str
    start: int
    end: int
    text: str
    score: float


def entities_from_response(response, num_texts):
    """PredictResponse -> one list of Entity per text, in order, padding dropped.

    Raises:
        MalformedResponseError: (a ValueError) the response is not a tfner model's answer for `num_texts` texts.
    """
    missing = [key for key in ENTITY_OUTPUTS if key not in response.outputs]
    if missing:
        raise MalformedResponseError(f"the response lacks outputs {missing}; is this a tfner model?")
    try:
        out = {key: tensor_to_list(response.outputs[key]) for key in ENTITY_OUTPUTS}
        rows = len(out["num_entities"])
        if rows == num_texts:
            return [
                [
                    Entity(
                        label=out["entity_labels"][row][i].decode("utf-8"),
                        start=out["entity_starts"][row][i],
                        end=out["entity_ends"][row][i],
                        text=out["entity_texts"][row][i].decode("utf-8"),
                        score=out["entity_scores"][row][i],
                    )
                    for i in range(count)
                ]
                for row, count in enumerate(out["num_entities"])
            ]
    # An output of another dtype or value count (ValueError), of rank 0 (TypeError: a scalar has no len), of
    # numbers where strings belong (AttributeError: no .decode), or narrower than num_entities says (IndexError).
    except (AttributeError, IndexError, TypeError, ValueError) as e:
        raise MalformedResponseError(f"the response's entity outputs do not fit together ({e}); "
                                     "is this a tfner model?") from e
    raise MalformedResponseError(f"the response has {rows} rows for {num_texts} texts")
