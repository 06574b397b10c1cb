"""One training step: the loss, its gradient, a guard against non-finite values, and
Adam. The training loop and the throughput benchmark take the same step.

Nothing in a step reads a value back to the host once its first step has passed
(that one runs with Pyro's argument validation as the user set it; later ones run
with it off, and non-finite values are caught on the device instead). So on CUDA
the whole step can be captured once as a CUDA graph and replayed: one launch per
step instead of one per operator.
"""

from __future__ import annotations

import contextlib
import math

import pyro
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.nn.utils import clip_grad_norm_

from . import distributed
from .encoder import ResNetEncoder
from .infer.fitting import guide_args, loss_divisor
from .infer.objectives import make_objective

__all__ = ["TrainStep"]

EAGER_STEPS = 3  # steps before a capture: the first validated, then the caches warm


class TrainStep:
    """``step(x, indices)`` trains ``parameters`` of ``model`` and ``guide`` on one batch,
    with the objective and optimiser settings of ``train`` (a TrainConfig).

    Returns the batch's loss in nats per image and whether the step was taken (both
    0-d tensors on the device). A step whose loss or gradient is not finite is
    skipped whole: fused Adam leaves weights and moments alone when ``found_inf``
    is 1 (the protocol of torch.amp.GradScaler), and every rank skips when one does.

    ``bf16_autocast`` runs the loss and its gradient under bfloat16 autocast.
    ``cuda_graphs``: capture the step as a CUDA graph after EAGER_STEPS eager ones
    and replay it for every batch of the same size (on a single CUDA device with the
    ``elbo`` objective and a guide that declares itself ``graph_capturable``; elsewhere
    the step stays eager).
    """

    def __init__(self, model, guide, parameters: list[torch.Tensor], dataset_size: int, train, *,
                 place: distributed.Place = distributed.Place(), bf16_autocast: bool = False,
                 cuda_graphs: bool = False):
        self.model, self.guide, self.train = model, guide, train
        self.parameters, self.dataset_size, self.place = parameters, dataset_size, place
        # This step trains module-local parameters with a torch optimizer, so the ResNet
        # encoder's convolution weights may take oneDNN's native layout, channels-last,
        # while it trains (close() lays them back as Pyro's param store keeps them)
        self._layout(torch.channels_last)
        self.bf16_autocast = bf16_autocast
        self.objective = make_objective(train.objective, train.num_particles)
        # the loss as a module (Pyro's ELBOModule): DDP averages its gradients over ranks
        self.loss = None
        if hasattr(self.objective, "differentiable_loss"):
            self.loss = self.objective(model, guide)
            if place.parallel:
                self.loss = DistributedDataParallel(self.loss)
        self.optimizer = torch.optim.Adam(parameters, lr=train.lr, weight_decay=train.weight_decay,
                                          fused=True)
        self.cuda_graphs = (cuda_graphs and not place.parallel and train.objective == "elbo"
                            and getattr(guide, "graph_capturable", False))
        self.taken = 0  # steps this object has taken
        self.graph = None  # (graph, static x, static outputs) once captured

    def _layout(self, memory_format: torch.memory_format) -> None:
        for module in self.guide.modules():
            if isinstance(module, ResNetEncoder):
                module.to(memory_format=memory_format)

    def close(self) -> None:
        """The guide's weights back in the contiguous layout of Pyro's param store, so that
        the classic ``SVI`` loop trains them after this step has (it would train
        contiguous copies of channels-last weights)."""
        self._layout(torch.contiguous_format)

    def __call__(self, x: torch.Tensor, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        capturing = self.cuda_graphs and x.is_cuda and self.graph is None
        if self.graph is not None and x.shape == self.graph[1].shape:
            graph, static_x, outputs = self.graph
            static_x.copy_(x)
            graph.replay()
            result = tuple(out.clone() for out in outputs)
        elif capturing and self.taken >= EAGER_STEPS:
            result = self._capture(x, indices)
        elif capturing:  # warm up off the stream a capture records
            with self._validation(), _side_stream():
                result = self._eager(x, indices)
        else:  # no capture here, or a batch of another size than the captured one
            with self._validation():
                result = self._eager(x, indices)
        self.taken += 1
        return result

    def optimizer_state(self) -> dict:
        """Adam's state dict, its learning rate a plain number even where a capture made
        it a device tensor (a checkpoint then loads on any device)."""
        state = self.optimizer.state_dict()
        state["param_groups"] = [{**group, "lr": float(group["lr"])}
                                 for group in state["param_groups"]]
        return state

    def _validation(self):
        """Pyro's validation as set for the first step; off after it (no host reads)."""
        return pyro.validation_enabled(False) if self.taken else contextlib.nullcontext()

    def _eager(self, x: torch.Tensor, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        loss = self._backward(x, indices)
        grad_norm = clip_grad_norm_(self.parameters, self.train.grad_clip or math.inf)
        found_inf = distributed.any_rank(
            (~(torch.isfinite(loss) & torch.isfinite(grad_norm))).float(), self.place)
        self.optimizer.found_inf = found_inf
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss, found_inf == 0

    def _backward(self, x: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        """The batch's loss in nats per image (a tensor), its gradient accumulated."""
        args = guide_args(self.guide, indices, self.dataset_size)
        per = loss_divisor(self.guide, len(x), self.dataset_size)
        autocast = torch.autocast(x.device.type, torch.bfloat16, enabled=self.bf16_autocast)
        if self.loss is not None:  # the loss stays on the device
            with autocast:
                loss = self.loss(x, *args).float() / per
            loss.backward()
            return loss.detach()
        # RenyiELBO and TraceGraph_ELBO build their own surrogate loss and call backward
        with autocast:
            loss = self.objective.loss_and_grads(self.model, self.guide, x, *args)
        torch._foreach_div_([p.grad for p in self.parameters if p.grad is not None], per)
        return torch.tensor(loss / per, device=x.device)

    def _capture(self, x: torch.Tensor, indices: torch.Tensor):
        """Record this step as a CUDA graph, then replay it for this batch.

        Adam's learning rate becomes a device tensor, so that the schedule's changes
        reach the recorded step.
        """
        for group in self.optimizer.param_groups:
            group["lr"] = torch.as_tensor(group["lr"], dtype=torch.float32, device=x.device)
        static_x = x.clone()
        torch.cuda.synchronize()
        graph = torch.cuda.CUDAGraph()
        with pyro.validation_enabled(False), torch.cuda.graph(graph):
            outputs = self._eager(static_x, indices)
        self.graph = (graph, static_x, outputs)
        graph.replay()
        return tuple(out.clone() for out in outputs)


@contextlib.contextmanager
def _side_stream():
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        yield
    torch.cuda.current_stream().wait_stream(side)
