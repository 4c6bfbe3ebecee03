"""Helpers for the book "Buffers in PyTorch": one module per chapter.

| chapter | module |
|---|---|
| 1. Buffers vs parameters | `bufferbook.tensor_inventory` |
| 2. Full replacement | `bufferbook.replacement` |
| 3. In-place accumulation | `bufferbook.accumulation` |
| 4. Indexed updates | `bufferbook.indexed_updates` |
| 5. CUDA timing lab | `bufferbook.timing` |
| 6. Buffers in the training stack | `bufferbook.training_stack` (DDP: `bufferbook.training_stack_ddp`; compile and export: `bufferbook.training_stack_compile`) |

`bufferbook.palette` holds the colour-blind-safe colours every plot uses.
"""
