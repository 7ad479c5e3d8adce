"""The torch-free core every stage shares and none owns: the artifact contract (`manifest`), image
I/O (`images`), typed errors (`errors`) and atomic file writes (`io`). It imports nothing from the
trainer, the exporter or the runtime (the import-linter contracts in pyproject.toml)."""
