"""How the policy is laid out over ranks (`train.parallelism`): a registry of strategies the trainer calls blindly.

    single   one process (WORLD_SIZE 1 with `ddp`): the plain module, no collectives.
    ddp      torch DistributedDataParallel: every rank holds the whole policy; gradients are all-reduced in
             DDP's buckets during the LAST micro-batch's backward (`no_sync` before it).
    fsdp     FSDP2 (`torch.distributed.fsdp.fully_shard`) on every decoder layer and the root: parameters,
             gradients and AdamW state are sharded over the ranks (DTensor); each layer's weights are
             all-gathered for its forward and backward and its gradients reduce-scattered after. Checkpoints go
             through torch.distributed.checkpoint (one shard file per rank); the run ends with a plain HF folder.

Every strategy implements the same few hooks (`wrap`, `train_module`, `accumulate`, `full_weights`,
`clip_grad_norm`, `save` / `load`, `full_state_dict`), so rlvr/update.py and rlvr/trainer.py never test which one
runs.

Gradient semantics are the same in all three: each rank's loss is already divided by the whole (mini-)batch's
token count, so gradients are SUMMED over ranks, not averaged (DDP: a sum comm hook; FSDP2: gradient divide
factor 1 with sum-only reductions, since gloo has no PREMUL_SUM). The sum of the ranks' gradients is then the
one-process gradient up to float32 summation order (tests/test_distributed.py).

Balanced micro-batches: FSDP all-gathers each layer in every forward and backward, and DDP all-reduces in the last
backward, so every rank must run the same number of forward/backward passes in every optimizer step. Ranks hold
the whole gathered batch, so the step's micro-batches are dealt in contiguous blocks of ceil(n / world_size) and a
rank with fewer real ones runs *padding* micro-batches: a copy of a real micro-batch whose loss is multiplied by
0 (exact zero gradient, no stats). Padding was chosen over re-dealing groups because it leaves the dealt groups,
and so the summation order, identical to the unpadded deal; its cost is at most one micro-batch per rank per
optimizer step (rlvr/update.py `balanced_deal`).

Generation and evaluation under FSDP run inside `full_weights()`: every rank all-gathers every layer once, keeps
it unsharded while the rollout engine decodes (ranks decode different numbers of tokens, so per-layer gathers
could not line up), then reshards. Peak memory is then one full copy of the weights in the compute dtype per rank
(as verl's HF rollout). The vLLM engine needs no gathered policy: it syncs from the shards one layer at a time
(rlvr/rollouts/vllm.py `fsdp_weight_stream`).

Source: PyTorch FSDP2 (`fully_shard`, `MixedPrecisionPolicy`; Zhao et al. 2023, arXiv 2304.11277 for FSDP),
DistributedDataParallel (Li et al. 2020, arXiv 2006.15704), torch.distributed.checkpoint.
"""

from __future__ import annotations

import contextlib
import socket
from pathlib import Path

import torch

from rlvr.errors import ConfigError


class Single:
    """One process: the module itself; `accumulate` and `full_weights` do nothing."""

    name = "single"
    sharded = False

    def __init__(self, dist, device: torch.device):
        self.dist, self.device = dist, device
        self.model = None

    def wrap(self, model, ref_model=None, mixed_precision: str | None = None):
        """Lay `model` (and a frozen `ref_model`) out over the ranks; returns (model, ref_model) to keep using."""
        self.model = model
        return model, ref_model

    @property
    def train_module(self):
        """The module the training forward (with grad) goes through."""
        return self.model

    def accumulate(self, last: bool):
        """Context of one micro-batch's forward+backward; `last`: the optimizer step's last on this rank."""
        return contextlib.nullcontext()

    def full_weights(self, model=None):
        """Context in which `model` has its whole weights on every rank (generation, evaluation, weight sync)."""
        return contextlib.nullcontext()

    def for_engine(self, engine):
        """`full_weights()` when `engine` runs the policy module itself (HF engine), else nothing: vLLM samples
        from its own copy, synced layer by layer."""
        return self.full_weights() if getattr(engine, "reads_policy_modules", True) else contextlib.nullcontext()

    def clip_grad_norm(self, params: list[torch.Tensor], max_norm: float) -> float:
        """Clip the global gradient norm of `params` to `max_norm`; returns the norm before clipping (float)."""
        return float(torch.nn.utils.clip_grad_norm_(params, max_norm))

    # --------------------------------------------------------------------------------------- checkpoints

    def save(self, folder: Path, model, optimizer) -> None:
        """Write the trainable weights and optimizer state into `folder` (rank 0 only)."""
        from safetensors.torch import save_file

        from rlvr.weights import trainable_state

        if self.dist.is_main:
            save_file(trainable_state(model), str(folder / "trainable.safetensors"))
            torch.save(optimizer.state_dict(), folder / "optimizer.pt")

    def load(self, folder: Path, model, optimizer) -> None:
        from rlvr.weights import load_trainable

        load_trainable(folder, model)
        optimizer.load_state_dict(torch.load(folder / "optimizer.pt", weights_only=True))

    def full_state_dict(self, model, trainable_only: bool) -> dict[str, torch.Tensor] | None:
        """The whole (unsharded) state dict on rank 0's CPU, None on other ranks. Collective under FSDP."""
        if not self.dist.is_main:
            return None
        return {n: p.detach().cpu() for n, p in model.state_dict().items()
                if not trainable_only or n in {k for k, q in model.named_parameters() if q.requires_grad}}


def _sum_allreduce_hook(process_group, bucket):
    """DDP comm hook: SUM the bucket over ranks (DDP's default divides by world_size; see the module docstring)."""
    import torch.distributed as dist

    fut = dist.all_reduce(bucket.buffer(), group=process_group, async_op=True).get_future()
    return fut.then(lambda f: f.value()[0])


class DDP(Single):
    """torch DistributedDataParallel with a sum comm hook and `no_sync` over all but the last micro-batch."""

    name = "ddp"

    def wrap(self, model, ref_model=None, mixed_precision: str | None = None):
        from torch.nn.parallel import DistributedDataParallel

        self.model = model  # generation, evaluation and no-grad passes use the module itself (no collectives)
        ids = [self.device.index] if self.device.type == "cuda" else None
        # broadcast_buffers=False: the only buffers are rotary tables, identical on every rank; broadcasting them
        # would put a collective in every forward, including generation.
        self.ddp = DistributedDataParallel(model, device_ids=ids, broadcast_buffers=False)
        self.ddp.register_comm_hook(None, _sum_allreduce_hook)
        return model, ref_model

    @property
    def train_module(self):
        return self.ddp

    def accumulate(self, last: bool):
        return contextlib.nullcontext() if last else self.ddp.no_sync()


class FSDP(Single):
    """FSDP2 over a 1-D device mesh of all ranks (see the module docstring)."""

    name = "fsdp"
    sharded = True

    def wrap(self, model, ref_model=None, mixed_precision: str | None = None):
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import FSDPModule, MixedPrecisionPolicy, fully_shard

        mesh = init_device_mesh(self.device.type, (self.dist.world_size,))
        mp = None
        if mixed_precision == "bfloat16":  # fp32 master weights + AdamW state, bf16 compute, fp32 reduction
            mp = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
        out = []
        for m in (model, ref_model):
            if m is None:
                out.append(None)
                continue
            kw = {"mesh": mesh} if mp is None else {"mesh": mesh, "mp_policy": mp}
            for layer in decoder_layers(m):
                fully_shard(layer, **kw)
            fully_shard(m, **kw)
            for sub in m.modules():
                if isinstance(sub, FSDPModule):
                    # sum over ranks (set_reduce_scatter_divide_factor: its name before torch 2.8)
                    divide = getattr(sub, "set_gradient_divide_factor", None) or sub.set_reduce_scatter_divide_factor
                    divide(1.0)
                    if hasattr(sub, "set_force_sum_reduction_for_comms"):  # torch >= 2.8; NCCL needs no fallback
                        sub.set_force_sum_reduction_for_comms(True)  # gloo has no PREMUL_SUM
            out.append(m)
        self.model = out[0]
        self.ref_model = out[1]
        return out[0], out[1]

    @contextlib.contextmanager
    def full_weights(self, model=None):
        from torch.distributed.fsdp import FSDPModule

        model = self.model if model is None else model
        mods = [m for m in model.modules() if isinstance(m, FSDPModule)]
        for m in mods:  # every rank, same order: one all-gather per FSDP unit
            m.set_reshard_after_forward(False, recurse=False)
            m.unshard()
        try:
            with torch.no_grad():
                yield model
        finally:
            for m in mods:
                m.reshard()
                m.set_reshard_after_forward(m is not model, recurse=False)  # FSDP2's defaults: root keeps them

    def clip_grad_norm(self, params, max_norm):
        norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
        return float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm)

    # --------------------------------------------------------------------------------------- checkpoints

    def save(self, folder: Path, model, optimizer) -> None:
        """Every rank writes its shards into folder/dcp (torch.distributed.checkpoint, trainable weights and AdamW
        state). `folder` must be on a filesystem every rank sees (one folder per run, as torchrun's usual setup)."""
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

        msd, osd = get_state_dict(model, optimizer, options=StateDictOptions(ignore_frozen_params=True))
        dcp.save({"model": _trainable_only(model, msd), "optim": osd}, checkpoint_id=str(folder / "dcp"))

    def load(self, folder: Path, model, optimizer) -> None:
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict, set_state_dict

        opts = StateDictOptions(ignore_frozen_params=True, strict=False)  # frozen weights come from the base
        msd, osd = get_state_dict(model, optimizer, options=opts)
        sd = {"model": _trainable_only(model, msd), "optim": osd}
        dcp.load(sd, checkpoint_id=str(folder / "dcp"))
        set_state_dict(model, optimizer, model_state_dict=sd["model"], optim_state_dict=sd["optim"], options=opts)

    def full_state_dict(self, model, trainable_only: bool):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        sd = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True,
                                                                  ignore_frozen_params=trainable_only))
        return sd if self.dist.is_main else None


def _trainable_only(model, state: dict) -> dict:
    """`state` restricted to trainable parameters: a tied frozen weight (lm_head = embed_tokens under LoRA) is not
    in named_parameters(), so ignore_frozen_params keeps its second name; it is dropped here."""
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    return {k: v for k, v in state.items() if k in names}


PARALLELISMS: dict[str, type[Single]] = {"single": Single, "ddp": DDP, "fsdp": FSDP}


def make_parallel(name: str, dist, device: torch.device) -> Single:
    """The strategy of `train.parallelism` for this process. `ddp` in a single process is `single` (the same
    computation without collectives); `fsdp` in a single process shards over a 1-process group (created here), so
    its mixed precision and checkpoints can be used and measured on one GPU."""
    if name not in PARALLELISMS or name == "single":
        raise ConfigError(f"train.parallelism = {name!r}: expected one of 'ddp', 'fsdp'")
    if dist.world_size == 1 and name == "ddp":
        name = "single"
    if name == "fsdp" and dist.world_size == 1:
        _init_single_process_group(device)
    return PARALLELISMS[name](dist, device)


def _init_single_process_group(device: torch.device) -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", init_method=f"tcp://127.0.0.1:{port}",
                            rank=0, world_size=1)


def decoder_layers(model) -> list[torch.nn.Module]:
    """The repeated transformer blocks of a HF causal LM (peft-wrapped or not): the `ModuleList` holding the most
    parameters. Raises ConfigError when there is none (FSDP would then shard the model as one unit)."""
    best, size = None, 0
    for m in model.modules():
        if isinstance(m, torch.nn.ModuleList) and len(m) > 1:
            n = sum(p.numel() for p in m.parameters())
            if n > size:
                best, size = m, n
    if best is None:
        raise ConfigError("train.parallelism = 'fsdp': the policy has no list of decoder layers to shard")
    return list(best)
