"""The parts an RNP is built from: one class per variant of the papers.

Each part answers one question that every level of the tree asks, and the model
chooses its parts once, when it is built (:class:`rnp_pyro.model.RNP`), so that a
level's step is one straight path for the variant in use:

- how a program reads its next input (``program_input``, ``parent_input``):
  :class:`ReadsLatent` (PNAS Algorithm 1, the authors' code), :class:`ReadsOwnPatch`
  (PNAS Fig. 5), :class:`ReadsChildDrawing` (the workshop's Fig. 2b: each child is
  drawn whole as it is emitted, and its canvas is what the parent reads next);
- what a leaf patch is made of (``primitives``): :class:`FreePatches`,
  :class:`PrimitivePatches` (PNAS Fig. 4A);
- how a level's latents are drawn (``stochastic_levels``; guides bring their own):
  :class:`EmittedLatents`, :class:`PriorLatents`, and the ladder guide's posterior.

What each level decodes is one rule, the table :attr:`rnp_pyro.model.RNP.decodes`. A new
variant is a new class here (and its name in :data:`READERS` or the model's
settings), not a new branch in the model's step.
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Sequence

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from torch import nn

from .primitives import combine, primitive_images
from .program import Program
from .tree import Level


def site_name(level: int, step: int | None = None) -> str:
    """Name of the Pyro sample site of latent level ``level`` (K at the top, 0 at leaves);
    with ``step``, of that level's children emitted at step ``step`` (1 to tau) of their
    parents' programs."""
    return f"z{level}" if step is None else f"z{level}_{step}"


def emitted_site(program_levels: int, depth: int, t: int) -> str:
    """Name of the site of the children that the programs at tree depth ``depth`` (0: the
    root) emit at their step ``t`` (from 0), in a tree of ``program_levels`` program
    levels: ``site_name(program_levels - depth - 1, t + 1)``."""
    return site_name(program_levels - depth - 1, t + 1)


class ProgramLevel(NamedTuple):
    """One program level of a tree grown top-down (:meth:`rnp_pyro.model.RNP.grow`): the
    programs of its N nodes and the children they emitted; with
    :class:`ReadsChildDrawing`, the children drawn while the programs ran too."""

    depth: int
    programs: Program
    latents: torch.Tensor  # (N, tau, |z|)
    actions: torch.Tensor  # (N, tau, 6)
    drawn: torch.Tensor | None = None  # (N, tau, C, h, w) children drawn while running
    below: Sequence[Level] = ()  # the levels under those children, top first


# ---------------------------------------------------------------------------- reading
class Reading:
    """What one level's program steps read next (``to_input``, None: the child latent
    itself), and what they drew on the way (:meth:`drawn`)."""

    to_input: Callable[[torch.Tensor], torch.Tensor] | None = None

    def drawn(self) -> tuple[torch.Tensor | None, list[Level]]:
        """The children drawn while the programs ran, (N, tau, C, h, w), and the levels
        under them; (None, []) when they are drawn after the level's run."""
        return None, []


class ReadsLatent:
    """Each step reads the last child latent z_{t-1} (PNAS Algorithm 1, the authors' code)."""

    patches = False  # whether a program needs its patch decoder to read

    def __call__(self, model, programs: Program, depth: int) -> Reading:
        return Reading()


class ReadsOwnPatch:
    """Each step reads the last child's patch as this program decodes it, x̂_{t-1}
    (PNAS Fig. 5)."""

    patches = True

    def __call__(self, model, programs: Program, depth: int) -> Reading:
        reading = Reading()
        reading.to_input = lambda latent: model.patches(programs, latent).flatten(2)
        return reading


class ReadsChildDrawing:
    """Each step reads the canvas its last child's own program drew (the workshop's
    Fig. 2b), so child t's subtree is drawn before the parent's step t + 1: depth first,
    but with every node of a depth that waits on the same step, across images and
    parents, in one batch. A leaf child's drawing is its patch."""

    patches = True

    def __call__(self, model, programs: Program, depth: int) -> Reading:
        return _DrawsEachChild(model, programs, depth)


class _DrawsEachChild(Reading):
    def __init__(self, model, programs: Program, depth: int):
        self.model, self.programs, self.depth = model, programs, depth
        self.canvases, self.levels = [], []

    def to_input(self, latent: torch.Tensor) -> torch.Tensor:
        model = self.model
        if self.depth == len(model.config.taus) - 1:  # leaf children: their patches
            canvas, below = model.patches(self.programs, latent)[:, 0], []
        else:
            canvas, below = model.draw(model.grow(latent[:, 0], depth=self.depth + 1))
        self.canvases.append(canvas)
        self.levels.append(below)
        return image_input(canvas, model.config.patch_shape[-1])

    def drawn(self):
        # child t's subtree before child t + 1's: each level in depth-first order
        return (torch.stack(self.canvases, 1),
                [Level.concat(levels) for levels in zip(*self.levels)])


def image_input(canvases: torch.Tensor, side: int) -> torch.Tensor:
    """Canvases (M, C, H, W) as a step's image input (M, 1, C P P): at the patch side,
    averaged over the pixels each patch pixel covers."""
    if canvases.shape[-1] != side:
        canvases = F.interpolate(canvases, size=(side, side), mode="area")
    return canvases.flatten(1).unsqueeze(1)


READERS = {("latent", "own_output"): ReadsLatent, ("patch", "own_output"): ReadsOwnPatch,
           ("patch", "child_output"): ReadsChildDrawing}


# ---------------------------------------------------------------------------- patches
class FreePatches(nn.Module):
    """A decoder's outputs are the patch's pixels."""

    def __init__(self, patch_shape: tuple[int, int, int]):
        super().__init__()
        self.patch_shape = patch_shape

    def forward(self, outputs: torch.Tensor) -> torch.Tensor:
        """(N, T, C P P) -> (N, T, C, P, P)."""
        return outputs.reshape(*outputs.shape[:2], *self.patch_shape)


class PrimitivePatches(nn.Module):
    """A decoder's outputs are coefficients of fixed strokes, one per channel and
    primitive (PNAS Fig. 4A)."""

    def __init__(self, names: tuple[str, ...], channels: int, side: int):
        super().__init__()
        self.channels = channels
        self.register_buffer("images", primitive_images(names, side),
                             persistent=False)  # made from the settings, not learned

    def forward(self, outputs: torch.Tensor) -> torch.Tensor:
        """(N, T, C k) -> (N, T, C, P, P)."""
        return combine(outputs.unflatten(-1, (self.channels, -1)), self.images)


# ---------------------------------------------------------------------------- latents
class EmittedLatents:
    """Each child's latent is what its parent's program emitted (the papers)."""

    def feed(self, depth: int) -> None:
        return None


class PriorLatents:
    """Each child's latent is drawn from p(z | program) = Normal(emitted, scale), a site
    per level and step (``z{k}_{t}``, event (nodes, |z|)), before the program's next
    step reads it."""

    def __init__(self, lead: torch.Size, scale: float, program_levels: int):
        self.lead, self.scale, self.program_levels = lead, scale, program_levels

    def feed(self, depth: int) -> Callable:
        """The sampler of the children that program depth ``depth`` emits."""

        def sample(t: int, means: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
            return sample_children(emitted_site(self.program_levels, depth, t), self.lead,
                                   means, self.scale)

        return sample


class KeptGrowth:
    """A tree grown from z^K with some draws (a guide's posterior, or the prior), each
    step's emitted means and drawn children kept, for the model's replay of the same
    draws: the model then scores its own sites at the kept means and draws the kept
    programs, rather than running the programs a second time (:meth:`replayed`).

    ``KeptGrowth(draws, program_levels).feed`` is the draws' feed, recording.
    """

    def __init__(self, draws, program_levels: int):
        self.draws, self.program_levels = draws, program_levels
        self.steps: list[tuple[str, torch.Tensor, torch.Tensor]] = []  # site, means, drawn
        self.top: torch.Tensor | None = None  # the z^K grown from
        self.grown: list[ProgramLevel] = []

    def feed(self, depth: int) -> Callable:
        inner = self.draws.feed(depth)

        def sample(t: int, means: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
            drawn = inner(t, means, actions)
            self.steps.append((emitted_site(self.program_levels, depth, t), means, drawn))
            return drawn

        return sample

    def replayed(self, lead: torch.Size, scale: float) -> tuple[list[ProgramLevel], dict]:
        """Register the model's site of each kept step, Normal(kept means, ``scale``),
        in order. Where Pyro hands back the kept draw (a replay of the guide that grew
        this tree), the kept tree is the model's: returns (grown, {}). Where a site gets
        another value, returns ([], the values registered so far by site) for the
        model to grow its tree anew with (:class:`Registered`)."""
        registered = {}
        for site, means, kept in self.steps:
            value = sample_children(site, lead, means, scale)
            registered[site] = value
            if not _same_tensor(value, kept):
                return [], registered
        return self.grown, {}


class Registered:
    """Draws of a model whose sites up to some step are already registered, with these
    values (``registered``, by site): those are read back, the rest drawn as ``prior``
    draws them."""

    def __init__(self, registered: dict, prior: "PriorLatents"):
        self.registered, self.prior = registered, prior

    def feed(self, depth: int) -> Callable:
        inner = self.prior.feed(depth)

        def sample(t: int, means: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
            site = emitted_site(self.prior.program_levels, depth, t)
            return self.registered[site] if site in self.registered else inner(t, means, actions)

        return sample


def _same_tensor(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether a and b view the same memory alike: the one value, handed back. (Read
    from the tensors' metadata: no wait for the device.)"""
    return a.data_ptr() == b.data_ptr() and a.shape == b.shape and a.stride() == b.stride()


def sample_children(site: str, lead: torch.Size, loc: torch.Tensor, scale) -> torch.Tensor:
    """The children one program step emitted, loc (N, 1, |z|) for N = trees x nodes, drawn
    as the sample site ``site`` of Normal(loc, scale) with event (nodes, |z|) per tree of
    the batch ``lead``; returned in loc's shape. ``scale``: a number or one per child."""
    shaped = (*lead, -1, loc.shape[-1])
    if torch.is_tensor(scale):
        scale = scale.reshape(shaped)
    node = dist.Normal(loc.reshape(shaped), scale).to_event(2)
    return pyro.sample(site, node).reshape(loc.shape)
