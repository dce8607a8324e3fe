"""The device mesh: data-parallel replicate x shard (HSDP) x tensor parallel."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch.distributed.device_mesh import DeviceMesh, init_device_mesh

from torchtitan_vla.config.parallel import Parallelism
from torchtitan_vla.utils import distributed as dist_utils

MESH_DIMS = ("dp_replicate", "dp_shard", "tp")


@dataclass
class ParallelDims:
    """Degrees of each parallel dimension and the mesh built from them.

    ``dp_replicate * dp_shard * tp == world_size`` always holds after construction. The mesh has the
    named dimensions ``dp_replicate``, ``dp_shard`` and ``tp`` (outer to inner: the ranks of one TP group
    are contiguous, so they share a node, and so are the ranks of one replica), plus a flattened 1-D
    ``dp`` mesh used for data loading and loss reductions. The ranks of one TP group read the same data.
    """

    dp_replicate: int
    dp_shard: int
    world_size: int
    device_type: str = "cpu"
    tp: int = 1
    ep: int = 1
    """Expert-parallel degree: a factor of ``dp_shard`` (see ``expert_mesh``)."""
    _mesh: DeviceMesh | None = field(default=None, init=False, repr=False)
    _flat_dp_mesh: DeviceMesh | None = field(default=None, init=False, repr=False)
    _ep_world: DeviceMesh | None = field(default=None, init=False, repr=False)
    _expert_mesh: DeviceMesh | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        # The degrees' own ranges are checked when the configuration loads; the world size is known only now.
        if self.dp_shard == -1:
            rest, remainder = divmod(self.world_size, self.dp_replicate * self.tp)
            if remainder or rest < 1:
                raise ValueError(
                    f"parallelism: world size {self.world_size} is not divisible by "
                    f"data_parallel_replicate_degree={self.dp_replicate} x tensor_parallel_degree={self.tp}"
                )
            self.dp_shard = rest
        if self.dp_replicate * self.dp_shard * self.tp != self.world_size:
            raise ValueError(
                f"parallelism: data_parallel_replicate_degree={self.dp_replicate} x "
                f"data_parallel_shard_degree={self.dp_shard} x tensor_parallel_degree={self.tp} = "
                f"{self.dp_replicate * self.dp_shard * self.tp}, but the world size is {self.world_size}"
            )
        if self.dp_shard % self.ep:
            raise ValueError(
                f"parallelism: expert_parallel_degree={self.ep} does not divide the data-parallel shard "
                f"degree {self.dp_shard}"
            )

    @classmethod
    def from_config(cls, cfg: Parallelism, world_size: int | None = None, device_type: str | None = None):
        """Degrees from ``[parallelism]`` and the world size (default: the current process group's)."""
        return cls(
            dp_replicate=cfg.data_parallel_replicate_degree,
            dp_shard=cfg.data_parallel_shard_degree,
            world_size=dist_utils.world_size() if world_size is None else world_size,
            device_type=device_type or dist_utils.device_type(),
            tp=cfg.tensor_parallel_degree,
            ep=cfg.expert_parallel_degree,
        )

    @property
    def dp_size(self) -> int:
        """Data-parallel ranks: each reads a different part of the global batch."""
        return self.dp_replicate * self.dp_shard

    @property
    def fsdp_enabled(self) -> bool:
        """Whether parameters are sharded at all (a single process trains a plain module)."""
        return self.dp_size > 1

    @property
    def hsdp_enabled(self) -> bool:
        return self.dp_replicate > 1

    @property
    def tp_enabled(self) -> bool:
        return self.tp > 1

    @property
    def ep_enabled(self) -> bool:
        return self.ep > 1

    @property
    def mesh(self) -> DeviceMesh:
        """The world mesh, built on first use (needs an initialised process group)."""
        self._build_meshes()
        return self._mesh

    def _build_meshes(self) -> None:
        if self._mesh is None:
            self._mesh = init_device_mesh(
                self.device_type, (self.dp_replicate, self.dp_shard, self.tp), mesh_dim_names=MESH_DIMS
            )
            # Kept as an object: slicing a flattened dimension back out of the root mesh is deprecated.
            self._flat_dp_mesh = self._mesh["dp_replicate", "dp_shard"]._flatten("dp")

    def _build_ep_world(self) -> DeviceMesh:
        """The world mesh with ``dp_shard`` split as torchtitan splits it for EP: the EP ranks are its inner,
        contiguous part, the outer part (``dp_shard_mod_ep``) shards each expert further. Built on first use
        (MoE models only)."""
        self._build_meshes()
        if self._ep_world is None:
            self._ep_world = self._mesh._unflatten(
                "dp_shard", (self.dp_shard // self.ep, self.ep), ("dp_shard_mod_ep", "ep")
            )
            world = self._ep_world
            self._expert_mesh = world["ep", "tp"]._flatten("ep_tp") if self.tp_enabled else world["ep"]
        return self._ep_world

    @property
    def fsdp_mesh(self) -> DeviceMesh | None:
        """The mesh ``fully_shard`` gets: 2-D (replicate, shard) for HSDP, 1-D shard for FSDP.

        None when there is nothing to shard over (one data-parallel rank)."""
        if not self.fsdp_enabled:
            return None
        if self.hsdp_enabled:
            return self.mesh["dp_replicate", "dp_shard"]
        return self.mesh["dp_shard"]

    @property
    def tp_mesh(self) -> DeviceMesh | None:
        """The 1-D tensor-parallel mesh (None without TP)."""
        return self.mesh["tp"] if self.tp_enabled else None

    @property
    def expert_mesh(self) -> DeviceMesh | None:
        """The 1-D mesh MoE experts are split over: the ``ep`` consecutive ranks of the shard dimension, times
        the TP group with TP (TP ranks then hold different experts, not the same ones). None with neither."""
        if not (self.ep_enabled or self.tp_enabled):
            return None
        self._build_ep_world()
        return self._expert_mesh

    @property
    def expert_fsdp_mesh(self) -> DeviceMesh | None:
        """The mesh expert weights are FSDP-sharded on when split (``expert_mesh``): what is left of the
        data-parallel dimensions (replicate x dp_shard / ep). None without FSDP."""
        if self.expert_mesh is None or not self.fsdp_enabled:
            return None
        world = self._build_ep_world()
        if self.hsdp_enabled:
            return world["dp_replicate", "dp_shard_mod_ep"]
        return world["dp_shard_mod_ep"]

    @property
    def dp_mesh(self) -> DeviceMesh | None:
        """The flattened 1-D data-parallel mesh, for loss-count and metric all-reduces (None: 1 rank)."""
        if not self.fsdp_enabled:
            return None
        self._build_meshes()
        return self._flat_dp_mesh

    @property
    def dp_rank(self) -> int:
        """This rank's index among data-parallel ranks (which slice of the global batch it reads); the
        ranks of one TP group share it. Also the seed offset of the flow's noise and times, which must
        be identical across a TP group."""
        return dist_utils.rank() // self.tp

    @property
    def dp_world_size(self) -> int:
        return self.dp_size
