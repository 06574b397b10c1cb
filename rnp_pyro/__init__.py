"""Recursive Neural Programs as Pyro models.

    cfg = rnp_pyro.presets.get("fashion")
    model = rnp_pyro.RNP(cfg)                  # model(x) is the Pyro model
    guide = rnp_pyro.guides.EncoderGuide(cfg)  # guide(x) samples q(z^K | x)
    tree = model.decode(guide.encode(x)[0])    # the parse tree
    run = rnp_pyro.fit(cfg, "runs/fashion")    # or: rnp-pyro fit --dataset fashion
    run = rnp_pyro.pretrained("fashion")       # trained 30 epochs, shipped with the package
    rnp_pyro.evaluate(run.model, run.guide, x, iwae_samples=100)  # ELBO, log p(x) bound
"""

import pyro

# Parameters live in their modules (PyroModule), not in Pyro's global store: a model
# is then an ordinary torch module, checkpoints are state_dicts, and two models in
# one process never share a learned parameter by name.
pyro.settings.set(module_local_params=True)

from . import baselines, data, guides, hub, infer, ppc, presets, spatial, viz  # noqa: E402
from .baselines import ConvVAE  # noqa: E402
from .config import RNPConfig  # noqa: E402
from .evaluate import evaluate, evaluate_run, guide_for  # noqa: E402
from .hub import pretrained  # noqa: E402
from .model import RNP  # noqa: E402
from .run import Run, load_run  # noqa: E402
from .train import fit  # noqa: E402
from .tree import Level, Tree  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "RNP", "ConvVAE", "RNPConfig", "Run", "Tree", "Level",
    "fit", "evaluate", "evaluate_run", "guide_for", "load_run", "pretrained",
    "baselines", "data", "guides", "hub", "infer", "ppc", "presets", "spatial", "viz",
]
