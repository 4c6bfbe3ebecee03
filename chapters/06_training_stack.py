# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 6. Buffers in the training stack
#
# ```{admonition} In this chapter
# :class: note
# **You will learn**
#
# - what `DistributedDataParallel` does to buffers at wrap time and before every forward,
#   why a rank-local queue is wiped and BatchNorm statistics drift, and what to do on a CPU
#   where `SyncBatchNorm` refuses to run;
# - why `model.to(torch.bfloat16)` ruins a RoPE frequency table, and two ways to keep it
#   float32;
# - why buffers hold garbage after meta-device init and `to_empty`, even when
#   `load_state_dict` reports that all keys matched;
# - how `torch.compile`, `torch.export` and `torch.func` treat a buffer updated in `forward`;
# - what `AveragedModel(use_buffers=...)` does with BatchNorm statistics, and the checkpoint
#   traps around buffers (`None` buffers, `strict=False`, old BatchNorm checkpoints,
#   `weights_only`, tied buffers).
#
# **Prerequisites:** [chapter 1](01_buffers_vs_parameters.ipynb) (what a buffer is),
# [chapter 2](02_full_replacement.ipynb) (replacing one) and
# [chapter 3](03_inplace_accumulation.ipynb) (updating one in place).
#
# **Time:** about 60 minutes.
# ```
#
# Chapters 1 to 5 looked at one module in one process. Real training code wraps that module:
# `DistributedDataParallel` runs a copy in every process, mixed precision casts it, big models
# are built on the meta device, `torch.compile` traces it, `torch.export` turns it into a graph
# for deployment, an EMA teacher averages it, and checkpoints carry it between runs. Each layer
# has its own rules for buffers, and many questions people ask about buffers come from there.
# Every claim on this page is pinned by an `assert` that ran against the torch version printed
# below, and torch's messages are quoted word for word. The checks sit in collapsed cells:
# expand one to see what it proves.

# %% tags=["remove-cell"]
# Set-up: this notebook uses bufferbook, the book's helper package.
try:
    import bufferbook  # noqa: F401
except ImportError:
    import sys

    # The book's repository (repository.url and .branch in its _config.yml)
    REPOSITORY = ""
    BRANCH = "main"
    if "google.colab" in sys.modules and REPOSITORY:
        import importlib
        import subprocess

        subprocess.check_call([sys.executable, "-m", "pip", "install", "-q",
                               f"bufferbook @ git+{REPOSITORY}@{BRANCH}"])
        importlib.invalidate_caches()
        import bufferbook  # noqa: F401
    else:
        class BufferbookMissing(Exception):
            def _render_traceback_(self):  # IPython: no traceback
                return str(self).splitlines()

        raise BufferbookMissing(
            "This notebook needs bufferbook, the helper package of the\n"
            "book 'Buffers in PyTorch'. Get the course bundle: in the web\n"
            "book, open the download menu of any page and pick 'Course\n"
            "bundle (.zip)'. Unzip it, and in its folder run once:\n"
            "    python -m pip install -r requirements.txt\n"
            "then open this notebook from the bundle's chapters/ or\n"
            "exercises/ folder.")

# %% tags=["nbval-ignore-output"]
# Imports for the whole chapter, and the versions this page was run with
# %load_ext bufferbook.cuda_cells
import copy
import inspect
import io
import platform
import textwrap
import warnings

import torch
from IPython.display import Code
from torch import nn
from torch.optim.swa_utils import (AveragedModel, get_ema_multi_avg_fn,
                                   update_bn)

from bufferbook.checks import error_message
from bufferbook.training_stack import (Encoder, LazyStats, NaiveRotary,
                                       RotaryTable, format_rope_errors,
                                       init_buffers, rope_error_rows,
                                       rope_inv_freq,
                                       uninitialized_memory_as_nan)
from bufferbook.training_stack_compile import (IntStepCounter,
                                               TensorStepCounter,
                                               count_compilations,
                                               signature_rows,
                                               use_temporary_compile_cache)
from bufferbook.training_stack_ddp import (KeyQueue, Rebinding,
                                           ddp_buffer_experiments,
                                           run_two_ranks, syncbn_on_gpus)

use_temporary_compile_cache()  # compiled code goes to the temp folder
# torch 2.13's export warns about one of its own internals; hide that one
warnings.filterwarnings("ignore", message=".*LeafSpec.*")
print("torch", torch.__version__, "| Python", platform.python_version())

# %% [markdown]
# ## 6.1 DistributedDataParallel: whose buffers win
#
# `DistributedDataParallel` (DDP) runs one full copy of the model in every process (rank).
# Gradients are averaged across ranks, so parameters stay identical. Buffers get no gradient.
# DDP keeps them in step another way: it copies rank 0's buffers over every other rank's.
# That is right for BatchNorm statistics that should agree; it is wrong for state that is
# meant to differ per rank, such as a queue of negative keys in contrastive learning (MoCo),
# which each rank fills with its own keys (a question MoCo reimplementations get, for
# example bl0/moco#15).
#
# The cell below starts two processes on this CPU, joins them with the `gloo` backend, and
# runs every experiment of sections 6.1 and 6.2 in both. The workers live in
# `bufferbook.training_stack_ddp` (a spawned process imports the function it runs, so it
# cannot be defined in a notebook); each returns plain values, printed below.

# %%
# Two ranks, one gloo process group; every DDP experiment of 6.1 and 6.2
ddp = run_two_ranks(ddp_buffer_experiments)
print("results from ranks", sorted(ddp))

# %% [markdown]
# The first experiment is a MoCo-style queue. Each rank writes `10 * rank + step` into the
# slot `ptr` points to, so rank 1 writes 11, 12, 13 and the tens digit tells who wrote a key:

# %%
# The module both ranks train, printed from its source file
Code(inspect.getsource(KeyQueue.forward), language="python")

# %% [markdown]
# ```{admonition} Predict
# :class: tip
# Rank 1 writes 11, 12 and 13 in its first three training steps. With DDP's default
# settings, what does rank 1's `queue` hold after those three steps?
# ```

# %%
# Each rank's queue after three steps, per DDP setting
for setting in ("default", "broadcast_buffers=False"):
    queues = [[int(v) for v in ddp[r]["queue"][setting]["queue"]]
              for r in (0, 1)]
    print(f"{setting:<24} rank 0: {queues[0]}   rank 1: {queues[1]}")

# %% tags=["hide-input"]
# Check: the default wipes rank 1's keys but the last one written
queue = {(r, s): ddp[r]["queue"][s]["queue"] for r in (0, 1)
         for s in ("default", "broadcast_buffers=False")}
assert queue[0, "default"] == [1.0, 2.0, 3.0, 0.0]
assert queue[1, "default"] == [1.0, 2.0, 13.0, 0.0]
assert queue[1, "broadcast_buffers=False"] == [11.0, 12.0, 13.0, 0.0]
assert queue[0, "broadcast_buffers=False"] == queue[0, "default"]
assert all(ddp[r]["queue"][s]["ptr"] == 3 for r, s in queue)

# %% [markdown]
# Rank 1 kept only 13. At the start of every `forward`, DDP broadcasts all of rank 0's
# buffers (`queue`, `ptr`, `steps`) over rank 1's, then runs the module. So rank 1's key of
# step 1 was overwritten by rank 0's at step 2, and so on; only the key written in the last
# step survives, until the next forward overwrites it too. With `broadcast_buffers=False`
# each rank keeps its own queue.
#
# ```{admonition} Pitfall: rank-local state in a buffer under default DDP
# :class: warning
# A queue, a per-rank counter or a per-rank cache registered as a buffer and wrapped with
# `DistributedDataParallel(model)`: every forward replaces it with rank 0's copy, without
# any error. **Fix:** `DistributedDataParallel(model, broadcast_buffers=False)`, and make
# sure nothing else in the model (BatchNorm) relied on the sync.
# ```
#
# **The sync at wrap time.** DDP also broadcasts rank 0's state once, when you wrap the
# model. Here each rank starts with a buffer `tag` equal to its rank number:

# %%
# Tag on each rank right after DistributedDataParallel(...), per setting
for setting, result in ddp[1]["init_sync"].items():
    print(f"{setting:<28} rank 0: {ddp[0]['init_sync'][setting]['tag']}"
          f"   rank 1: {result['tag']}")
note = ddp[1]["init_sync"]["broadcast_buffers=False"]["warnings"][0]
print("\nwarning for broadcast_buffers:\n" + textwrap.fill(note, 76))

# %% tags=["hide-input"]
# Check: only broadcast_buffers=False skips the wrap-time sync of buffers
init = {s: (ddp[0]["init_sync"][s], ddp[1]["init_sync"][s])
        for s in ddp[0]["init_sync"]}
assert init["default"][1]["tag"] == [0.0, 0.0]
assert init["forward_sync_buffers=False"][1]["tag"] == [0.0, 0.0]
assert init["broadcast_buffers=False"][1]["tag"] == [1.0, 1.0]
assert [init[s][1]["forward_sync_buffers"] for s in init] == [
    True, False, False]
assert init["default"][1]["warnings"] == []
assert init["forward_sync_buffers=False"][1]["warnings"] == []
assert note == (
    "`broadcast_buffers` is deprecated. Use `forward_sync_buffers` "
    "instead. IMPORTANT: unlike `broadcast_buffers=False`, "
    "`forward_sync_buffers=False` still syncs buffers at init. If you "
    "rely on buffers NOT being synced at init (e.g. rank-local buffers), "
    "keep using `broadcast_buffers=False` until `init_sync_buffers` is "
    "available.")
assert torch.__version__ >= "2.13"  # the warning and forward_sync_buffers

# %% [markdown]
# This part depends on the torch version. Since torch 2.1, `broadcast_buffers=False` also
# skips buffers in the wrap-time sync (a change reported in pytorch/pytorch#111138), so
# rank 1 keeps `tag = [1, 1]`. Torch 2.13 deprecates `broadcast_buffers` in favour of
# `forward_sync_buffers`, which controls only the per-forward sync: with
# `forward_sync_buffers=False` the buffers are still synced once at wrap time, as the
# warning says. For rank-local buffers, `broadcast_buffers=False` is the setting that leaves
# them alone from the start.
#
# **BatchNorm across ranks.** Each rank normalises its own batches, so each rank's
# BatchNorm updates `running_mean` with its own batch means. Here rank 1's batches have a
# different mean from rank 0's.
#
# ```{admonition} Predict
# :class: tip
# With DDP's default settings (rank 0's buffers copied over at every forward), do ranks 0
# and 1 hold the same `running_mean` once the last training step has finished?
# ```

# %%
# BatchNorm's running_mean on each rank, at four moments
moments = {"after_training": "after training",
           "after_eval_forward": "after an eval forward",
           "broadcast_buffers_from": "broadcast_buffers_from",
           "average_buffers": "average_buffers"}
for setting in ("default", "broadcast_buffers=False"):
    print(setting)
    for moment, label in moments.items():
        means = [[round(v, 3) for v in ddp[r]["batchnorm"][setting][moment]]
                 for r in (0, 1)]
        print(f"  {label:<23} rank 0: {means[0]}  rank 1: {means[1]}")

# %% tags=["hide-input"]
# Check: the ranks differ after training, and each fix makes them agree
bn = {(r, s): ddp[r]["batchnorm"][s] for r in (0, 1)
      for s in ("default", "broadcast_buffers=False")}
for s in ("default", "broadcast_buffers=False"):
    assert bn[0, s]["after_training"] != bn[1, s]["after_training"]
    assert (bn[0, s]["broadcast_buffers_from"]
            == bn[1, s]["broadcast_buffers_from"]
            == bn[0, s]["after_training"])
    torch.testing.assert_close(torch.tensor(bn[0, s]["average_buffers"]),
                               torch.tensor(bn[1, s]["average_buffers"]))
    torch.testing.assert_close(
        torch.tensor(bn[0, s]["average_buffers"]),
        (torch.tensor(bn[0, s]["after_training"])
         + torch.tensor(bn[1, s]["after_training"])) / 2)
# one more forward through DDP (eval, no_grad) copies rank 0's in (default)
assert (bn[1, "default"]["after_eval_forward"]
        == bn[0, "default"]["after_training"])
assert (bn[1, "broadcast_buffers=False"]["after_eval_forward"]
        == bn[1, "broadcast_buffers=False"]["after_training"])
# rank 0 never changes: it is the source of every broadcast
assert (bn[0, "default"]["after_training"]
        == bn[0, "default"]["after_eval_forward"])

# %% [markdown]
# No: even with the default, the ranks differ when training stops. The sync runs at the
# *start* of a forward, so rank 1's last update is applied to rank 0's statistics and never
# synced back. The next forward through the DDP wrapper (here an evaluation forward, in
# `eval()` mode under `no_grad`) copies rank 0's statistics in again. With
# `broadcast_buffers=False` the ranks keep drifting apart for good.
#
# This is how evaluation results come to differ from the saved checkpoint: each rank
# evaluates with its own statistics (calling the inner `model`, not the wrapper), while the
# checkpoint is written by rank 0. mmdetection added a broadcast of BatchNorm buffers before
# evaluation for exactly this (open-mmlab/mmdetection PR #4582).
#
# ```{admonition} Pitfall: evaluating or saving per-rank BatchNorm statistics
# :class: warning
# After training with DDP, each rank evaluates `model` (or saves it) with statistics that
# differ from the other ranks'. **Fix:** make the ranks agree first, in every rank:
# `broadcast_buffers_from(model, 0)` copies rank 0's buffers (what DDP's sync does), or
# `average_buffers(model)` replaces each floating-point buffer by its mean over the ranks.
# Both are ten-line helpers in `bufferbook.training_stack_ddp` built on `dist.broadcast` and
# `dist.all_reduce`; pytorch-image-models offers the same two choices in its `distribute_bn`
# (huggingface/pytorch-image-models#110). `SyncBatchNorm` (section 6.2) avoids the drift in the first place.
# ```
#
# **A buffer rebound in `forward`.** Some modules replace a buffer instead of updating it:
# `self.total = self.total + 1` makes a new tensor each step. DDP keeps a list of the
# buffers it broadcasts; in 2021 that list went stale after such a rebind, and DDP kept
# broadcasting the old tensor (pytorch/pytorch#63916, fixed in PR #64472). This module
# records the value `total` holds when each forward starts; rank `r` adds `r + 1`:

# %%
# The rebinding module, printed from its source file
Code(inspect.getsource(Rebinding.forward), language="python")

# %% [markdown]
# ```{admonition} Predict
# :class: tip
# Rank 0 adds 1 and rank 1 adds 2 in each of three steps, with DDP's default settings.
# What does `total` hold on rank 1 at the start of steps 1, 2 and 3?
# ```

# %%
# What each rank saw at the start of each forward: the installed DDP, and
# the same run with DDP's buffer list never refreshed
print("total at the start of steps 1-3, and at the end")
print(f"{'':9}{'installed DDP':<14}{'end':<5}list never refreshed")
for rank in (0, 1):
    result = ddp[rank]["rebound"]
    seen = [int(v) for v in result["seen"]]
    stale = [int(v) for v in result["seen_without_refresh"]]
    print(f"rank {rank}   {str(seen):<14}{int(result['final']):<5}{stale}")

# %% tags=["hide-input"]
# Check: DDP broadcasts the rebound tensor (each step starts equal); with
# the refresh switched off it broadcasts into a tensor the module dropped
rebound = [ddp[r]["rebound"] for r in (0, 1)]
assert rebound[0]["seen"] == rebound[1]["seen"] == [0.0, 1.0, 2.0]
assert [r["final"] for r in rebound] == [3.0, 4.0]
assert rebound[0]["rebound"] and rebound[1]["rebound"]
assert rebound[0]["seen_without_refresh"] == [0.0, 1.0, 2.0]
assert rebound[1]["seen_without_refresh"] == [0.0, 2.0, 4.0]
# the installed DDP re-reads the module's buffers before every sync
DDP = nn.parallel.DistributedDataParallel
sync_source = inspect.getsource(DDP._sync_buffers)
assert "self._assign_modules_buffers()" in sync_source
assign_source = inspect.getsource(DDP._assign_modules_buffers)
assert "self.module.named_buffers()" in assign_source

# %% [markdown]
# 0, 1, 2: rank 0's values. Both ranks start every step from the same value, so the
# installed DDP broadcasts whatever tensor `total` names *now*: before each sync it re-reads
# `module.named_buffers()` (`DistributedDataParallel._assign_modules_buffers`). The second
# run replays the 2021 bug by replacing that refresh with a no-op: DDP then broadcasts into
# the first tensor, which the module no longer uses, and rank 1 starts its steps at 0, 2, 4,
# its own values.

# %% [markdown]
# ## 6.2 SyncBatchNorm, and what to do on a CPU
#
# `nn.SyncBatchNorm` computes batch statistics over the batches of *all* ranks, so every rank
# normalises with, and stores, the same statistics. `nn.SyncBatchNorm.convert_sync_batchnorm
# (model)` swaps every BatchNorm layer of a model for one.
#
# ```{admonition} Predict
# :class: tip
# On a CPU, inside the two-rank gloo process group: does `convert_sync_batchnorm` work? And
# can the converted model be wrapped in DDP, or called in training mode?
# ```

# %%
# SyncBatchNorm on a CPU, from the same gloo run: converting, wrapping in
# DDP, calling it in training mode
syncbn = ddp[0]["syncbn"]
print("convert_sync_batchnorm builds:", syncbn["converted_to"])
print("wrapping it in DDP:\n ", syncbn["ddp"])
print("calling it in training mode:\n ", syncbn["forward"])

# %% tags=["hide-input"]
# Check: exact messages, the same on both ranks; outside a process group,
# or in eval mode, SyncBatchNorm does not sync, and runs on a CPU as
# BatchNorm does
for rank in (0, 1):
    assert ddp[rank]["syncbn"]["ddp"] == (
        "SyncBatchNorm layers only work with GPU modules")
    assert ddp[rank]["syncbn"]["forward"] == (
        "SyncBatchNorm expected input tensor to be on GPU or XPU or "
        "privateuseone")
    assert ddp[rank]["syncbn"]["converted_to"] == "SyncBatchNorm"
assert not torch.distributed.is_initialized()  # this kernel has no group
torch.manual_seed(0)
x = torch.randn(8, 2)
sync_bn, plain_bn = nn.SyncBatchNorm(2), nn.BatchNorm1d(2)
torch.testing.assert_close(sync_bn(x), plain_bn(x))
torch.testing.assert_close(sync_bn.running_mean, plain_bn.running_mean)
forward_source = inspect.getsource(nn.SyncBatchNorm.forward)
assert "and self.training" in forward_source
assert "and torch.distributed.is_initialized()" in forward_source

# %% [markdown]
# The conversion works; the model does not. DDP refuses to wrap a CPU model with
# `SyncBatchNorm` layers, and a `SyncBatchNorm` layer called in training mode inside a
# process group refuses CPU input. Both refusals come only where it would have to sync:
# outside a process group, or in `eval()` mode, `SyncBatchNorm` runs on a CPU exactly as
# BatchNorm does (the hidden check compares the two), which is why a converted model passes
# single-process tests on a laptop.
#
# ```{admonition} Pitfall: converting to SyncBatchNorm in a CPU job
# :class: warning
# `model = nn.SyncBatchNorm.convert_sync_batchnorm(model)` in a training script that also
# runs on CPUs: the conversion succeeds, and the job fails later, at
# `DistributedDataParallel(model)`. **Fix:** convert only when each rank has a GPU
# (`if torch.cuda.is_available()`), and on CPUs keep BatchNorm with one of the fixes below.
# ```
#
# On a CPU the choices are: keep plain BatchNorm and make the ranks' statistics agree before
# evaluating or saving (`broadcast_buffers_from` or `average_buffers`, section 6.1), or use a
# normalisation that keeps no running statistics at all, such as GroupNorm or LayerNorm,
# which have no buffers:

# %%
# Normalisation layers and the buffers they keep
for layer in (nn.BatchNorm1d(4), nn.GroupNorm(2, 4), nn.LayerNorm(4)):
    names = [name for name, _ in layer.named_buffers()]
    print(f"{type(layer).__name__:<12}", names)

# %% tags=["hide-input"]
# Check: GroupNorm and LayerNorm keep no buffers
assert list(nn.GroupNorm(2, 4).buffers()) == []
assert list(nn.LayerNorm(4).buffers()) == []
assert len(list(nn.BatchNorm1d(4).buffers())) == 3

# %% [markdown]
# The two fixes differ from `SyncBatchNorm` in one way: they make the *stored* statistics
# agree, but during training each rank still normalises with its own batch's statistics.
# With two or more GPUs, `SyncBatchNorm` does both. The cell below runs the same BatchNorm
# model with `SyncBatchNorm` on two GPUs (`nccl`, one GPU per rank) and compares each rank's
# `running_mean` with plain BatchNorm fed both ranks' batches in one process.

# %% tags=["requires-cuda", "nbval-ignore-output"]
# %%requires_cuda
# SyncBatchNorm on two GPUs, each rank's running_mean
if torch.cuda.device_count() < 2:
    print("needs two GPUs; this machine has", torch.cuda.device_count())
else:
    gpu = run_two_ranks(syncbn_on_gpus, backend="nccl")
    for rank in (0, 1):
        mean = gpu[rank]["running_mean"]
        print(f"rank {rank}:", [round(v, 4) for v in mean])
    print("one process, both ranks' batches:",
          [round(v, 4) for v in gpu[0]["one_process_reference"]])
    torch.testing.assert_close(torch.tensor(gpu[0]["running_mean"]),
                               torch.tensor(gpu[1]["running_mean"]))
    torch.testing.assert_close(torch.tensor(gpu[0]["running_mean"]),
                               torch.tensor(gpu[0]["one_process_reference"]),
                               rtol=1e-4, atol=1e-5)

# %% [markdown]
# ## 6.3 Casting a model reaches its buffers
#
# Pure bfloat16 training and inference cast the whole model: `model.to(torch.bfloat16)`.
# Rotary position embeddings (RoPE) keep a table of frequencies `inv_freq` as a buffer; every
# attention layer rotates queries and keys by the angles `position * inv_freq`. Hugging Face
# transformers met this in its Mistral code (huggingface/transformers#29496): a bfloat16
# `inv_freq` gave wrong rotary tables at long sequence lengths.
#
# ```{admonition} Predict
# :class: tip
# `Encoder` has a Linear layer, a BatchNorm (`running_mean`, `running_var`,
# `num_batches_tracked`) and a RoPE table (`inv_freq`). After
# `model.to(torch.bfloat16)`, which of the four buffers are bfloat16?
# ```

# %%
# Cast a model to bfloat16 and list its buffers' dtypes
model = Encoder(dim=8).to(torch.bfloat16)
for name, buffer in model.named_buffers():
    print(f"{name:<24} {buffer.dtype}")

# %% tags=["hide-input"]
# Check: floating-point buffers are cast, the integer counter is not
dtypes = {name: b.dtype for name, b in model.named_buffers()}
assert dtypes == {"norm.running_mean": torch.bfloat16,
                  "norm.running_var": torch.bfloat16,
                  "norm.num_batches_tracked": torch.int64,
                  "rotary.inv_freq": torch.bfloat16}

# %% [markdown]
# `Module.to(dtype)` casts every floating-point parameter *and buffer*; integer tensors such
# as `num_batches_tracked` only move. For `inv_freq` the rounding is ruinous: bfloat16
# keeps 8 significant bits, so each frequency is off by up to about 0.4 %, and the angle
# error grows with the position. The table below rounds the
# frequencies of a 128-dimensional head, then compares the angles with the exact float32
# table. Calling `.float()` on the rounded buffer later does not bring the digits back.

# %%
# Largest angle and cosine error when inv_freq was rounded, by position
rows = rope_error_rows([torch.bfloat16, torch.float16],
                       positions=[128, 1024, 4096, 32768])
print(format_rope_errors(rows))

# %% tags=["hide-input"]
# Check: errors grow with position; bfloat16 is worse than float16
errors = {(r["dtype"], r["position"]): r for r in rows}
positions = (128, 1024, 4096, 32768)
for dtype in ("bfloat16", "float16"):
    angle = [errors[dtype, p]["angle_error"] for p in positions]
    assert angle == sorted(angle) and angle[-1] > 100 * angle[0]
for p in positions:
    assert (errors["bfloat16", p]["angle_error"]
            > errors["float16", p]["angle_error"])
assert errors["bfloat16", 4096]["angle_error"] > 3.14  # over half a turn
assert errors["bfloat16", 4096]["cos_error"] > 1.0  # cos is meaningless
exact = NaiveRotary(128).inv_freq
relative = ((exact.to(torch.bfloat16).float() - exact) / exact).abs().max()
assert 2 ** -9 < relative <= 2 ** -8                  # "up to about 0.4 %"
# .float() is no cure
assert not torch.equal(exact.to(torch.bfloat16).float(), exact)

# %% [markdown]
# At position 4096 some columns of the bfloat16 table are off by more than half a turn: the
# rotation no longer encodes the position.
#
# ```{admonition} Pitfall: casting the whole model casts its frequency tables
# :class: warning
# `model.to(torch.bfloat16)` (or `.half()`) rounds `inv_freq` and every other float buffer,
# and nothing later restores the lost digits. **Fix:** train with autocast instead of
# casting (buffers stay float32), or write the module so that it rebuilds such a table in
# float32 after every cast, as `RotaryTable` below does.
# ```
#
# **Autocast leaves buffers alone.** Under `torch.autocast`, eligible operations (a matrix
# multiply in a Linear layer) run in bfloat16, but no parameter or buffer is cast:

# %%
# Autocast: the Linear runs in bfloat16, the buffers stay float32
torch.manual_seed(0)
model = Encoder(dim=8)
with torch.autocast("cpu", dtype=torch.bfloat16):
    hidden, angles = model(torch.randn(4, 8), torch.arange(4))
print("Linear output:", model.proj(torch.randn(1, 8)).dtype,
      "outside autocast,", hidden.dtype, "inside")
print("inv_freq:", model.rotary.inv_freq.dtype, "| angles:", angles.dtype,
      "| running_mean:", model.norm.running_mean.dtype)

# %% tags=["hide-input"]
# Check: autocast casts operations, not buffers
with torch.autocast("cpu", dtype=torch.bfloat16):
    assert model.proj(torch.randn(2, 8)).dtype == torch.bfloat16
assert all(b.dtype in (torch.float32, torch.int64)
           for b in model.buffers())
assert all(p.dtype == torch.float32 for p in model.parameters())
torch.testing.assert_close(model.rotary.inv_freq, NaiveRotary(8).inv_freq,
                           rtol=0, atol=0)

# %% [markdown]
# **A table that rebuilds itself.** When the model must be cast (FSDP with bfloat16
# parameters, a bfloat16 checkpoint for inference), the table has to be recomputed from its
# definition rather than rounded. Every `.to()`, `.half()`, `.bfloat16()`, `.cuda()` and
# `to_empty()` goes through `Module._apply`, which replaces the module's tensors;
# `RotaryTable` lets it, then rebuilds `inv_freq` in float32 on the new device. Torch's own
# `nn.RNNBase` overrides `_apply` too, to rebuild its flattened weights after the base
# class has replaced them.

# %%
# RotaryTable (bufferbook.training_stack): rebuild the table after _apply
Code(inspect.getsource(RotaryTable), language="python")

# %%
# The same cast as above, with RotaryTable in the model
model = Encoder(dim=8, rotary=RotaryTable).to(torch.bfloat16)
print("running_mean:", model.norm.running_mean.dtype,
      "| inv_freq:", model.rotary.inv_freq.dtype)
print("inv_freq:", model.rotary.inv_freq)

# %% tags=["hide-input"]
# Check: RotaryTable keeps the exact float32 table through casts and moves
exact = NaiveRotary(8).inv_freq
for cast in (lambda m: m.to(torch.bfloat16), lambda m: m.half(),
             lambda m: m.double(), lambda m: m.to("cpu")):
    table = cast(RotaryTable(8))
    assert table.inv_freq.dtype == torch.float32
    assert torch.equal(table.inv_freq, exact)
# the rest is still cast
assert model.norm.running_mean.dtype == torch.bfloat16
assert nn.RNNBase._apply is not nn.Module._apply  # torch overrides it too
assert "self._init_flat_weights()" in inspect.getsource(nn.RNNBase._apply)
# every conversion named above goes through Module._apply
for method in (nn.Module.to, nn.Module.half, nn.Module.bfloat16,
               nn.Module.cuda, nn.Module.to_empty):
    assert "return self._apply(" in inspect.getsource(method), method

# %% [markdown]
# ## 6.4 Meta-device init: what `to_empty` leaves behind
#
# A model too big to build twice is built on the meta device (shapes only, no memory), then
# given real memory with `to_empty(device=...)`, then filled from a checkpoint. The
# pytorch-image-models authors found models with non-persistent buffers producing garbage
# after this path (huggingface/pytorch-image-models PR #2350), and transformers now makes
# every model's init cover its buffers for the same reason (huggingface/transformers
# PR #42309).
#
# `to_empty` allocates memory without writing it, so its content is whatever was there. To
# make that visible, `uninitialized_memory_as_nan()` turns on a torch debugging switch:
# in deterministic mode torch fills freshly allocated memory with NaN (integers with their
# largest value).
#
# ```{admonition} Predict
# :class: tip
# A trained `Encoder`'s checkpoint is loaded into a meta-built `Encoder` after `to_empty`,
# and `load_state_dict` reports that all keys matched. What does `rotary.inv_freq` hold?
# ```

# %%
# Build on meta, allocate with to_empty, load a checkpoint
torch.manual_seed(0)
trained = Encoder(dim=4)
trained(torch.randn(16, 4) + 3.0, torch.arange(4))  # one step: running stats
with torch.device("meta"):
    fresh = Encoder(dim=4)
print("on meta:", fresh.rotary.inv_freq)
with uninitialized_memory_as_nan():
    fresh.to_empty(device="cpu")
result = fresh.load_state_dict(trained.state_dict())
print("load_state_dict:", result)
for name, buffer in fresh.named_buffers():
    print(f"{name:<24}", buffer)

# %% tags=["hide-input"]
# Check: persistent buffers came from the checkpoint; inv_freq is unwritten
assert str(result) == "<All keys matched successfully>"
assert result.missing_keys == [] and result.unexpected_keys == []
for name in ("norm.running_mean", "norm.running_var",
             "norm.num_batches_tracked"):
    assert torch.equal(fresh.get_buffer(name), trained.get_buffer(name))
assert torch.isnan(fresh.rotary.inv_freq).all()
assert "rotary.inv_freq" not in trained.state_dict()   # non-persistent
# to_empty is torch.empty_like of every tensor; the switch fills integers
# with their largest value
assert "torch.empty_like(t, device=device)" in inspect.getsource(
    nn.Module.to_empty)
with uninitialized_memory_as_nan():
    unwritten = torch.empty(2, dtype=torch.long)
assert unwritten.tolist() == [torch.iinfo(torch.long).max] * 2

# %% [markdown]
# NaN: nothing ever wrote `inv_freq`. `to_empty` replaced every parameter and buffer with
# an uninitialized tensor (`torch.empty_like`), and `load_state_dict` wrote only the keys of
# the state dict. A non-persistent buffer is not a key, so "All keys matched successfully"
# is true and says nothing about it. Without the debugging switch the table would hold
# whatever that memory held before, instead of NaN.
#
# `to_empty` empties tensors that already hold real values too. A proposal to skip tensors
# already on the target device (pytorch/pytorch PR #148926) was closed; on the installed
# torch:

# %%
# To_empty on a module whose table is already on the CPU
table = NaiveRotary(8)
print("before:", table.inv_freq)
with uninitialized_memory_as_nan():
    table.to_empty(device="cpu")
print("after: ", table.inv_freq)

# %% tags=["hide-input"]
# Check: to_empty replaces real CPU tensors with uninitialized ones as well
assert torch.isnan(table.inv_freq).all()

# %% [markdown]
# ```{admonition} Pitfall: an init that covers parameters only
# :class: warning
# `to_empty()`, then `load_state_dict(checkpoint)` or a `reset_parameters()` pass: every
# non-persistent buffer (RoPE tables, causal masks, position ids) keeps uninitialized
# memory. **Fix:** give every buffer an init and run it after `to_empty`. Persistent buffers
# come from the checkpoint; for the others call an init function (`init_buffers` below), or
# write the module so that it rebuilds them itself (`RotaryTable` does it in `_apply`, which
# `to_empty` calls), or make the buffer persistent so the checkpoint carries it (torchtitan
# did this for its RoPE table, pytorch/torchtitan PR #201).
# ```

# %%
# Fixes: RotaryTable rebuilds in to_empty; init_buffers for a new model
with torch.device("meta"):
    fresh = Encoder(dim=4, rotary=RotaryTable)
with uninitialized_memory_as_nan():
    fresh.to_empty(device="cpu")
print("after to_empty:", fresh.rotary.inv_freq)
print("loaded:", fresh.load_state_dict(trained.state_dict()))

with torch.device("meta"):
    untrained = Encoder(dim=4, rotary=RotaryTable)
with uninitialized_memory_as_nan():
    untrained.to_empty(device="cpu")
print("init_buffers reset:", init_buffers(untrained))
print("running_var:", untrained.norm.running_var)

# %% tags=["hide-input"]
# Check: every buffer is initialized on both fixed paths
reference = Encoder(dim=4, rotary=RotaryTable)
assert torch.equal(fresh.rotary.inv_freq, reference.rotary.inv_freq)
for name, buffer in fresh.named_buffers():
    if buffer.is_floating_point():
        assert not torch.isnan(buffer).any(), name
for name, buffer in untrained.named_buffers():
    assert torch.equal(buffer, reference.get_buffer(name)), name
# the third fix: a persistent table comes back from the checkpoint
class PersistentTable(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("inv_freq", rope_inv_freq(8))


with torch.device("meta"):
    meta_table = PersistentTable()
with uninitialized_memory_as_nan():
    meta_table.to_empty(device="cpu")
assert torch.isnan(meta_table.inv_freq).all()
assert str(meta_table.load_state_dict(PersistentTable().state_dict())) == (
    "<All keys matched successfully>")
assert torch.equal(meta_table.inv_freq, rope_inv_freq(8))

# %% [markdown]
# ## 6.5 `torch.compile`: buffers mutate, Python ints recompile
#
# Compiled training steps update buffers in `forward` all the time: BatchNorm statistics, a
# step counter for a warm-up schedule, a KV cache. `torch.compile` supports in-place buffer
# updates. What it does not like is a counter kept as a plain Python `int` on the module
# (pytorch/pytorch#128319).
#
# The two counters below differ only in where the count lives:

# %%
# A step counter as a Python int, and as a long buffer
Code(inspect.getsource(IntStepCounter) + "\n\n"
     + inspect.getsource(TensorStepCounter), language="python")

# %% [markdown]
# ```{admonition} Predict
# :class: tip
# Each counter is compiled and called six times. How many graphs does `torch.compile`
# compile for each?
# ```
#
# `count_compilations` reads torch's own counters (`torch._dynamo.utils.counters`) and the
# guard failures Dynamo records, not timings. It uses the `eager` backend: Dynamo captures
# the graph and decides on recompiling exactly as with the default backend, but skips code
# generation.

# %%
# Graphs compiled over six calls, and the guard that failed each time
as_int = count_compilations(IntStepCounter(), calls=6)
as_buffer = count_compilations(TensorStepCounter(), calls=6)
print("Python int:", as_int.graphs, "graphs; failed guards:")
for guard in as_int.guards:
    print("   ", guard)
print("buffer:    ", as_buffer.graphs, "graph; failed guards:",
      as_buffer.guards)
print("\ntorch's hint:\n" + textwrap.fill(as_int.hint, 76))

# %% tags=["hide-input"]
# Check: one graph per value of the int, one graph in all for the buffer
assert as_int.graphs == 6 and not as_int.limit_hit
assert as_int.guards == [f"self.steps == {k}" for k in range(5)]
assert as_buffer.graphs == 1 and as_buffer.guards == []
assert not as_buffer.limit_hit
assert as_int.hint == (
    "torch.compile considers integer attributes of the nn.Module to be "
    "static. If you are observing recompilation, you might want to make "
    "this integer dynamic using "
    "torch._dynamo.config.allow_unspec_int_on_nn_module = True, or "
    "convert this integer into a tensor.")
# a buffer's dtype and shape are guarded: changing either compiles anew
from torch._dynamo.utils import counters

torch._dynamo.reset()
counters.clear()
guarded = TensorStepCounter()
step_fn = torch.compile(guarded, backend="eager")
graphs = []
for steps in (None, torch.zeros((), dtype=torch.int32),
              torch.zeros(2, dtype=torch.int32)):
    if steps is not None:
        guarded.steps = steps  # still the buffer "steps"
    step_fn(torch.randn(3))
    step_fn(torch.randn(3))
    graphs.append(counters["stats"]["unique_graphs"])
assert graphs == [1, 2, 3] and "steps" in guarded._buffers

# %% [markdown]
# Six graphs for the int: Dynamo treats integer attributes of a module as constants and
# guards on their value (`self.steps == 0`), so each new value fails the guard and triggers
# a recompilation. A tensor's *value* is not guarded (its dtype and shape are: the hidden
# check changes each and counts a new graph), so the buffer version compiles once. And
# recompiling does not go on forever:

# %%
# Ten calls: Dynamo stops at its recompile limit
counter = IntStepCounter()
as_int = count_compilations(counter, calls=10)
verdict = "limit reached" if as_int.limit_hit else "still compiling"
print("graphs:", as_int.graphs, "| recompile limit:",
      torch._dynamo.config.recompile_limit, "|", verdict)
print("calls counted:", counter.steps)

# %% tags=["hide-input"]
# Check: 8 graphs, then the frame runs uncompiled
assert torch._dynamo.config.recompile_limit == 8
assert as_int.graphs == 8 and as_int.limit_hit
assert counter.steps == 10  # calls 9 and 10 ran, uncompiled

# %% [markdown]
# After 8 compilations Dynamo gives up on this `forward` and runs it uncompiled from then
# on (the count still reaches 10), without an error: the model is silently slower.
#
# ```{admonition} Pitfall: a Python int counter in a compiled module
# :class: warning
# `self.step += 1` in `forward` recompiles on every call until the recompile limit, then
# leaves the module uncompiled. **Fix:** keep the count in a buffer updated in place
# (`self.register_buffer("step", torch.zeros((), dtype=torch.long))`,
# `self.step.add_(1)`), as torch's hint says.
# ```
#
# **In-place updates, compiled for real.** With the default backend (TorchInductor, which
# generates C++ on a CPU and needs a C++ compiler), a compiled BatchNorm in training mode
# updates its running statistics exactly as the uncompiled one does. This is the one
# compilation in the chapter that generates code.

# %%
# Compile a BatchNorm with the default backend; train both copies three steps
torch._dynamo.reset()
torch.manual_seed(0)
eager_bn = nn.BatchNorm1d(3)
compiled_bn = copy.deepcopy(eager_bn)
storage = compiled_bn.running_mean.data_ptr()
step = torch.compile(compiled_bn)
for k in range(3):
    x = torch.randn(16, 3) + k
    eager_bn(x)
    step(x)
print("eager:   ", eager_bn.running_mean, eager_bn.num_batches_tracked)
print("compiled:", compiled_bn.running_mean, compiled_bn.num_batches_tracked)
same = compiled_bn.running_mean.data_ptr() == storage
print("compiled running_mean:", "same storage as before" if same
      else "a new tensor")

# %% tags=["hide-input"]
# Check: the compiled step updated the module's own buffers, as eager did
torch.testing.assert_close(compiled_bn.running_mean, eager_bn.running_mean)
torch.testing.assert_close(compiled_bn.running_var, eager_bn.running_var)
assert compiled_bn.num_batches_tracked.item() == 3
assert compiled_bn.running_mean.data_ptr() == storage

# %% [markdown]
# **Rebinding a buffer between calls.** A KV cache is often reset by assigning a new tensor:
# `model.cache = torch.zeros(...)`. Rebinding a module's tensor between calls of compiled
# code has been reported to go wrong (pytorch/pytorch#115774). Here is such a reset, with
# `cache` registered as a buffer, run eagerly and compiled.
#
# ```{admonition} Predict
# :class: tip
# The first call writes 2 at position 0; then the cache is reset by rebinding; the second
# call writes 1 at position 1. Does the compiled module return `[0, 1]`, as eager code
# does, or `[2, 1]`, still writing into the old tensor?
# ```

# %%
# Write x at position pos; reset the cache by rebinding between the two calls
class Cache(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("cache", torch.zeros(2))

    def forward(self, x, pos):
        self.cache[pos] = x
        return self.cache


def two_calls(module, run):
    run(torch.tensor([2.0]), torch.tensor([0]))
    module.cache = torch.zeros(2)  # reset by rebinding
    return run(torch.tensor([1.0]), torch.tensor([1]))


eager_cache = Cache()
print("eager:   ", two_calls(eager_cache, eager_cache))
torch._dynamo.reset()
compiled_cache = Cache()
print("compiled:", two_calls(compiled_cache,
                             torch.compile(compiled_cache, backend="eager")))

# %% tags=["hide-input"]
# Check: the compiled module reads the rebound buffer: [0, 1]
expected = torch.tensor([0.0, 1.0])
assert torch.equal(eager_cache.cache, expected)
assert torch.equal(compiled_cache.cache, expected)
assert torch.equal(compiled_cache.get_buffer("cache"), expected)
# the same with cache as a plain tensor attribute
class PlainCache(Cache):
    def __init__(self):
        nn.Module.__init__(self)
        self.cache = torch.zeros(2)


torch._dynamo.reset()
plain = PlainCache()
assert "cache" not in plain._buffers
two_calls(plain, torch.compile(plain, backend="eager"))
assert torch.equal(plain.cache, expected)
# the buffer is an input of the captured graph (a placeholder)
placeholders = []


def record(graph_module, example_inputs):
    placeholders.extend(node.target for node in graph_module.graph.nodes
                        if node.op == "placeholder")
    return graph_module.forward


torch._dynamo.reset()
recorded = torch.compile(Cache(), backend=record)
recorded(torch.tensor([1.0]), torch.tensor([0]))
assert placeholders == ["L_self_buffers_cache_", "L_pos_", "L_x_"]

# %% [markdown]
# On the installed torch the compiled module sees the new tensor: `[0, 1]`, as eager, and so
# does the same module with `cache` as a plain tensor attribute (the hidden check runs both).
# The buffer is an *input* of the captured graph (the hidden check records the graph's
# inputs: `L_self_buffers_cache_`, `L_pos_`, `L_x_`), so the compiled code reads whatever
# tensor the module holds at each call. This is the default mode. With
# `mode="reduce-overhead"` the compiled code replays CUDA graphs, which hold on to their
# inputs' addresses: rebinding then costs a new recording (section 2.8 of
# [chapter 2](02_full_replacement.ipynb)), and chapter 2's advice, update in place, applies.

# %% [markdown]
# ## 6.6 `torch.export`: the update as an output
#
# `torch.export` turns a module into a graph for deployment (ExecuTorch, AOTInductor). A KV
# cache or a running statistic updated in `forward` must survive that: the runtime has to
# know which buffer to write back. ExecuTorch users have been surprised to find their
# in-place buffer updates turned into out-of-place operations (pytorch/executorch#4042).
#
# ```{admonition} Predict
# :class: tip
# `Total.forward` does `self.total.add_(x.sum())`. In the exported program, is the update
# still an in-place operation on the buffer?
# ```

# %%
# Export a module that updates a buffer in place
class Total(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("total", torch.zeros(()))

    def forward(self, x):
        self.total.add_(x.sum())
        return x * 2


original = Total()
exported = torch.export.export(original, (torch.ones(3),))
print(exported.graph_module.code.strip().replace(";  ", ";\n    "))
for row in signature_rows(exported):
    print(row)

# %% [markdown]
# On the installed torch the default export keeps the in-place `add_` on the buffer's input
# (`b_total`), and the signature lists `total` only as an input. Lowering to the core ATen
# operator set, which backends consume, removes in-place operations: `run_decompositions()`
# makes the graph functional, and the update becomes an output of kind `BUFFER_MUTATION`
# naming the buffer the runtime must overwrite.

# %%
# The functional form that backends consume
functional = exported.run_decompositions()
print(functional.graph_module.code.strip().replace(";  ", ";\n    "))
for row in signature_rows(functional):
    print(row)

# %% tags=["hide-input"]
# Check: in place before decomposition, a BUFFER_MUTATION output after
inputs = [("input", "BUFFER", "b_total", "total"),
          ("input", "USER_INPUT", "x", None)]
assert signature_rows(exported) == inputs + [
    ("output", "USER_OUTPUT", "mul", None)]
assert "torch.ops.aten.add_.Tensor(b_total" in exported.graph_module.code
assert exported.graph_signature.buffers_to_mutate == {}
assert signature_rows(functional) == inputs + [
    ("output", "BUFFER_MUTATION", "add", "total"),
    ("output", "USER_OUTPUT", "mul", None)]
assert functional.graph_signature.buffers_to_mutate == {"add": "total"}
assert "add_" not in functional.graph_module.code
# export traced; it did not run the update
assert original.total.item() == 0.0

# %% [markdown]
# Exporting traces with fake tensors, so it did not change `original.total`. Running the
# exported program does change a buffer, but which one?

# %%
# Run the exported program's module; look at the original module's buffer
runner = exported.module()
runner(torch.ones(3))
print("runner.total:", runner.total, "| original.total:", original.total)

# %% tags=["hide-input"]
# Check: the exported module shares its buffer with the exported one, and
# a second exported.module() shares it too
assert runner.total.item() == 3.0 and original.total.item() == 3.0
assert runner.total is original.total is exported.state_dict["total"]
second_runner = exported.module()
second_runner(torch.ones(3))
assert second_runner.total is runner.total and runner.total.item() == 6.0
assert original.total.item() == 6.0

# %% [markdown]
# ```{admonition} Pitfall: the exported program shares buffers with your model
# :class: warning
# `exported.module()` holds the very buffer tensors of the module you exported, so running it
# updates your eager model's `total` too (and two `exported.module()` calls give modules
# that share state). **Fix:** export a copy when the two must stay apart:
# `torch.export.export(copy.deepcopy(model), args)`.
# ```

# %% tags=["hide-input"]
# Check: exporting a deep copy keeps the original's buffer out of it
kept = Total()
separate = torch.export.export(copy.deepcopy(kept), (torch.ones(3),))
separate = separate.module()
separate(torch.ones(3))
assert separate.total.item() == 3.0 and kept.total.item() == 0.0

# %% [markdown]
# ## 6.7 `torch.func`: transforms and running statistics
#
# `torch.func.grad` and `torch.func.vmap` power per-sample gradients, model ensembles and
# meta-learning. They are functional: a function may not quietly change a tensor it did not
# receive as an input. BatchNorm in training mode changes three: it counts the batch in
# `num_batches_tracked` and updates `running_mean` and `running_var` (reported for `vmap` in
# pytorch/pytorch#85533). Chapter 3 showed where updates land under
# `torch.func.functional_call` (section 3.8 of
# [chapter 3](03_inplace_accumulation.ipynb)); here are the transforms.
#
# ```{admonition} Predict
# :class: tip
# `bn` is a BatchNorm in training mode. Does `torch.func.grad` of a loss through it run?
# Does `torch.func.vmap(bn)` over a stack of five batches? And what do `bn`'s buffers hold
# afterwards?
# ```

# %%
# Grad and vmap of a BatchNorm in training mode
torch.manual_seed(0)
bn = nn.BatchNorm1d(3)
params = {name: p.detach() for name, p in bn.named_parameters()}


def loss(params, x):
    return torch.func.functional_call(bn, params, (x,)).pow(2).mean()


x = torch.randn(4, 3)
grad_message = error_message(torch.func.grad(loss), params, x)
vmap_message = error_message(torch.func.vmap(bn), torch.randn(5, 4, 3))
print("grad:", textwrap.fill(grad_message, 76), sep="\n")
print("vmap:", textwrap.fill(vmap_message, 76), sep="\n")
print("\nbn after both failures:", bn.running_mean,
      bn.num_batches_tracked.item())

# %% tags=["hide-input"]
# Check: exact messages; grad refuses the counter's add_ (with the counter
# removed it runs, and the statistics update inside batch_norm is let
# through); the failed vmap had counted the batch before it failed
assert grad_message == (
    "During a grad (vjp, jvp, grad, etc) transform, the function provided "
    "attempted to call in-place operation (aten::add_.Tensor) that would "
    "mutate a captured Tensor. This is not supported; please rewrite the "
    "function being transformed to explicitly accept the mutated "
    "Tensor(s) as inputs.")
assert vmap_message == (
    "Batch norm got a batched tensor as input while the running_mean or "
    "running_var, which will be updated in place, were not batched.\n"
    "If you are using a module and do not need eval mode, please set "
    "`track_running_stats` to be False.If you are using a prebuilt module "
    "and do not need eval mode, please see the functorch website for "
    "resources on how to patch your module to work with vmap")
assert bn.num_batches_tracked.item() == 1
assert torch.equal(bn.running_mean, torch.zeros(3))
bn_source = inspect.getsource(nn.modules.batchnorm._BatchNorm.forward)
assert "self.num_batches_tracked.add_(1)" in bn_source
# with momentum=None the counter sets the weight of the next batch
assert ("exponential_average_factor = 1.0 / "
        "float(self.num_batches_tracked)") in bn_source
uncounted = nn.BatchNorm1d(3)
uncounted.num_batches_tracked = None  # no counter: no add_


def uncounted_loss(params, x):
    out = torch.func.functional_call(uncounted, params, (x,))
    return out.pow(2).mean()


torch.func.grad(uncounted_loss)(params, torch.randn(4, 3) + 2)
assert uncounted.running_mean.abs().sum() > 0

# %% [markdown]
# Both refuse, each at a different buffer. BatchNorm's `forward` first counts the batch with
# `self.num_batches_tracked.add_(1)`: `grad` refuses exactly that in-place operation on a
# tensor the function did not receive (the message names `aten::add_.Tensor`). The
# statistics themselves are updated inside the `batch_norm` operation, which `grad` lets
# through: with the counter removed, the hidden check's `grad` runs and `running_mean`
# changes. `vmap` accepts the count (the counter is not batched) and refuses the statistics:
# one `running_mean` cannot hold the means of five batches. So its refusal is not clean:
# `num_batches_tracked` reads 1 after the failed call, though `running_mean` is untouched.
#
# ```{admonition} Pitfall: a module reused after a failed transform
# :class: warning
# Catching the `vmap` error and carrying on with `bn`: its counter already counted a batch
# that never updated the statistics (with `momentum=None`, the next averages are weighted
# wrongly). **Fix:** make the transform work instead, below; after any error inside a
# transform, check or reload the module's buffers before using it again.
# ```
#
# The grad message says what to do: pass the buffers in. With `functional_call(bn, (params,
# buffers), ...)` the updated tensors are inputs of the transformed function, the gradient
# is computed, and the update lands in the `buffers` you passed. For `vmap`, either evaluate
# with the stored statistics (`bn.eval()`), or drop running statistics altogether with
# `torch.func.replace_all_batch_norm_modules_`, which sets `track_running_stats=False`.

# %%
# The fixes: buffers as inputs for grad; eval() or no running stats for vmap
buffers = {name: b.clone() for name, b in bn.named_buffers()}


def loss_with_buffers(params, buffers, x):
    out = torch.func.functional_call(bn, (params, buffers), (x,))
    return out.pow(2).mean()


x = torch.randn(4, 3) + 2
grads = torch.func.grad(loss_with_buffers)(params, buffers, x)
print("grad keys:", sorted(grads), "| batches in passed buffers:",
      buffers["num_batches_tracked"].item(), "| in bn:",
      bn.num_batches_tracked.item())
per_sample = torch.func.vmap(bn.eval())(torch.randn(5, 4, 3))
print("vmap in eval():", tuple(per_sample.shape))
torch.func.replace_all_batch_norm_modules_(bn.train())
print("after replace_all_batch_norm_modules_:", dict(bn.named_buffers()),
      tuple(torch.func.vmap(bn)(torch.randn(5, 4, 3)).shape))

# %% tags=["hide-input"]
# Check: the update went into the passed buffers; vmap works in both fixes
# bn's 1, plus this batch
assert buffers["num_batches_tracked"].item() == 2
assert buffers["running_mean"].abs().sum() > 0
assert per_sample.shape == (5, 4, 3)
assert bn.track_running_stats is False and dict(bn.named_buffers()) == {}
assert bn.num_batches_tracked is None

# %% [markdown]
# ## 6.8 EMA teachers and weight averaging
#
# An exponential moving average of the weights (an EMA teacher in self-supervised learning,
# or stochastic weight averaging at the end of training) is kept with
# `torch.optim.swa_utils.AveragedModel`. Its parameters are averages; the question is what
# happens to BatchNorm's buffers. The argument `use_buffers` decides (it was added in
# pytorch/pytorch PR #71763).
#
# ```{admonition} Predict
# :class: tip
# An EMA of a model with BatchNorm is updated after each of three training steps. With
# `use_buffers=False`, how does the average's `running_mean` compare with the model's?
# ```

# %%
# An EMA (decay 0.5) with use_buffers False and True, three training steps
def net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3))


torch.manual_seed(1)
batches = [torch.randn(8, 2) * (k + 1) + k for k in range(3)]
model = net()
ema = {flag: AveragedModel(model, use_buffers=flag,
                           multi_avg_fn=get_ema_multi_avg_fn(0.5))
       for flag in (False, True)}
for x in batches:
    model(x)
    for average in ema.values():
        average.update_parameters(model)
print("model:            ", model[1].running_mean,
      model[1].num_batches_tracked.item())
for flag, average in ema.items():
    stats = average.module[1]
    print(f"use_buffers={flag!s:<5}:", stats.running_mean,
          stats.num_batches_tracked.item())

# %% tags=["hide-input"]
# Check: False copies the model's buffers; True averages them all
stats = {flag: average.module[1] for flag, average in ema.items()}
assert torch.equal(stats[False].running_mean, model[1].running_mean)
assert stats[False].num_batches_tracked.item() == 3
expected = None
replay = net()
for x in batches:
    replay(x)
    current = replay[1].running_mean.clone()
    if expected is None:
        expected = current
    else:
        expected = 0.5 * expected + 0.5 * current
torch.testing.assert_close(stats[True].running_mean, expected)
assert not torch.allclose(stats[True].running_mean, model[1].running_mean)
# an average of 1, 2, 3, truncated
assert stats[True].num_batches_tracked.item() == 2
# BatchNorm reads the counter only when momentum is None
a, b = nn.BatchNorm1d(3), nn.BatchNorm1d(3)
b.num_batches_tracked.fill_(1000)
x = torch.randn(8, 3)
a(x), b(x)
assert torch.equal(a.running_mean, b.running_mean)
a, b = nn.BatchNorm1d(3, momentum=None), nn.BatchNorm1d(3, momentum=None)
b.num_batches_tracked.fill_(1000)
a(x), b(x)
assert not torch.allclose(a.running_mean, b.running_mean)
# torch's own EMA example averages the buffers
assert "use_buffers=True" in AveragedModel.__doc__

# %% [markdown]
# With `use_buffers=False` the average's BatchNorm holds a *copy* of the live model's
# statistics, refreshed at each `update_parameters` (pytorch/pytorch#84053 reported that
# they used to stay frozen at the values of the initial copy). So averaged weights are paired
# with statistics measured for other weights. With `use_buffers=True` the statistics are
# averaged along with the weights, and so is the integer `num_batches_tracked`: it ends at
# 2 after three batches, a truncated average rather than a count. BatchNorm reads that
# counter only when `momentum=None`.
#
# The cure for mismatched statistics is to measure them again for the averaged weights:
# `update_bn(loader, averaged)` resets each BatchNorm's statistics and recomputes them
# over the data with `momentum=None`, so they are the plain average over the batches.

# %%
# Recompute the averaged model's statistics on the training batches
update_bn(batches, ema[False])
print("after update_bn:", ema[False].module[1].running_mean,
      ema[False].module[1].num_batches_tracked.item())

# %% tags=["hide-input"]
# Check: the plain average of each batch's mean, under the averaged weights
averaged = ema[False].module
with torch.no_grad():
    means = [averaged[0](x).mean(0) for x in batches]
torch.testing.assert_close(averaged[1].running_mean,
                           torch.stack(means).mean(0))
assert averaged[1].num_batches_tracked.item() == 3
assert averaged[1].momentum == 0.1  # update_bn restores the momentum

# %% [markdown]
# ```{admonition} Pitfall: averaged weights, someone else's statistics
# :class: warning
# `AveragedModel(model)` (default `use_buffers=False`) evaluated as is: its BatchNorm layers
# normalise with the live model's statistics. **Fix:** `update_bn(train_loader, averaged)`
# before evaluating, or `use_buffers=True` so the statistics are averaged with the weights
# (as torch's EMA example does); do not rely on the averaged `num_batches_tracked`.
# ```

# %% [markdown]
# ## 6.9 Checkpoints
#
# Buffers travel in `state_dict()`, and most checkpoint surprises are about which buffers
# are in it and what loading does with the rest.
#
# **A buffer registered as `None`.** `register_buffer("mean", None)` reserves a name for a
# buffer whose shape is known only later: `LazyStats` fills it from its first batch.
#
# ```{admonition} Predict
# :class: tip
# A trained `LazyStats` is saved; its `state_dict` has a `"mean"` key. A fresh `LazyStats`,
# whose `mean` is still `None`, loads it. Does `mean` get the saved value? And with
# `strict=False`?
# ```

# %%
# LazyStats: register_buffer("mean", None), filled by the first batch
trained = LazyStats()
trained(torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
checkpoint = trained.state_dict()
print("trained:", dict(checkpoint))
print("fresh:  ", dict(LazyStats().state_dict()))
message = error_message(LazyStats().load_state_dict, checkpoint)
print(message)
fresh = LazyStats()
result = fresh.load_state_dict(checkpoint, strict=False)
print("strict=False:", result)
print("fresh.mean:", fresh.mean)

# %% tags=["hide-input"]
# Check: strict load refuses the key; strict=False drops the value silently
assert message == ("Error(s) in loading state_dict for LazyStats:\n\t"
                   'Unexpected key(s) in state_dict: "mean". ')
assert result.unexpected_keys == ["mean"] and result.missing_keys == []
assert fresh.mean is None and "mean" in fresh._buffers

# %% [markdown]
# Neither fills it. A `None` buffer is left out of `state_dict()`, so the fresh module has no
# `"mean"` key and the saved one is *unexpected* (pytorch/pytorch#28340): strict loading
# raises. `strict=False` turns the error into a return value, `_IncompatibleKeys(missing_keys,
# unexpected_keys)`, and loads nothing for those keys. Code that ignores the return value
# (a common way to "fix" the error, see pytorch/pytorch#33043) silently keeps `mean` at
# `None`.
#
# ```{admonition} Pitfall: strict=False and an ignored return value
# :class: warning
# `model.load_state_dict(ckpt, strict=False)` to get past one expected mismatch also hides
# every unexpected one. **Fix:** check the result against the keys you expect to differ:
# `assert set(result.missing_keys) <= allowed`, `assert not result.unexpected_keys`. And give
# buffers their shape at construction when you can (BatchNorm knows `num_features`), so the
# checkpoint always fits.
# ```
#
# **Old BatchNorm checkpoints.** `num_batches_tracked` was added in BatchNorm's version 2
# (`BatchNorm1d._version == 2`). Every `state_dict()` carries a `_metadata` attribute with
# each module's version, and BatchNorm's loader fills a missing `num_batches_tracked` when
# the checkpoint's version is older than 2, or unknown. Filtering a state dict with a dict
# comprehension drops `_metadata`, and with it the version:

# %%
# A checkpoint without num_batches_tracked, with and without its _metadata
norm = nn.BatchNorm1d(2)
full = norm.state_dict()
print("version in _metadata:", full._metadata[""]["version"])
with_metadata = copy.copy(full)           # copy.copy keeps _metadata
del with_metadata["num_batches_tracked"]
comprehension = {k: v for k, v in full.items() if k != "num_batches_tracked"}
print("_metadata:", getattr(with_metadata, "_metadata", None), "|",
      getattr(comprehension, "_metadata", None))
target = nn.BatchNorm1d(2)
target.num_batches_tracked.fill_(7)
print(error_message(target.load_state_dict, with_metadata))
print("dict comprehension:", target.load_state_dict(comprehension),
      "| num_batches_tracked:", target.num_batches_tracked.item())

# %% tags=["hide-input"]
# Check: the version decides; without it the target keeps its own counter
assert nn.BatchNorm1d._version == 2
load_source = inspect.getsource(
    nn.modules.batchnorm._NormBase._load_from_state_dict)
assert ("if (version is None or version < 2) "
        "and self.track_running_stats:") in load_source
assert "# at version 2: added num_batches_tracked buffer" in load_source
assert full._metadata[""] == {"version": 2}
assert error_message(target.load_state_dict, with_metadata) == (
    "Error(s) in loading state_dict for BatchNorm1d:\n\t"
    'Missing key(s) in state_dict: "num_batches_tracked". ')
assert target.num_batches_tracked.item() == 7
fresh = nn.BatchNorm1d(2)
fresh.load_state_dict(comprehension)
assert fresh.num_batches_tracked.item() == 0
saved = io.BytesIO()
torch.save(with_metadata, saved)
saved.seek(0)
assert torch.load(saved)._metadata == full._metadata  # save/load carry it
old = copy.copy(with_metadata)
old._metadata = {"": {"version": 1}}
assert str(fresh.load_state_dict(old)) == "<All keys matched successfully>"

# %% [markdown]
# With its metadata, the trimmed checkpoint is a version-2 checkpoint missing a key: an
# error. Without it, BatchNorm treats it as a pre-version-2 checkpoint and supplies the
# counter, and what it supplies is the target's *own* current value (7 here), not 0. Keep
# `_metadata` when you edit checkpoints (`copy.copy(sd)` keeps it, and `torch.save` and
# `torch.load` carry it), or the version upgrades of torch's modules run on the wrong
# checkpoints.
#
# **`weights_only` and whole-module pickles.** `torch.save(model)` pickles the module
# object: its class (by import path) and all its buffers, non-persistent ones included.
# Since torch 2.6, `torch.load` defaults to `weights_only=True`, which refuses to rebuild
# arbitrary classes:

# %%
# Save a whole module and its state_dict; load both with the defaults
model = NaiveRotary(4)
whole, weights = io.BytesIO(), io.BytesIO()
torch.save(model, whole)
torch.save(model.state_dict(), weights)
weights.seek(0)
print("state_dict keys:", list(torch.load(weights)))
whole.seek(0)
message = error_message(torch.load, whole)
reason = next(line for line in message.splitlines()
              if "WeightsUnpickler" in line)
print(textwrap.fill(reason.strip(), 76, break_long_words=False)
      .replace("([", "(\n    ["))
whole.seek(0)
print("weights_only=False:", torch.load(whole, weights_only=False).inv_freq)

# %% tags=["hide-input"]
# Check: the state_dict lacks the non-persistent table; the pickle has it
weights.seek(0)
assert dict(torch.load(weights)) == {}
name = "bufferbook.training_stack.NaiveRotary"
assert reason.strip() == (
    f"WeightsUnpickler error: Unsupported global: GLOBAL {name} was not "
    f"an allowed global by default. Please use "
    f"`torch.serialization.add_safe_globals([{name}])` or the "
    f"`torch.serialization.safe_globals([{name}])` context manager to "
    f"allowlist this global if you trust this class/function.")
assert ("In PyTorch 2.6, we changed the default value of the "
        "`weights_only` argument in `torch.load` from `False` to "
        "`True`.") in message
whole.seek(0)
restored = torch.load(whole, weights_only=False)
assert torch.equal(restored.inv_freq, model.inv_freq)
# the pickle names the class by its import path
assert b"cbufferbook.training_stack\nNaiveRotary\n" in whole.getvalue()

# %% [markdown]
# A `state_dict` holds tensors only and loads safely; it leaves out non-persistent buffers,
# which the module's `__init__` recreates. A whole-module pickle needs `weights_only=False`
# (run code from the file: only for files you trust) and the class importable under the same
# path.
#
# **Tied buffers.** One tensor registered in two modules (a shared RoPE table, a shared mask)
# appears once in `named_buffers()` but under both names in `state_dict()`; `torch.save`
# stores it once. Loading copies key by key into the one shared tensor:

# %%
# One table registered in two blocks
class Shared(nn.Module):
    def __init__(self):
        super().__init__()
        table = torch.arange(4.0)
        self.first, self.second = nn.Module(), nn.Module()
        self.first.register_buffer("table", table)
        self.second.register_buffer("table", table)


shared = Shared()
print("named_buffers:", [name for name, _ in shared.named_buffers()])
file = io.BytesIO()
torch.save(shared.state_dict(), file)
file.seek(0)
checkpoint = torch.load(file)
one_storage = (checkpoint["first.table"].data_ptr()
               == checkpoint["second.table"].data_ptr())
print("state_dict:   ", list(checkpoint),
      "(one storage)" if one_storage else "(two storages)")
checkpoint["first.table"] = torch.full((4,), 5.0)  # edit one key
shared.load_state_dict(checkpoint)
print("after loading:", shared.first.table, shared.second.table)

# %% tags=["hide-input"]
# Check: both names, one tensor; the later key wins
assert [n for n, _ in shared.named_buffers()] == ["first.table"]
assert [n for n, _ in shared.named_buffers(remove_duplicate=False)] == [
    "first.table", "second.table"]
assert shared.first.table is shared.second.table
assert torch.equal(shared.first.table, torch.arange(4.0))
file.seek(0)
loaded = torch.load(file)
first, second = loaded["first.table"], loaded["second.table"]
assert first.data_ptr() == second.data_ptr()
first.fill_(5.0)  # in place: both keys see it
result = shared.load_state_dict(loaded)
assert str(result) == "<All keys matched successfully>"
assert torch.equal(shared.second.table, torch.full((4,), 5.0))

# %% [markdown]
# The edit is lost: loading wrote the fives through `first.table`, then the old values
# through `second.table`, into the same tensor. The saved file kept the two keys as one
# storage, so an in-place edit of either key (`checkpoint["first.table"].fill_(5.0)`) reaches
# both; assigning a new tensor to one key does not. Edit tied buffers in place, or set every
# key.

# %% [markdown]
# ## 6.10 Small traps
#
# **Freezing does not touch buffers.** Fine-tuning often starts by freezing a pretrained
# backbone with `backbone.requires_grad_(False)`.
#
# ```{admonition} Predict
# :class: tip
# A BatchNorm frozen with `requires_grad_(False)` is fed one batch in training mode. Does
# its `running_mean` change? And after `requires_grad_(True)`, does any buffer require
# grad?
# ```

# %%
# Freeze a BatchNorm with requires_grad_, then feed it one training batch
torch.manual_seed(0)
norm = nn.BatchNorm1d(2).requires_grad_(False)
norm(torch.randn(8, 2) + 5)
trainable = [n for n, p in norm.named_parameters() if p.requires_grad]
print("parameters that require grad:", trainable)
print("running_mean after one batch:", norm.running_mean)
norm.requires_grad_(True)
print("after requires_grad_(True), buffers that require grad:",
      [n for n, b in norm.named_buffers() if b.requires_grad])

# %% tags=["hide-input"]
# Check: statistics updated while frozen; requires_grad_ visits parameters
# only, so it leaves every buffer as it was, even one that requires grad
assert trainable == []
assert norm.running_mean.abs().sum() > 0
assert norm.num_batches_tracked.item() == 1
assert not norm.running_mean.requires_grad
assert all(p.requires_grad for p in norm.parameters())
assert "for p in self.parameters():" in inspect.getsource(
    nn.Module.requires_grad_)
odd = nn.Module()
odd.register_buffer("b", torch.ones(2, requires_grad=True))
assert odd.requires_grad_(False).b.requires_grad

# %% [markdown]
# `requires_grad_` visits the module's parameters and nothing else. The frozen BatchNorm
# still updated its statistics, because that update depends on training mode, not on
# gradients; and `requires_grad_(True)` did not make any buffer trainable.
#
# ```{admonition} Pitfall: freezing BatchNorm with requires_grad_(False)
# :class: warning
# `backbone.requires_grad_(False)` and then `model.train()`: the weights stay fixed, but
# every BatchNorm in the backbone keeps moving its statistics towards the new data.
# **Fix:** call `.eval()` on the BatchNorm layers you want frozen, again after every
# `model.train()` (section 3.3 of [chapter 3](03_inplace_accumulation.ipynb)).
# ```

# %% [markdown]
# **An optimizer given a buffer.** `SGD(list(model.parameters()) + [buffer])` raises no
# error. A buffer gets no gradient, so every step skips it: it never learns.

# %%
# The optimizer accepts a buffer; its step leaves it alone
torch.manual_seed(0)
norm = nn.BatchNorm1d(2)
optimizer = torch.optim.SGD(list(norm.parameters()) + [norm.running_mean],
                            lr=0.5, weight_decay=0.1)
norm(torch.randn(8, 2) + 5).sum().backward()
before = norm.running_mean.clone()
optimizer.step()
print("grad:", norm.running_mean.grad)
print("before step:", before, "\nafter step: ", norm.running_mean)

# %% tags=["hide-input"]
# Check: accepted silently, skipped by the step
group = optimizer.param_groups[0]["params"]
assert any(p is norm.running_mean for p in group)
assert norm.running_mean.grad is None
assert torch.equal(before, norm.running_mean)

# %% [markdown]
# **`.detach()` shares the version counter.** `buffer.detach()` is a view of the same memory
# that also shares autograd's version counter, so `buffer.detach().add_(1)` bumps the
# buffer's version. If autograd saved the buffer for backward, backward then fails
# (section 3.6 of [chapter 3](03_inplace_accumulation.ipynb) explains the version counter
# and its fixes).

# %%
# The buffer is saved by a multiply; then updated through detach()
scale = nn.Module()
scale.register_buffer("s", torch.ones(2))
w = torch.ones(2, requires_grad=True)
y = (w * scale.s).sum()               # autograd saves scale.s for backward
version = scale.s._version
scale.s.detach().add_(1)
print("version before:", version, "| after detach().add_:", scale.s._version)
message = error_message(y.backward)
print(textwrap.fill(message, 76))

# %% tags=["hide-input"]
# Check: detach() shares the version counter; exact message
assert (version, scale.s._version) == (0, 1)
assert message == (
    "one of the variables needed for gradient computation has been "
    "modified by an inplace operation: [torch.FloatTensor [2]] is at "
    "version 1; expected version 0 instead. Hint: enable anomaly "
    "detection to find the operation that failed to compute its gradient, "
    "with "
    "torch.autograd.set_detect_anomaly(True, check_nan=False).")

# %% [markdown]
# **`del module.name`.** Deleting a buffer unregisters it. Assigning a tensor to the same
# name afterwards makes a plain attribute, not a buffer: `.to()` will not convert or move it
# and `state_dict()` will not save it.

# %%
# Delete a buffer, then assign a tensor under the same name
holder = nn.Module()
holder.register_buffer("mask", torch.ones(3))
del holder.mask
print("after del:", holder._buffers, "|",
      error_message(getattr, holder, "mask", expected=AttributeError))
holder.mask = torch.zeros(3)
print("after assigning:", holder._buffers,
      "| state_dict:", list(holder.state_dict()))

# %% tags=["hide-input"]
# Check: del unregisters; a later assignment is a plain attribute
assert holder._buffers == {} and list(holder.state_dict()) == []
assert torch.equal(holder.mask, torch.zeros(3))
assert holder.double().mask.dtype == torch.float32  # conversions skip it
missing = error_message(getattr, nn.Module(), "mask",
                        expected=AttributeError)
assert missing == "'Module' object has no attribute 'mask'"

# %% [markdown]
# ## 6.11 Reference: versions and exact messages
#
# Behaviour in this chapter that depends on the torch version, checked against the
# installed one:
#
# | behaviour | since | shown in |
# |---|---|---|
# | `broadcast_buffers=False` also skips the wrap-time sync of buffers | 2.1 | 6.1 |
# | `forward_sync_buffers`; `broadcast_buffers` deprecated | 2.13 | 6.1 |
# | `torch.load` defaults to `weights_only=True` | 2.6 | 6.9 |
# | `nn.Buffer(t)` as an alternative to `register_buffer` (chapter 1) | 2.5 | below |
#
# The first row comes from the report that noticed it (pytorch/pytorch#111138); the others
# are stated by torch itself (the deprecation warning, the `torch.load` message, and the
# checks below).

# %% tags=["hide-input"]
# Check: the installed torch has every feature the table lists
assert torch.__version__ >= "2.13"  # TorchVersion compares as a version
assert torch.__version__ >= "2.6" and torch.__version__ >= "2.5"
assert "forward_sync_buffers" in inspect.signature(
    nn.parallel.DistributedDataParallel).parameters
DDP = nn.parallel.DistributedDataParallel
assert ".. deprecated:: 2.13" in DDP.__doc__
assert hasattr(nn, "Buffer")
holder = nn.Module()
holder.table = nn.Buffer(torch.ones(2), persistent=False)
assert [n for n, _ in holder.named_buffers()] == ["table"]
assert list(holder.state_dict()) == []

# %% [markdown]
# Messages quoted in this chapter, as the installed torch prints them (each one is asserted
# word for word in the hidden check after the cell that shows it):
#
# | where | message |
# |---|---|
# | `DistributedDataParallel(nn.SyncBatchNorm(...))` on a CPU | `SyncBatchNorm layers only work with GPU modules` |
# | `nn.SyncBatchNorm` called on a CPU tensor | `SyncBatchNorm expected input tensor to be on GPU or XPU or privateuseone` |
# | `torch.func.grad` of BatchNorm in training mode | `During a grad (vjp, jvp, grad, etc) transform, the function provided attempted to call in-place operation (aten::add_.Tensor) that would mutate a captured Tensor. ...` |
# | `torch.func.vmap` of BatchNorm in training mode | `Batch norm got a batched tensor as input while the running_mean or running_var, which will be updated in place, were not batched. ...` |
# | loading into a buffer registered as `None` | `Unexpected key(s) in state_dict: "mean".` |
# | a version-2 BatchNorm checkpoint without the counter | `Missing key(s) in state_dict: "num_batches_tracked".` |
# | `torch.load` of a whole module | `WeightsUnpickler error: Unsupported global: GLOBAL ... was not an allowed global by default. ...` |
# | backward after `buffer.detach().add_()` | `one of the variables needed for gradient computation has been modified by an inplace operation: ...` |

# %% [markdown]
# ## Summary
#
# | Situation | What to write | Why |
# |---|---|---|
# | Rank-local state (queue, counter) under DDP | `DDP(model, broadcast_buffers=False)` | by default rank 0's buffers overwrite the others' at every forward (6.1) |
# | Evaluating or saving BatchNorm after DDP training | `broadcast_buffers_from(model, 0)` or `average_buffers(model)` in every rank, or `SyncBatchNorm` on GPUs | the ranks' statistics differ when training stops (6.1) |
# | BatchNorm across ranks on a CPU | plain BatchNorm plus the line above, or GroupNorm / LayerNorm; convert to `SyncBatchNorm` only on GPUs | `SyncBatchNorm` refuses CPU tensors where it must sync (6.2) |
# | Rebinding a buffer (`self.total = self.total + 1`, `model.cache = torch.zeros(...)`) under DDP or `torch.compile` | allowed on the installed torch; in place stays the rule when something else holds the buffer ([chapter 3](03_inplace_accumulation.ipynb)'s table) | DDP re-reads `named_buffers()` before each sync; a compiled graph takes the buffer as an input (6.1, 6.5) |
# | Low-precision training with float32 tables | `torch.autocast(...)` instead of `model.to(torch.bfloat16)` | autocast casts operations, not buffers (6.3) |
# | A table that must stay float32 when the model is cast | rebuild it after `_apply` (`RotaryTable`) | `.float()` cannot undo rounding (6.3) |
# | Building on the meta device | after `to_empty`: load the checkpoint **and** init the non-persistent buffers | `to_empty` leaves memory unwritten; the checkpoint has no non-persistent keys (6.4) |
# | A counter in a compiled module | a `long` buffer updated in place: `self.step.add_(1)` | a Python int recompiles on every value, up to the limit of 8 (6.5) |
# | Exporting a module with state | export a deep copy, `export(copy.deepcopy(m), args)`; look for `BUFFER_MUTATION` after `run_decompositions()` | the exported module shares your buffers (6.6) |
# | `grad` / `vmap` through BatchNorm | pass buffers in `functional_call(m, (params, buffers), x)`; `eval()` or `replace_all_batch_norm_modules_` for `vmap` | transforms refuse hidden in-place updates (6.7) |
# | An EMA or SWA model with BatchNorm | `use_buffers=True`, or `update_bn(loader, averaged)` before evaluating | by default the average borrows the live model's statistics (6.8) |
# | `load_state_dict(..., strict=False)` | check `result.missing_keys` and `result.unexpected_keys` | mismatches are returned, not raised (6.9) |
# | Editing a checkpoint | `copy.copy(sd)` then `del`, not a dict comprehension | the comprehension drops `_metadata` and the module versions (6.9) |
# | Loading a checkpoint | save `state_dict()`, load with the default `weights_only=True` | a whole-module pickle needs `weights_only=False` (6.9) |
# | Freezing a pretrained BatchNorm | `.eval()` on it, again after every `model.train()` | `requires_grad_(False)` leaves buffers and their updates alone (6.10) |
#
# **Exercise:** [exercise 6](../exercises/ch06_training_stack/ch06_training_stack.ipynb) asks
# you to apply this chapter's fixes.
