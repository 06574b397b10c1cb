"""Posterior predictive checks: replicated images from any guide, test statistics,
posterior predictive p-values, and the same as ArviZ data and plots.

    check = rnp_pyro.ppc.posterior_predictive(model, guide, x, num_samples=100)
    check.p_values()        # {statistic: (B,) or (B, parts)}: P(T(x_rep) >= T(x) | x)
    idata = check.to_arviz()  # InferenceData on ArviZ 0.x, DataTree on ArviZ 1.x

Replicated images are drawn by ``pyro.infer.Predictive``: latents from the guide (or
given posterior samples, such as NUTS draws), then x from the model's likelihood.
A p-value near 0 or 1 flags a property of the data that the model does not
reproduce.

Replicas carry the likelihood's pixel noise. Where the data are smoother than that
noise (Fashion-MNIST under the presets' Normal likelihood), ``edge_energy`` calls
every replica rougher than every image, for a trained and an untrained model alike:
it checks the noise model, which both share, not the networks. ``deviance``
(-log p(x | z) against -log p(x_rep | z) under the same draw, the likelihood's own
discrepancy, Gelman, Meng & Stern 1996) judges how well each draw's canvas explains
the image.

Log-likelihoods over draws of per-image latents are not given to ArviZ for LOO:
leaving an image out removes everything its own latents know, so the Pareto
diagnostics fail for every image. A test image's log p(x) is estimated directly by
the importance-weighted bound (:func:`rnp_pyro.metrics.log_likelihood_elpd`).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import torch
from pyro import poutine
from pyro.infer import Predictive

from .data import unit_images
from .errors import check_count
from .guides import decode_latents
from .modes import evaluating, own_random_stream
from .tree import Tree

INK = 0.5  # a pixel is ink above this intensity
EXTREME = 0.05  # p-values below this or above 1 - this count as extreme


def mean_intensity(images: torch.Tensor) -> torch.Tensor:
    """(*B, C, H, W) -> (*B,): the mean pixel."""
    return images.mean((-1, -2, -3))


def ink_fraction(images: torch.Tensor) -> torch.Tensor:
    """(*B, C, H, W) -> (*B,): the fraction of pixels above ``INK``."""
    return (images > INK).float().mean((-1, -2, -3))


def edge_energy(images: torch.Tensor) -> torch.Tensor:
    """(*B, C, H, W) -> (*B,): mean squared difference of neighbouring pixels, across and
    down; high for sharp edges and for noise alike."""
    across = (images[..., :, 1:] - images[..., :, :-1]).pow(2).mean((-1, -2, -3))
    down = (images[..., 1:, :] - images[..., :-1, :]).pow(2).mean((-1, -2, -3))
    return across + down


# statistics of an image alone: the observed value is one per image
IMAGE_STATISTICS = {"mean_intensity": mean_intensity, "ink_fraction": ink_fraction,
                    "edge_energy": edge_energy}
# statistics of an image and a draw, observed and replicated under the same draw
PAIRED_STATISTICS = ("deviance",)


def part_mass(tree: Tree, images: torch.Tensor) -> torch.Tensor:
    """The mass each top-level part carries in ``images``, (*B, parts).

    Each pixel's intensity is shared among the parts in proportion to what each part
    draws there (its responsibility under the tree), then averaged over pixels: a
    discrepancy T(x, z) that depends on the parse as well as on the image.
    """
    placed = tree.levels[1].placed.clamp(min=0)  # (*B, parts, C, H, W)
    total = placed.sum(-4, keepdim=True)
    share = placed / total.where(total > 0, 1.0)  # no part draws there: no share
    return (share * images.unsqueeze(-4)).mean((-1, -2, -3))


@dataclass
class PosteriorPredictive:
    """Observed images, replicated images and latents, with test statistics of both.

    ``statistics[name]`` is ``(observed, replicated)``, each (S, B) or (S, B, parts):
    statistics of the image alone repeat the observed value over the S draws;
    ``deviance`` and ``part_mass`` pair the observed and the replicated image under
    the same draw.
    """

    observed: torch.Tensor  # (B, C, H, W)
    replicated: torch.Tensor  # (S, B, C, H, W)
    means: torch.Tensor  # (S, B, C, H, W): the decoded canvas of each draw
    latents: dict[str, torch.Tensor]  # {site: (S, B, ...)}
    statistics: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    log_likelihood: torch.Tensor | None = None  # (S, B): log p(x_i | draw s)

    @property
    def num_samples(self) -> int:
        return self.replicated.shape[0]

    def p_values(self) -> dict[str, torch.Tensor]:
        """Posterior predictive p-values per image (and part): the share of draws whose
        replicated statistic exceeds the observed one, ties counting half."""
        return {name: ((rep > obs).double() + 0.5 * (rep == obs).double()).mean(0)
                for name, (obs, rep) in self.statistics.items()}

    def to_arviz(self):
        """ArviZ data with groups posterior (the latents), posterior_predictive (x and
        every statistic) and observed_data (x and every statistic), one chain.

        No log_likelihood group: LOO over draws of per-image latents does not apply
        (see the module's notes). A paired statistic's observed value depends on the
        draw; ArviZ's observed group holds one value per image, so it is the mean over
        draws there (the p-values use the pairs draw by draw).
        """
        import arviz

        def draws(tensor):
            return tensor.detach().cpu().numpy()[None]  # (chain=1, draw, ...)

        groups = {
            "posterior": {site: draws(value) for site, value in self.latents.items()},
            "posterior_predictive": {"x": draws(self.replicated),
                                     **{name: draws(rep)
                                        for name, (_, rep) in self.statistics.items()}},
            "observed_data": {"x": self.observed.detach().cpu().numpy(),
                              **{name: obs.mean(0).detach().cpu().numpy()
                                 for name, (obs, _) in self.statistics.items()}},
        }
        dims = {"x": ["image", "channel", "row", "column"], "part_mass": ["image", "part"],
                **{name: ["image"] for name in (*IMAGE_STATISTICS, *PAIRED_STATISTICS)}}
        for site, value in self.latents.items():  # (S, B, [nodes,] |z|)
            dims[site] = ["image", *([f"{site}_node"] if value.dim() == 4 else []), "latent"]
        if _arviz_1():
            return arviz.from_dict(groups, dims=dims)
        return arviz.from_dict(**groups, dims=dims)

    def plot_statistics(self, path: str | Path) -> Path:
        """ArviZ's posterior predictive plot of every statistic, saved as a PNG: the
        distribution over images of the observed statistic against that of each
        replicated draw. The figure is closed afterwards; other figures are left alone."""
        import arviz
        import matplotlib.pyplot as plt

        names, shown = list(self.statistics), min(self.num_samples, 50)
        idata = self.to_arviz()
        if _arviz_1():
            plot = arviz.plot_ppc_dist(idata, var_names=names, num_samples=shown)
            plot.savefig(path)
            figure = plot.get_viz("figure")
        else:
            axes = arviz.plot_ppc(idata, var_names=names, num_pp_samples=shown, random_seed=0)
            figure = axes.ravel()[0].figure
            figure.savefig(path, dpi=100, bbox_inches="tight")
        plt.close(figure)
        return Path(path)

    def plot_images(self, path: str | Path, images: int = 8, replicas: int = 4) -> Path:
        """A PNG grid, one column per image: the observed image, the first draw's mean
        canvas, then ``replicas`` replicated images."""
        from torchvision.utils import make_grid, save_image

        images, replicas = min(images, len(self.observed)), min(replicas, self.num_samples)
        rows = [self.observed[:images], self.means[0, :images].clamp(0, 1),
                *self.replicated[:replicas, :images].clamp(0, 1)]
        grid = make_grid(torch.cat(rows).cpu(), nrow=images, padding=2, pad_value=1.0)
        save_image(grid, path)
        return Path(path)


    def write_p_values(self, path: str | Path) -> Path:
        """The p-values as a CSV, one row per image, one column per statistic (and part)."""
        columns = {}
        for stat, values in self.p_values().items():
            values = values.cpu().reshape(len(self.observed), -1)
            names = ([stat] if values.shape[1] == 1 else
                     [f"{stat}_{i}" for i in range(values.shape[1])])
            columns.update(zip(names, values.T.tolist()))
        with open(path, "w", newline="") as file:
            writer = csv.writer(file)
            writer.writerow(["image", *columns])
            writer.writerows(zip(range(len(self.observed)), *columns.values()))
        return Path(path)

    def summary(self) -> dict:
        """Per statistic: the mean p-value and the shares of images (and parts) below
        ``EXTREME`` and above 1 - ``EXTREME``."""
        return {stat: {"mean_p_value": values.mean().item(),
                       f"share_below_{EXTREME}": (values < EXTREME).double().mean().item(),
                       f"share_above_{1 - EXTREME:g}":
                           (values > 1 - EXTREME).double().mean().item()}
                for stat, values in self.p_values().items()}


def _arviz_1() -> bool:
    import arviz

    return int(arviz.__version__.split(".")[0]) >= 1


@torch.no_grad()
def posterior_predictive(model, guide, x: torch.Tensor, *guide_args,
                         num_samples: int = 100, posterior_samples: dict | None = None,
                         seed: int = 0) -> PosteriorPredictive:
    """Draw ``num_samples`` replicated images per image of x (B, C, H, W).

    Latents come from ``guide`` (called with ``x`` and ``guide_args``, e.g. the
    indices and dataset size for per-image guides), or, when ``posterior_samples``
    ({site: (S, B, ...)}, e.g. ``MCMCPosterior.samples``) is given, from those draws,
    and ``guide`` may be None. Networks run in eval mode; the caller's random stream
    is left as it was. uint8 images are read as pixels / 255.
    """
    tree = model.config
    x = unit_images(x, channels=tree.channels, image_size=tree.image_size)
    check_count("num_samples", num_samples)
    if posterior_samples is not None:
        num_samples = len(next(iter(posterior_samples.values())))
    elif guide is None:
        raise ValueError("posterior_predictive needs a guide or posterior_samples")
    modules = [m for m in (model, guide) if isinstance(m, torch.nn.Module)]
    with evaluating(*modules), own_random_stream(seed, x.device):
        # uncondition: Predictive alone would hand back the observed x at the x site
        predict = Predictive(poutine.uncondition(model),
                             guide=None if posterior_samples else guide,
                             posterior_samples=posterior_samples, num_samples=num_samples,
                             return_sites=(*model.config.latent_sites, "x"), parallel=True)
        drawn = predict(x, *guide_args)
        replicated = drawn.pop("x")
        tree = decode_latents(model, drawn)
        likelihood = model.likelihood(tree.canvas)
        log_likelihood = likelihood.log_prob(x)
        replicated_log_likelihood = likelihood.log_prob(replicated)
    check = PosteriorPredictive(observed=x, replicated=replicated, means=tree.canvas,
                                latents=drawn, log_likelihood=log_likelihood)
    for name, statistic in IMAGE_STATISTICS.items():
        check.statistics[name] = (statistic(x).expand(num_samples, -1), statistic(replicated))
    check.statistics["deviance"] = (-log_likelihood, -replicated_log_likelihood)
    if len(tree.levels) > 1:
        check.statistics["part_mass"] = (part_mass(tree, x), part_mass(tree, replicated))
    return check
