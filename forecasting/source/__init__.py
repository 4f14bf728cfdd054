"""Where the demand comes from: the source schema, database access, point-of-sale import and the forecast cache."""
