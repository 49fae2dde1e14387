"""Command-line programs of tfface."""
