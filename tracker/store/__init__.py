"""The database: engines, the schema's models and migrations, the snapshot writer, locks."""
