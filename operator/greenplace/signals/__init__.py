"""Signal sources: where carbon intensity and prices come from, and how fresh they are."""
