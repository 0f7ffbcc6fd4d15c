"""Exports of trained versions as files people take elsewhere: pure ML, no queue or database.

    export_adapter(adapter_dir, tokenizer, "chatml", info, out_zip)   # PEFT adapter + README
    export_merged(base_folder, tokenizer, adapter_dir, "chatml", out_dir)  # base + LoRA merged
    verify_merged(base_folder, adapter_dir, out_dir, None, messages)  # logits agree?
    zip_folder(out_dir, out_zip); sha256_file(out_zip)

Every output appears under its final name only when complete (archive.py), so a crash or a
cancelled task never leaves a file that looks finished. Importing this package is cheap: torch,
transformers and peft are imported by the functions that need them.
"""

from workers.export.adapter import export_adapter
from workers.export.archive import atomic_dir, sha256_file, zip_folder
from workers.export.errors import ExportFailed
from workers.export.merged import export_merged, verify_merged

__all__ = [
    "ExportFailed",
    "atomic_dir",
    "export_adapter",
    "export_merged",
    "sha256_file",
    "verify_merged",
    "zip_folder",
]
