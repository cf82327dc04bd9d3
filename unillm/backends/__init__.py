"""unillm's built-in engines (backends). Each module is a plugin registered through the
entry-point group, exactly as a third-party plugin is, and imports its library lazily."""
