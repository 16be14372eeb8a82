"""Corrections and their monitoring: editing time, the SQLite correction log with keyed
pseudonyms, AI-versus-final metrics (Dice, surface distances, added path length), aggregates and
the monitoring report."""
