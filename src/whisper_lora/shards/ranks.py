"""The ranks of a launch: who this process is, its device, and the few steps all ranks share."""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass
from datetime import timedelta

from ..errors import OptionsError
from .parts import ShardError

log = logging.getLogger(__name__)

# How long a rank that finished its share waits for the others. A rank that dies closes its gloo
# sockets and the wait fails at once, so this only bounds a rank that hangs; shares are balanced,
# but one long file can keep a rank busy for hours after the rest.
WAIT_FOR_RANKS = timedelta(hours=48)


@dataclass(frozen=True)
class Launch:
    rank: int  # this process's place among all processes, 0..world_size-1
    world_size: int  # how many processes share the file list
    local_rank: int  # this process's place on its machine: picks its GPU

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def launch_from_env(env=None) -> Launch:
    """The launch torchrun / accelerate launch describe in RANK, WORLD_SIZE, LOCAL_RANK; one
    process when they are absent."""
    env = os.environ if env is None else env
    try:
        world = int(env.get("WORLD_SIZE", "1"))
        rank = int(env.get("RANK", "0"))
        local = int(env.get("LOCAL_RANK", str(rank)))
    except ValueError:
        raise OptionsError(f"WORLD_SIZE={env.get('WORLD_SIZE')!r} RANK={env.get('RANK')!r} "
                           f"LOCAL_RANK={env.get('LOCAL_RANK')!r}: not whole numbers (set by torchrun)") from None
    if world < 1 or not 0 <= rank < world:
        raise OptionsError(f"WORLD_SIZE={world} RANK={rank}: RANK must be in 0..WORLD_SIZE-1")
    return Launch(rank, world, local)


def rank_device(device: str, launch: Launch) -> str:
    """Each rank on its own GPU: auto or cuda -> cuda:LOCAL_RANK (modulo the GPUs visible) where
    there are GPUs; anything else (cpu, mps, an explicit cuda:N) as given."""
    import torch

    if launch.distributed and device in ("auto", "cuda") and torch.cuda.is_available():
        return f"cuda:{launch.local_rank % torch.cuda.device_count()}"
    return device


class Group:
    """The few collective steps the ranks share; with one process each is a no-op."""

    def __init__(self, launch: Launch):
        self.launch = launch
        self._started_here = False
        if launch.distributed:
            import torch.distributed as dist

            _die_with_launcher()
            if not dist.is_initialized():
                dist.init_process_group("gloo", rank=launch.rank, world_size=launch.world_size,
                                        timeout=WAIT_FOR_RANKS)
                self._started_here = True

    def broadcast(self, value):
        """Rank 0's value, on every rank."""
        if not self.launch.distributed:
            return value
        import torch.distributed as dist

        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather_all(self, value) -> list:
        """Every rank's value, in rank order, on every rank."""
        if not self.launch.distributed:
            return [value]
        import torch.distributed as dist

        out = [None] * self.launch.world_size
        dist.all_gather_object(out, value)
        return out

    def close(self) -> None:
        if self._started_here:
            import torch.distributed as dist

            dist.destroy_process_group()


def _die_with_launcher() -> None:
    """Under torchrun, end this process when the launcher ends. torchrun starts each worker in a
    session of its own, so a SIGKILL to the launcher (or to its process group) would leave the
    ranks running on, writing into the parts folder that a --resume then reads and rank 0 removes."""
    if "TORCHELASTIC_RUN_ID" not in os.environ or not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    PR_SET_PDEATHSIG = 1  # prctl option (linux/prctl.h): a signal for us when our parent exits
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) != 0:
        log.warning("could not tie this rank to its launcher (prctl errno %d)", ctypes.get_errno())
    elif os.getppid() == 1:  # the launcher was gone already, before the line above
        raise ShardError("the torchrun launcher of this rank has ended; stopping")


def agree(group: Group, step) -> object:
    """Run step() on rank 0 and hand its value (or its error, raised on every rank) to all."""
    value, error = None, None
    if group.launch.rank == 0:
        try:
            value = step()
        except Exception as exc:  # raised below, once the others have heard of it
            error = exc
    got = group.broadcast((value, None if error is None else f"{type(error).__name__}: {error}"))
    if error is not None:
        raise error
    if got[1] is not None:
        raise ShardError(f"rank {group.launch.rank}: stopped: rank 0 failed: {got[1]}")
    return got[0]
