"""`iris`: a scikit-learn classifier for iris flowers, trained from the data set sklearn ships."""

from __future__ import annotations

import math

from deployments.sdk import InvalidInput, model, serve_app
from protos.iris_pb2 import IrisRequest, IrisResponse


@model(name="iris", request=IrisRequest, response=IrisResponse, max_replicas=2)
class Iris:
    """Classifies an iris flower (setosa, versicolor, virginica) from four measurements in cm."""

    def __init__(self) -> None:
        from sklearn.datasets import load_iris
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        data = load_iris()
        self._species = [str(name) for name in data.target_names]
        self._classifier = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
        self._classifier.fit(data.data, data.target)

    async def process_request(self, request: IrisRequest) -> IrisResponse:
        features = [
            request.sepal_length,
            request.sepal_width,
            request.petal_length,
            request.petal_width,
        ]
        if any(not math.isfinite(value) or value <= 0 or value > 100 for value in features):
            raise InvalidInput("every measurement must be a positive number of centimetres")
        probabilities = self._classifier.predict_proba([features])[0]
        best = int(probabilities.argmax())
        return IrisResponse(
            species=self._species[best],
            probabilities={
                name: float(p) for name, p in zip(self._species, probabilities, strict=True)
            },
        )


app = serve_app(Iris)
