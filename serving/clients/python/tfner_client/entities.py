"""Entity spans, and how a PredictResponse turns into them.

The signature's entity outputs are batch-major and padded to the widest row
(export/README.md): row i holds `num_entities[i]` real entities, then padding.
"""

import dataclasses

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
        ValueError: the response is not a tfner model's answer for `num_texts` texts.
    """
    missing = [key for key in ENTITY_OUTPUTS if key not in response.outputs]
    if missing:
        raise ValueError(f"the response lacks outputs {missing}; is this a tfner model?")
    out = {key: tensor_to_list(response.outputs[key]) for key in ENTITY_OUTPUTS}
    if len(out["num_entities"]) != num_texts:
        raise ValueError(f"the response has {len(out['num_entities'])} rows for {num_texts} texts")
    results = []
    for row, count in enumerate(out["num_entities"]):
        results.append([
            Entity(
                label=out["entity_labels"][row][i].decode("utf-8"),
                start=out["entity_starts"][row][i],
                end=out["entity_ends"][row][i],
                text=out["entity_texts"][row][i].decode("utf-8"),
                score=out["entity_scores"][row][i],
            )
            for i in range(count)
        ])
    return results
