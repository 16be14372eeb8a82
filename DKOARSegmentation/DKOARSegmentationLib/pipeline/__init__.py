"""The whole run from CT to outputs (``segment``), its ``run.json``, and the same run in a child
process that reports progress as JSON lines (``json_run``, read through ``background``)."""
