"""How many evaluation episodes to fine-tune at once: as many as a memory budget holds.

Episodes are independent, so how many run in one call changes speed and memory, not
results. A call's memory grows with its episodes: each has its own weights and optimizer
slots, and each inner step keeps the activations of its batch for the backward pass.
`episode_bytes` estimates that per episode from the network's layer sizes, with factors
measured by `benchmarks/memory.py`; the budget is a share of the memory of the device
the ops run on (host RAM on a CPU, device memory on a GPU).
"""

import math
import os
import re
import shutil
import subprocess

# Bytes held per byte of the network's layer outputs for the images of one pass, and per
# byte of weights (weights, optimizer slots, gradients and their per-group copies). Peak
# resident memory grew per episode by 102 MB (Mini-ImageNet, 15-image inner batches,
# transductive), 194 MB (non-transductive: 26-image query passes) and 7.7 MB (Omniglot
# 1-shot, non-transductive): these factors give 136, 235 and 8.2 MB. Re-measure with
# benchmarks/memory.py.
ACTIVATION_FACTOR = 3
WEIGHT_FACTOR = 10
# Share of the device's available memory that evaluation may use, and caps on CPUs, where
# more episodes per call stop paying off and then cost: 1-shot Omniglot evaluation ran at
# 0.144 s per task with 25 episodes per call and 0.187 with 279 (benchmarks/bench.py, 2
# AVX2 cores), while Mini-ImageNet's 5-shot episodes hit the memory cap first.
BUDGET_SHARE = 0.25
CPU_BUDGET_CAP = 2 << 30
CPU_MAX_EPISODES = 25
GPU_FALLBACK_BYTES = 8 << 30  # device memory assumed when nvidia-smi cannot tell


def episodes_per_call(algo, num_classes, num_shots, inner_batch_size, device_type):
    """How many evaluation episodes of `algo` to fine-tune in one call on `device_type`."""
    per_episode = episode_bytes(algo, num_classes, num_shots, inner_batch_size)
    count = max(1, int(budget_bytes(device_type) // per_episode))
    return count if device_type == 'GPU' else min(count, CPU_MAX_EPISODES)


def episode_bytes(algo, num_classes, num_shots, inner_batch_size):
    """Estimated memory of one evaluation episode in a call of many."""
    dtype_size = algo.compute_dtype.size
    activations = sum(math.prod(layer.output.shape[1:]) for layer in algo.model.layers) * dtype_size
    support = num_classes * num_shots
    queries = num_classes if algo.transductive else support + 1  # images of the final pass
    images = (support + num_classes) * math.prod(algo.model.input_shape[1:]) * 4
    weights = algo.model.count_params() * algo.dtype.size
    return ACTIVATION_FACTOR * activations * max(inner_batch_size, queries) + WEIGHT_FACTOR * weights + images


def budget_bytes(device_type):
    """Memory that evaluation may use on `device_type`."""
    if device_type == 'GPU':
        return BUDGET_SHARE * gpu_memory_bytes()
    return min(BUDGET_SHARE * host_available_bytes(), CPU_BUDGET_CAP)


def host_available_bytes():
    """Memory this process can still take: MemAvailable (Linux), bounded by a cgroup
    limit when there is one; physical memory elsewhere."""
    available = os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES')
    try:
        with open('/proc/meminfo') as meminfo:
            available = int(re.search(r'MemAvailable:\s+(\d+) kB', meminfo.read()).group(1)) * 1024
    except (OSError, AttributeError):
        pass
    return min(available, _cgroup_room())


def _cgroup_room():
    """Bytes left under this process's cgroup (v2) memory limit, or infinity."""
    try:
        with open('/sys/fs/cgroup/memory.max') as limit, open('/sys/fs/cgroup/memory.current') as current:
            return int(limit.read()) - int(current.read())
    except (OSError, ValueError):  # no cgroup v2, or 'max'
        return math.inf


def gpu_memory_bytes():
    """Total memory of the first GPU, from nvidia-smi (TensorFlow does not report it)."""
    if shutil.which('nvidia-smi'):
        try:
            out = subprocess.run(['nvidia-smi', '--query-gpu=memory.total', '--format=csv,noheader,nounits'],
                                 capture_output=True, text=True, timeout=10, check=True).stdout
            return int(out.split()[0]) << 20
        except (OSError, subprocess.SubprocessError, ValueError, IndexError):
            pass
    return GPU_FALLBACK_BYTES
