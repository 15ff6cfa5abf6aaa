"""The mapping engine and the built-in presets (TOML) that admins copy and edit."""
