"""A training pipeline outside driftline: it waits for the next retrain request of a model,
exports the drifted window with `driftline pairs export`, fits least squares with numpy, and
registers the result with its reference (the rows it trained on) with `driftline models
register --reference --promote`.

    DRIFTLINE_KAFKA_URL=... DRIFTLINE_REDIS_URL=... python external_trainer.py houses

Any training code fits in the middle: scikit-learn, XGBoost or PyTorch, registered as a
model kind driftline stores (docs: Model kinds).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from aiokafka import AIOKafkaConsumer

from driftline import LinearModel, Settings
from driftline.kafka import client_options
from driftline.models.wire import RETRAIN_REQUEST
from driftline.models.wire.events import as_dict


async def next_request(settings: Settings, model: str) -> dict:
    """The next retrain request for ``model`` on the retrain topic (its own group)."""
    consumer = AIOKafkaConsumer(settings.topic("retrain"), **client_options(settings),
                                group_id="external-trainer", auto_offset_reset="earliest")
    await consumer.start()
    try:
        async for record in consumer:
            requests, _ = RETRAIN_REQUEST.decode(record.value)
            for request in map(as_dict, requests):
                if request["model"] == model:
                    await consumer.commit()
                    return request
    finally:
        await consumer.stop()
    raise RuntimeError("the consumer stopped")


def main(model: str) -> None:
    settings = Settings.from_env()
    request = asyncio.run(next_request(settings, model))
    with tempfile.TemporaryDirectory() as tmp:
        window = Path(tmp) / "pairs.jsonl"
        export = ["driftline", "pairs", "export", "--model", model, "--out", str(window)]
        if request.get("since") is not None:
            export += ["--since", str(request["since"])]
        subprocess.run(export, check=True)
        pairs = [json.loads(line) for line in window.read_text().splitlines()]
        names = sorted(pairs[0]["features"])
        X = np.array([[p["features"][n] for n in names] for p in pairs])
        y = np.array([p["label"] for p in pairs])
        solution, *_ = np.linalg.lstsq(np.c_[X, np.ones(len(X))], y, rcond=None)
        fitted = LinearModel(solution[:-1], solution[-1], names)
        mse = float(np.mean((fitted.predict(X) - y) ** 2))
        artifact = Path(tmp) / "model.npz"
        artifact.write_bytes(fitted.to_bytes())
        reference = Path(tmp) / "reference.jsonl"  # the training rows: drift is measured
        reference.write_text("".join(                # against them (predictions: the model's)
            json.dumps({"features": p["features"], "label": p["label"]}) + "\n"
            for p in pairs))
        subprocess.run(["driftline", "models", "register", model, str(artifact), "--promote",
                        "--metrics", json.dumps({"mse": mse}), "--reference", str(reference),
                        "--reason", f"external retrain for {request['request_id']}"],
                       check=True)


if __name__ == "__main__":
    main(sys.argv[1])
