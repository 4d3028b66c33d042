"""SAM itself, frozen or fine-tuned: building and loading it (`model`, `checkpoints`),
SAM-exact preprocessing (`preprocess`, and `device_resize` on the device), precision
(`precision`), the image encoder (`encoder`, the fused `fast_encoder`, and `batch_encoder`,
which sizes and streams batches) and the prompt side batched over many images (`decoder`).

The bottom of floodcache with `data`: it imports no other stage."""
