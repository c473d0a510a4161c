"""`factory train sft | dpo | distill` and `factory eval`: the only place torch / transformers / trl / peft
are imported (inside functions)."""
