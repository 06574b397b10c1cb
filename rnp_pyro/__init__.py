"""Recursive Neural Programs as Pyro models.

    config = rnp_pyro.presets.get("fashion")
    model = rnp_pyro.RNP(config.model)         # model(x) is the Pyro model
    guide = rnp_pyro.guides.EncoderGuide(model)  # guide(x) samples q(z^K | x)
    tree = model.decode(guide.encode(x)[0])    # the parse tree
    run = rnp_pyro.fit(config, "runs/fashion") # or: rnp-pyro fit --dataset fashion
    run = rnp_pyro.pretrained("fashion")       # trained 30 epochs, shipped with the package
    rnp_pyro.evaluate(run.model, run.guide, x, iwae_samples=100)  # ELBO, log p(x) bound
    with rnp_pyro.frozen(run.model): ...        # fit a guide with Pyro's SVI, networks fixed

Importing the package defines names and does nothing else: it changes no Pyro
setting, and each submodule is imported when it is first used.
"""

import importlib

__version__ = "0.1.0"

# public name -> the submodule that defines it
_NAMES = {
    "RNP": "model", "ModelConfig": "model", "ConvVAE": "baselines", "RunConfig": "config",
    "GuideConfig": "config", "Run": "run", "Tree": "tree", "Level": "tree",
    "fit": "run", "evaluate": "metrics", "evaluate_run": "run", "guide_for": "run",
    "load_run": "run", "open_run": "run", "pretrained": "hub", "frozen": "modes",
    "log_likelihood_elpd": "metrics",
}
_SUBMODULES = ("baselines", "config", "data", "export", "folder", "guides", "hub", "infer", "model",
               "ppc", "presets", "run", "spatial", "variants", "viz")

__all__ = [*_NAMES, *_SUBMODULES]


def __getattr__(name: str):
    if name in _NAMES:
        value = getattr(importlib.import_module(f".{_NAMES[name]}", __name__), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f".{name}", __name__)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return sorted([*globals(), *__all__])
