"""energybench: train and evaluate classifiers that are also energy-based generative models.

Python API (imported on first use, so `import energybench` stays light):
    energybench.evaluate(model, data, metrics=[...])   run metrics on any model (energybench.api)
    energybench.open_model(spec_or_module)             the model handle every metric runs on
"""

from energybench.core.version import __version__

__all__ = ["evaluate", "open_model", "__version__"]


def __getattr__(name):
    if name == "evaluate":
        from energybench.api import evaluate

        return evaluate
    if name == "open_model":
        from energybench.handles.model_handle import open_model

        return open_model
    raise AttributeError(f"module 'energybench' has no attribute {name!r}")
