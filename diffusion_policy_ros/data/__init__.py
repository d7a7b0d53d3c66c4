"""Datasets: zarr replay buffer, sequence sampler, training dataset, generated demonstrations."""
from .dataset import PolicyDataset, identity_collate, split_episodes  # noqa: F401
from .replay_buffer import ReplayBuffer  # noqa: F401
from .sampler import SequenceSampler  # noqa: F401
