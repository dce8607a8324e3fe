"""Fault-tolerant replica groups through torchft (the optional ``ft`` extra)."""

from dataclasses import dataclass
from typing import Annotated

from .constraints import NonNegativeInt, PositiveInt, Range


@dataclass
class FaultTolerance:
    enable: bool = False
    """Make this job one replica group of a torchft job (needs ``pip install '.[ft]'`` and a running
    lighthouse): the replica groups average their gradients through torchft, a group that dies leaves
    the others training, and a restarted one rejoins with a live group's weights and optimizer state.
    Each group is its own ``torchrun`` launch; inside it the usual FSDP/TP layout applies."""

    replica_id: NonNegativeInt = 0
    """This group's index, 0 .. ``group_size`` - 1 (which share of the data it reads)."""

    group_size: PositiveInt = 1
    """Number of replica groups the job is planned with (the data is split into this many shares)."""

    min_replicas: PositiveInt = 1
    """Groups needed for a step to proceed; fewer and the survivors wait (up to ``quorum_timeout_s``)."""

    lighthouse: str = ""
    """Address of the torchft lighthouse, ``http://host:port``. Empty: the ``TORCHFT_LIGHTHOUSE``
    environment variable (which ``scripts/ft_lighthouse.sh`` prints)."""

    timeout_s: Annotated[float, Range(min=0, min_open=True)] = 60.0
    """Timeout of torchft's collectives and of fetching a live group's checkpoint."""

    quorum_timeout_s: Annotated[float, Range(min=0, min_open=True)] = 120.0
    """How long a step waits for a quorum of ``min_replicas`` groups."""
