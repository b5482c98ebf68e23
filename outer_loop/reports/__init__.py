"""What runs produce for people: held-out evaluation files, demos, figures, tables, shipped models."""
