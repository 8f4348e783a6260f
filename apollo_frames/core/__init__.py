"""No I/O: settings, errors, normalisation, columns, filters, pagination, the declared schema."""
